//! The CPU family's kernels (adapters whose type is CPU: lavapipe natively, SwiftShader in
//! Chromium), there to make tests and the headless page fast enough: a row per invocation, no
//! barriers; for the types with a wide decoder, 16-byte loads on rows padded to 16 bytes (wide.rs),
//! weights in textures (textures.rs), rmsnorm and swiglu folded into matvecs; attention in lanes of
//! 8 (attention.rs).

mod attention;
mod textures;
mod wide;

pub use attention::{attention, rope_rotations, runs_attention_lanes};
pub use textures::{max_texture_bytes, texture_from_buffer, uses_texture, TEXTURE_WIDTH};

use super::{
    bind, grid, numbered, BlockPad, Dispatch, EmbedParams, GatedAct, MatmulParams, MatvecParams, QuantMatrix,
    SwigluParams, Target,
};
use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::compose::{wgsl, wide_wgsl, Module};
use crate::gpu::Layout;
use wide::{wide_module, TextureBinding};

/// Values a wide decoder dots or decodes at a time (each wide_<type>.wgsl's WIDE_ELEMS).
const WIDE_ELEMS: u32 = 32;

/// The wide decoder `layout` reads `ty` with, if any: the type's (gpu::compose::wide_wgsl), for the
/// K-quants' superblocks only where Layout::wide_superblocks.
pub fn wide_decoder(layout: &Layout, ty: QuantType) -> Option<&'static str> {
    wide_wgsl(ty).filter(|_| layout.wide_superblocks || ty.block_elems() < 256)
}

/// The blocks this family stores padded (see kernels::block_pad) for its wide decoders' 16-byte
/// loads: Q4_0's 18 bytes to 20 and Q5_0's 22 to 24 after d (Q4_1's and Q5_1's layouts: every
/// field a whole word), Q6_K's 210 to 224 at the end (14 aligned loads a block) where it is read
/// wide. IQ4_NL has no wide decoder: its level lookups, inlined for 4 rows, took lavapipe's
/// compiler minutes.
pub fn block_pad(layout: &Layout, ty: QuantType) -> Option<BlockPad> {
    match ty {
        QuantType::Q4_0 | QuantType::Q5_0 => Some(BlockPad { at: 2, bytes: 2 }),
        QuantType::Q6K if layout.wide_superblocks => Some(BlockPad { at: ty.block_bytes(), bytes: 14 }),
        _ => None,
    }
}

/// Whether the wide kernels (matvec_wide, matmul_wide, embed_wide) read a matrix of `ty` whose rows
/// are `row_stride` bytes apart: the CPU family, a type with a wide decoder, rows 16 bytes apart.
pub fn reads_wide(layout: &Layout, ty: QuantType, row_stride: u32) -> bool {
    layout.is_cpu() && wide_decoder(layout, ty).is_some() && row_stride.is_multiple_of(16)
}

/// reads_wide for `w` as bound.
fn wide(t: Target, w: &QuantMatrix) -> bool {
    reads_wide(t.layout, w.ty, w.row_stride)
}

/// What a matvec folds in beyond its dot products (matvec_wide where `can_fold`).
#[derive(Clone, Copy, Default)]
pub struct Fold<'a> {
    /// Rows dotted with silu(gate) * up, x = [gate | up] with up at this element of x: swiglu.
    pub swiglu_up: Option<u32>,
    /// Rows dotted with rmsnorm(x) * norm_w: (norm_w, the partial sums of squares of x a matvec
    /// with `partials_out` left, eps).
    pub norm: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, f32)>,
    /// Leaves partial sums of squares of what it stores here ([ceil(rows / FOLD_ROWS_PER_SLOT)] and
    /// zeros to a multiple of 4: one per workgroup of rows) for a following `norm` fold.
    pub partials_out: Option<&'a wgpu::Buffer>,
}

impl Fold<'_> {
    /// Whether it asks for anything beyond the dot products.
    pub fn any(&self) -> bool {
        self.swiglu_up.is_some() || self.norm.is_some() || self.partials_out.is_some()
    }
}

/// Whether matvec folds rmsnorm and swiglu into a matvec over `w` in this layout.
pub fn can_fold(t: Target, w: &QuantMatrix) -> bool {
    t.layout.folds && wide(t, w)
}

/// Rows per workgroup of matvec_wide (16 invocations of 4 rows) and of matvec_rowwise.
const MATVEC_ROWS_PER_WG: u32 = 64;
/// Rows whose sum of squares a folding matvec leaves in one slot of the partials (one workgroup's).
pub const FOLD_ROWS_PER_SLOT: usize = MATVEC_ROWS_PER_WG as usize;

/// matvec (see kernels::matvec_folded; `p` complete) with `fold` folded in: matvec_wide where it reads
/// `w`, else matvec_rowwise (an error where `fold` asks for anything and can_fold is false).
pub fn matvec(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
    fold: Fold,
) -> Result<Dispatch> {
    if fold.any() && !can_fold(t, w) {
        return Err(Error::InvalidRequest(format!(
            "matvec: nothing folds into a {} matvec in this layout",
            w.ty.name()
        )));
    }
    let groups = grid(w.rows.div_ceil(MATVEC_ROWS_PER_WG));
    if !wide(t, w) {
        let pipeline = t.pipeline(
            &Module::quant(t.layout, "matvec_rowwise", w.ty, &[wgsl::MATVEC_IO, wgsl::cpu::MATVEC_ROWWISE])?,
            "main",
        )?;
        return bind(
            t.gpu,
            "matvec",
            pipeline,
            bytemuck::bytes_of(&p),
            numbered(&[step, w.buffer("matvec")?, x, out]),
            groups,
        );
    }
    let mut p = MatvecParams { up_offset: fold.swiglu_up.unwrap_or(0), ..p };
    let mut resources = vec![
        (1, step.as_entire_binding()),
        (3, x.as_entire_binding()),
        (4, out.as_entire_binding()),
        (5, w.resource()),
    ];
    let act = match (fold.swiglu_up, fold.norm) {
        (Some(_), Some(_)) => {
            return Err(Error::InvalidRequest("matvec: swiglu and rmsnorm do not fold into one matvec".into()))
        }
        (Some(_), None) => ("swiglu", wgsl::cpu::FOLD_ACT_SWIGLU),
        (None, Some((norm_w, partials, eps))) => {
            p.eps = eps;
            resources.extend([(6, norm_w.as_entire_binding()), (7, partials.as_entire_binding())]);
            ("norm", wgsl::cpu::FOLD_ACT_NORM)
        }
        (None, None) => ("x", wgsl::cpu::FOLD_ACT_X),
    };
    let finish = match fold.partials_out {
        Some(partials) => {
            resources.push((8, partials.as_entire_binding()));
            ("norm_out", wgsl::cpu::FOLD_OUT_NORM)
        }
        None => ("store", wgsl::cpu::FOLD_OUT_PLAIN),
    };
    let module = wide_module(t, w, "matvec_wide", wgsl::MATVEC_IO, true, TextureBinding::Storage)?
        .variant(act.0, act.1)
        .variant(finish.0, finish.1);
    let module = module.with(&[&wide::fill_group_blocks(wgsl::cpu::MATVEC_WIDE, w.ty)?]);
    bind(t.gpu, "matvec", t.pipeline(&module, "main")?, bytemuck::bytes_of(&p), resources, groups)
}

/// Rows per workgroup of matmul_wide and matmul_rowwise.
const MATMUL_ROWS_PER_WG: u32 = 64;
/// Tokens per invocation of matmul_rowwise.
const MATMUL_ROWWISE_TOKENS: u32 = 16;

/// matmul (see kernels::matmul; `p` complete): matmul_wide where it reads `w`, else
/// matmul_rowwise.
pub fn matmul(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatmulParams,
    max_tokens: u32,
) -> Result<Dispatch> {
    let rows = p.rows.div_ceil(MATMUL_ROWS_PER_WG);
    if !wide(t, w) {
        let module = Module::quant(
            t.layout,
            "matmul_rowwise",
            w.ty,
            &[wgsl::MATMUL_IO, wgsl::MATMUL_WEIGHTS, wgsl::cpu::MATMUL_ROWWISE],
        )?;
        let tiles = if p.last_only == 1 { 1 } else { max_tokens.div_ceil(MATMUL_ROWWISE_TOKENS) };
        return bind(
            t.gpu,
            "matmul",
            t.pipeline(&module, "main")?,
            bytemuck::bytes_of(&p),
            numbered(&[step, w.buffer("matmul")?, x, out]),
            [rows, tiles, 1],
        );
    }
    // Tokens per invocation (matmul_wide's RT, the length of its accumulator arrays): 32 for a
    // prompt chunk; the prompt's logits row alone, or a few candidates, as many as there are.
    // The prompt's logits row takes one row of workgroups: a grid over every token of the chunk
    // would launch 63 empty workgroups a tile (a vocabulary of 32,000: 31,500 of them, ~0.4 s on
    // SwiftShader, a chat turn's whole first-token latency there).
    let (rt, tiles) = match p.last_only {
        1 => (1, 1),
        _ => {
            let rt = max_tokens.clamp(1, 32).next_power_of_two();
            (rt, max_tokens.div_ceil(rt))
        }
    };
    let module = wide_module(t, w, "matmul_wide", wgsl::MATMUL_IO, true, TextureBinding::Sampled)?
        .variant(&format!("rt{rt}"), &format!("const RT: u32 = {rt}u;"))
        .with(&[wgsl::cpu::MATMUL_WIDE]);
    let resources = vec![
        (1, step.as_entire_binding()),
        (3, x.as_entire_binding()),
        (4, out.as_entire_binding()),
        (5, w.resource()),
    ];
    bind(t.gpu, "matmul", t.pipeline(&module, "main")?, bytemuck::bytes_of(&p), resources, [rows, tiles, 1])
}

/// embed_wide: embed (see kernels::embed) for a table the wide kernels read (None otherwise).
pub fn embed_wide(
    t: Target,
    table: &QuantMatrix,
    tokens: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: EmbedParams,
    rows: u32,
) -> Result<Option<Dispatch>> {
    if !wide(t, table) {
        return Ok(None);
    }
    let module =
        wide_module(t, table, "embed_wide", "", false, TextureBinding::Storage)?.with(&[wgsl::cpu::EMBED_WIDE]);
    let resources = vec![
        (2, tokens.as_entire_binding()),
        (3, out.as_entire_binding()),
        (4, step.as_entire_binding()),
        (5, table.resource()),
    ];
    let blocks = table.cols / WIDE_ELEMS;
    bind(
        t.gpu,
        "embed",
        t.pipeline(&module, "main")?,
        bytemuck::bytes_of(&p),
        resources,
        [blocks.div_ceil(64), rows, 1],
    )
    .map(Some)
}

/// swiglu with up in the gate buffer: gate[i] = act(gate[i]) * gate[up_offset + i], i < n (after
/// one matvec over [Wgate; Wup]).
pub fn swiglu_packed(t: Target, gate_up: &wgpu::Buffer, n: u32, up_offset: u32, act: GatedAct) -> Result<Dispatch> {
    let p = SwigluParams { n, up_offset, ..Default::default() };
    let module = act.compose(Module::new("swiglu_packed", &[wgsl::SWIGLU, wgsl::cpu::SWIGLU_PACKED]));
    let pipeline = t.pipeline(&module, "main_packed")?;
    bind(t.gpu, "swiglu", pipeline, bytemuck::bytes_of(&p), super::at(&[(1, gate_up)]), grid(n.div_ceil(64)))
}
