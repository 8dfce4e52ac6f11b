//! The GPU family's kernels (NVIDIA, AMD, Intel, Apple through WebGPU): matvec with a workgroup
//! walking a few rows (row_walk.wgsl), the tiled matmul (and its matvec-shaped variant for a few candidates), the fused
//! rmsnorm + qkv + RoPE and rmsnorm + gate_up + swiglu kernels, attention split over the KV length.

mod attention;
pub use attention::{
    attention, attention_partial_bytes, ATTENTION_MAX_SPLITS, ATTENTION_SPLIT_LEN, COMBINE_IN_WO_SPLITS,
};

use super::{bind, grid, numbered, Dispatch, GatedAct, MatmulParams, MatvecParams, QuantMatrix, Target};
use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::compose::{wgsl, Module};
use bytemuck::{Pod, Zeroable};

/// Rows per workgroup of matvec.wgsl (row_walk.wgsl's ROWS).
const MATVEC_ROWS_PER_WG: u32 = 2;

/// A decode kernel over the row walk (row_walk.wgsl) of `ty`: `parts` after the quant decoder, then
/// the workgroup reduction the layout allows, the walk and `kernel`.
fn row_walk_module(t: Target, name: &str, ty: QuantType, parts: &[&str], kernel: &str) -> Result<Module> {
    // reduce_subgroup.wgsl keeps a slot per subgroup of at least 4 lanes; an adapter that reports
    // smaller ones (or none: 0) takes the workgroup-memory reduction.
    let (tag, reduce) = match t.layout.subgroups && t.layout.subgroup_sizes.0 >= 4 {
        true => ("subgroups", wgsl::gpu::REDUCE_SUBGROUP),
        false => ("shared", wgsl::gpu::REDUCE_SHARED),
    };
    let module = Module::quant(t.layout, name, ty, parts)?.variant(tag, reduce).with(&[wgsl::gpu::ROW_WALK]);
    // Types whose quant words hold two runs of values (both nibbles of a byte, or Q2_K/Q3_K's bit
    // pairs j and j + 2; their decoder has quant16) walk them together, unless the layout says not.
    let pairs = t.layout.paired_walk && crate::gpu::compose::quant_wgsl(ty).is_some_and(|q| q.contains("fn quant16("));
    let module = match pairs {
        true => module.variant("pairs", wgsl::gpu::ROW_WALK_PAIRS),
        false => module.with(&[wgsl::gpu::ROW_WALK_8]),
    };
    Ok(module.with(&[kernel]))
}

/// matvec (see kernels::matvec; `p` complete).
pub fn matvec(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
) -> Result<Dispatch> {
    let module = row_walk_module(t, "matvec", w.ty, &[wgsl::MATVEC_IO, wgsl::gpu::MATVEC_ACTS], wgsl::gpu::MATVEC)?;
    let pipeline = t.pipeline(&module, "main")?;
    bind(
        t.gpu,
        "matvec",
        pipeline,
        bytemuck::bytes_of(&p),
        numbered(&[step, w.buffer("matvec")?, x, out]),
        grid(w.rows.div_ceil(MATVEC_ROWS_PER_WG)),
    )
}

/// matvec over rmsnorm(x) * norm_w (eps in `p`, x from element 0): the rmsnorm folded into the
/// matvec after it, as the logits' output matrix reads the residual stream.
pub fn matvec_norm(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
) -> Result<Dispatch> {
    if p.x_offset != 0 || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest("matvec_norm: x from element 0, rows of a multiple of 4 values".into()));
    }
    let p = MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_stride, ..p };
    let module =
        row_walk_module(t, "matvec_norm", w.ty, &[wgsl::MATVEC_IO, wgsl::gpu::NORM_FOLD], wgsl::gpu::MATVEC_NORM)?;
    let mut resources = numbered(&[step, w.buffer("matvec")?, x, out]);
    resources.push((6, norm_w.as_entire_binding()));
    bind(
        t.gpu,
        "matvec",
        t.pipeline(&module, "main")?,
        bytemuck::bytes_of(&p),
        resources,
        grid(w.rows.div_ceil(MATVEC_ROWS_PER_WG)),
    )
}

/// The attention whose unmerged splits matvec_combine reads: its heads, their width and the
/// dispatch's most splits (the partials' stride).
#[derive(Clone, Copy, Debug)]
pub struct Splits {
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_splits: u32,
}

/// Activation bytes Wo's workgroups may read beyond att itself to merge attention's splits in place
/// of its combine dispatch: ~1.5 us at a data-center GPU's L2 bandwidth (~5 TB/s), under what a
/// dispatch's launch and barrier cost there.
const COMBINE_IN_WO_EXTRA_BYTES: u64 = 8 << 20;

/// The most splits decode's Wo (`rows` x `cols`, cols = n_heads x head_dim) merges in its loader:
/// each working split past the first has every Wo workgroup read `cols` values more, so as many as
/// keep that within COMBINE_IN_WO_EXTRA_BYTES, 1 to COMBINE_IN_WO_SPLITS (SmolLM2 4, Llama-3.2-1B 2,
/// 8B models 1: with 1 only the positions one split serves skip the dispatch, reading nothing more).
pub fn combine_in_wo_splits(rows: u32, cols: u32) -> u32 {
    let per_split = rows.div_ceil(MATVEC_ROWS_PER_WG) as u64 * cols as u64 * 4;
    (1 + COMBINE_IN_WO_EXTRA_BYTES / per_split).min(COMBINE_IN_WO_SPLITS as u64) as u32
}

/// matvec over attention's output merged from its splits' partials (attention_unmerged, one token)
/// in the activation loader, for a context of at most COMBINE_IN_WO_SPLITS splits: out (+)= W att,
/// att as attention's combine would write it (read from `att` itself when one split works).
#[allow(clippy::too_many_arguments)]
pub fn matvec_combine(
    t: Target,
    w: &QuantMatrix,
    att: &wgpu::Buffer,
    partial: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
    s: Splits,
) -> Result<Dispatch> {
    if p.x_offset != 0
        || w.cols != s.n_heads * s.head_dim
        || !s.head_dim.is_multiple_of(4)
        || !(1..=COMBINE_IN_WO_SPLITS).contains(&s.n_splits)
    {
        return Err(Error::InvalidRequest(format!(
            "matvec_combine: rows of {} values over {} heads of {} in at most {} splits (1 to {COMBINE_IN_WO_SPLITS})",
            w.cols, s.n_heads, s.head_dim, s.n_splits
        )));
    }
    let p = MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_stride, ..p };
    let parts = [wgsl::MATVEC_IO, wgsl::gpu::MATVEC_COMBINE];
    let module = row_walk_module(t, "matvec_combine", w.ty, &parts, wgsl::gpu::MATVEC)?.prepend(
        format!(
            "const HEAD_DIM: u32 = {}u;\nconst N_HEADS: u32 = {}u;\nconst N_SPLITS: u32 = {}u;\nconst SPLIT_LEN: u32 = {ATTENTION_SPLIT_LEN}u;\n",
            s.head_dim, s.n_heads, s.n_splits
        ),
    );
    let mut resources = numbered(&[step, w.buffer("matvec")?, att, out]);
    resources.push((5, partial.as_entire_binding()));
    bind(
        t.gpu,
        "matvec_combine",
        t.pipeline(&module, "main")?,
        bytemuck::bytes_of(&p),
        resources,
        grid(w.rows.div_ceil(MATVEC_ROWS_PER_WG)),
    )
}

/// Most tokens the matvec-shaped matmul (`main_few`: n candidates, a prompt's last token) takes.
pub const MATMUL_FEW: u32 = 8;
/// Weight rows per workgroup of `main_few` (16 threads each).
const MATMUL_FEW_ROWS: u32 = 4;

/// One work split of the tiled matmul (matmul_tiled.wgsl, put before it as WGSL constants): a
/// workgroup of `threads` computes `rows` weight rows x `tokens` tokens, walking the row length
/// `k` columns a step through workgroup memory (`k_f16` with f16 tiles); each thread holds
/// `rows_per_thread` rows x `tokens_per_thread` tokens in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulTile {
    pub rows: u32,
    pub tokens: u32,
    pub k: u32,
    pub k_f16: u32,
    pub threads: u32,
    pub rows_per_thread: u32,
    pub tokens_per_thread: u32,
}

/// The tiled matmul's work splits, largest first; each uses at most 16 KiB of workgroup memory
/// (WebGPU's default limit: 4 bytes x k x (rows + tokens) with f32 tiles, 2 x k_f16 x (rows +
/// tokens) with f16). Every tile steps 32 columns with f16 tiles, as llama.cpp's tiles for
/// quantized weights do; the large one 16 with f32 tiles, which would take 32 KiB at 32.
pub const MATMUL_TILES: [MatmulTile; 3] = [
    // 128 x 128, 8 x 8 per thread (llama.cpp's large tile): 64 FMAs per 4 vec4 reads; 16 KiB.
    MatmulTile { rows: 128, tokens: 128, k: 16, k_f16: 32, threads: 256, rows_per_thread: 8, tokens_per_thread: 8 },
    // 64 x 64, 4 x 4 per thread: 16 FMAs per 2 vec4 reads; 16 KiB (8 with f16).
    MatmulTile { rows: 64, tokens: 64, k: 32, k_f16: 32, threads: 256, rows_per_thread: 4, tokens_per_thread: 4 },
    // 32 x 32, 4 x 4 per thread: a 576-row matrix and a 256-token chunk in 144 workgroups; 8 KiB.
    MatmulTile { rows: 32, tokens: 32, k: 32, k_f16: 32, threads: 64, rows_per_thread: 4, tokens_per_thread: 4 },
];

/// Workgroups a matmul should have to fill a GPU of 100+ compute units: the largest tile that
/// gives this many is taken, else the smallest (Layout::matmul_min_workgroups' default).
pub const MATMUL_MIN_WORKGROUPS: u32 = 128;

const _: () = {
    let mut i = 0;
    while i < MATMUL_TILES.len() {
        let t = MATMUL_TILES[i];
        assert!(
            t.rows_per_thread.is_multiple_of(4) && t.rows.is_multiple_of(t.rows_per_thread) && t.k.is_multiple_of(8)
        );
        assert!(t.k_f16.is_multiple_of(8) && 2 * t.k_f16 * (t.rows + t.tokens) <= 16384);
        assert!(t.tokens_per_thread.is_multiple_of(4) && t.tokens.is_multiple_of(t.tokens_per_thread));
        assert!((t.rows / t.rows_per_thread) * (t.tokens / t.tokens_per_thread) == t.threads);
        assert!(4 * t.k * (t.rows + t.tokens) <= 16384);
        i += 1;
    }
};

impl MatmulTile {
    /// The tile for `rows` weight rows and batches of up to `max_tokens` tokens: of the tiles no
    /// wider than the batch (a batch of 32 takes 32-token tiles, as llama.cpp's small tile), the
    /// largest that gives `min_workgroups` (Layout::matmul_min_workgroups), else the smallest.
    pub fn choose(rows: u32, max_tokens: u32, min_workgroups: u32) -> MatmulTile {
        let smallest = MATMUL_TILES[MATMUL_TILES.len() - 1];
        let workgroups = |t: &MatmulTile| rows.div_ceil(t.rows) * max_tokens.div_ceil(t.tokens);
        *MATMUL_TILES
            .iter()
            .filter(|t| t.tokens <= max_tokens.max(smallest.tokens))
            .find(|t| workgroups(t) >= min_workgroups)
            .unwrap_or(&smallest)
    }

    /// The WGSL constants matmul_tiled.wgsl is written against, its tiles of `tile1` values (f16
    /// where `f16`), stepping k_f16 columns where `k32`, else k; staged a component a thread where
    /// `component` (Layout::component_staging).
    fn wgsl(&self, f16: bool, k32: bool, component: bool) -> String {
        format!(
            "const BM: u32 = {}u; // weight rows per tile\nconst BN: u32 = {}u; // tokens per tile\n\
             const BK: u32 = {}u; // columns per step\nconst WG: u32 = {}u; // threads\n\
             const TR: u32 = {}u; // rows per thread\nconst TT: u32 = {}u; // tokens per thread\n\
             alias tile1 = {}; // the tiles' values in workgroup memory\n\
             const TILE_MAX: f32 = {}; // the largest value a tile holds\n\
             const COMPONENT_STAGING: bool = {component}; // a vector component a thread\n",
            self.rows,
            self.tokens,
            if f16 && k32 { self.k_f16 } else { self.k },
            self.threads,
            self.rows_per_thread,
            self.tokens_per_thread,
            if f16 { "f16" } else { "f32" },
            if f16 { "65504.0" } else { "3.4028234e38" }
        )
    }
}

/// matmul (see kernels::matmul; `p` complete): at most MATMUL_FEW tokens, or only the last one,
/// take the matvec-shaped kernel (candidates, prompt logits); more the tiled one, its tile chosen by
/// the matrix's rows and `max_tokens`.
pub fn matmul(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatmulParams,
    max_tokens: u32,
) -> Result<Dispatch> {
    let parts = [wgsl::MATMUL_IO, wgsl::MATMUL_WEIGHTS];
    let buffers = numbered(&[step, w.buffer("matmul")?, x, out]);
    if max_tokens <= MATMUL_FEW || p.last_only == 1 {
        let module = Module::quant(t.layout, "matmul", w.ty, &parts)?.with(&[wgsl::gpu::MATMUL]);
        return bind(
            t.gpu,
            "matmul",
            t.pipeline(&module, "main_few")?,
            bytemuck::bytes_of(&p),
            buffers,
            grid(p.rows.div_ceil(MATMUL_FEW_ROWS)),
        );
    }
    let tile = MatmulTile::choose(p.rows, max_tokens, t.layout.matmul_min_workgroups);
    let f16 = t.layout.f16_tiles;
    let (sums, sum_step) = match f16 && t.layout.f16_products {
        true => ("f16 sums", wgsl::gpu::MATMUL_SUM_F16),
        false => ("f32 sums", wgsl::gpu::MATMUL_SUM_F32),
    };
    let module = Module::quant(t.layout, "matmul_tiled", w.ty, &parts)?
        .variant(&format!("{}x{}", tile.rows, tile.tokens), wgsl::gpu::MATMUL_TILED)
        .variant(sums, sum_step)
        .prepend(tile.wgsl(f16, t.layout.f16_k32, t.layout.component_staging));
    let module = if f16 { module.f16() } else { module };
    bind(
        t.gpu,
        "matmul",
        t.pipeline(&module, "main")?,
        bytemuck::bytes_of(&p),
        buffers,
        [p.rows.div_ceil(tile.rows), max_tokens.div_ceil(tile.tokens), 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct QkvParams {
    pub q_rows: u32,
    pub kv_rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub eps: f32,
    /// 1: NEOX RoPE (rows i and i + n_rot / 2 of a head rotate together); 0: adjacent rows.
    pub neox: u32,
    /// 1: the q | k | v biases are added before RoPE (qkv's `bias` given).
    pub bias: u32,
    pub _pad: u32,
}

/// qkv: rmsnorm(x) * norm_w through the concatenated [Wq; Wk; Wv] (`w`, q_rows + 2 kv_rows rows)
/// into `out` = [q | k | v], plus `bias` ([bq, bk, bv]) where given, q and k roped for position
/// step.pos (NEOX pairs where p.neox).
#[allow(clippy::too_many_arguments)]
pub fn qkv(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    freq_factors: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: QkvParams,
    bias: Option<[&wgpu::Buffer; 3]>,
) -> Result<Dispatch> {
    let p = QkvParams { cols: w.cols, row_bytes: w.row_stride, bias: bias.is_some() as u32, ..p };
    if w.rows != p.q_rows + 2 * p.kv_rows || !p.head_dim.is_multiple_of(2) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!(
            "qkv: {} rows for q {} + 2 x kv {}, head {}",
            w.rows, p.q_rows, p.kv_rows, p.head_dim
        )));
    }
    let pipeline = t.pipeline(&row_walk_module(t, "qkv", w.ty, &[wgsl::gpu::NORM_FOLD], wgsl::gpu::QKV)?, "main")?;
    // Without biases their bindings take any buffer (never read).
    let [bq, bk, bv] = bias.unwrap_or([freq_factors; 3]);
    let buffers = numbered(&[step, w.buffer("qkv")?, x, norm_w, out, freq_factors, bq, bk, bv]);
    // A RoPE pair of rows per workgroup.
    bind(t.gpu, "qkv", pipeline, bytemuck::bytes_of(&p), buffers, grid(w.rows / 2))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GateUpParams {
    pub ffn: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub eps: f32,
}

/// gate_up: out[r] = act(Wgate[r] . xb) * (Wup[r] . xb), xb = rmsnorm(x) * norm_w, over the
/// concatenated [Wgate; Wup] (`w`, 2 ffn rows).
pub fn gate_up(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    eps: f32,
    act: GatedAct,
) -> Result<Dispatch> {
    if !w.rows.is_multiple_of(2) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!("gate_up: {} rows of {} are not two halves", w.rows, w.cols)));
    }
    let p = GateUpParams { ffn: w.rows / 2, cols: w.cols, row_bytes: w.row_stride, eps };
    let module = act.compose(row_walk_module(t, "gate_up", w.ty, &[wgsl::gpu::NORM_FOLD], wgsl::gpu::GATE_UP)?);
    let pipeline = t.pipeline(&module, "main")?;
    bind(
        t.gpu,
        "gate_up",
        pipeline,
        bytemuck::bytes_of(&p),
        numbered(&[w.buffer("gate_up")?, x, norm_w, out]),
        grid(p.ffn), // an output (a gate row and an up row) per workgroup
    )
}
