//! One function per kernel: its params struct (mirroring the WGSL one), its bind group and its
//! workgroup count, returned as a Dispatch to record into a compute pass. Bind groups are made once
//! when the model is built and replayed for every token. This file holds the plumbing, the step
//! uniform, how a matrix lies on the GPU, the kernels both families share (embed, rmsnorm, rope,
//! qkv_bias, add_bias, head_rmsnorm, swiglu; the choice of tokens in choose.rs, the mixture of experts' in
//! moe.rs) and the ones whose family the Layout picks (matvec, matmul, attention), each in `gpu/`
//! or `cpu/`.

use crate::error::{Error, Result};
use crate::format::quant::QuantType;
use crate::gpu::compose::{wgsl, Module};
use crate::gpu::{Gpu, Layout};
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

mod attention;
mod choose;
pub mod cpu;
mod glu;
pub mod gpu;
mod moe;
pub use attention::{attention, attention_unmerged, AttentionBuffers, AttentionParams, AttentionRows};
pub use choose::{
    argmax, argmax_masked, argmax_masked_spans, argmax_spans, argmax_spans_bytes, edit_logits, logprobs,
    logprobs_spans, logprobs_spans_bytes, mask_words, sample, sample_spans_bytes, CountParams, EditBuffers, EditShape,
    SampleDraw, ARGMAX_SPAN, EDIT_HEADER, LOGPROBS_STRIDE, SAMPLE_SPAN, TOP_LOGPROBS,
};
pub use glu::{swiglu, swiglu_rows, GatedAct, SwigluParams};
pub use moe::{
    moe_matmul, moe_matmul_grid_y, moe_matvec, moe_route, moe_sum, MoeMatmulParams, MoeMatvecParams, MoeRouteParams,
};

/// The device and the layout chosen for it: what every kernel function is built for.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub gpu: &'a Gpu,
    pub layout: &'a Layout,
}

impl Target<'_> {
    /// The pipeline of `entry` in `module`.
    fn pipeline(&self, module: &Module, entry: &str) -> Result<Arc<wgpu::ComputePipeline>> {
        module.pipeline(self.gpu, self.layout, entry)
    }
}

/// A recorded kernel call: pipeline, bindings and grid.
pub struct Dispatch {
    pub name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// The uniform buffer the bind group uses, kept alive with it.
    _uniform: wgpu::Buffer,
    /// The buffers and textures bound besides the params (for the profile's byte counts).
    pub bound: Vec<Bound>,
    /// Of the weight matrix bound, the rows this dispatch reads where not all (a fused group's
    /// half: the profile's byte counts).
    pub weight_rows: Option<u32>,
}

/// A buffer or texture a Dispatch binds.
#[derive(Clone)]
pub enum Bound {
    Buffer(wgpu::Buffer),
    Texture(wgpu::TextureView),
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }

    /// As record, with no workgroups: the pipeline, bindings and barriers alone (the profile's
    /// measure of the time between kernels).
    pub fn record_empty(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(0, 0, 0);
    }
}

/// Records `dispatches` into one compute pass of a new command buffer and submits it.
pub fn submit(gpu: &Gpu, dispatches: &[Dispatch]) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatches.iter().for_each(|d| d.record(&mut pass));
    }
    gpu.queue.submit([enc.finish()]);
}

/// A grid of `n` workgroups, spilling into y past the 65535 per-dimension limit (spill).
fn grid(n: u32) -> [u32; 3] {
    let (x, y) = spill(n);
    [x, y, 1]
}

/// Most workgroups a dispatch has in one dimension (WebGPU's maxComputeWorkgroupsPerDimension).
pub const MAX_WORKGROUPS_PER_DIMENSION: u32 = 65535;

/// `n` workgroups (at least 1) as x * y within the 65535 per-dimension limit, x as even as the
/// spill allows: fewer than y past n (the kernels skip or clamp the flat index past their rows).
/// Not 65535 * ceil(n / 65535): 151,936 logits rows at 2 a workgroup would run 131,070 for 75,968.
fn spill(n: u32) -> (u32, u32) {
    let y = n.div_ceil(MAX_WORKGROUPS_PER_DIMENSION).max(1);
    (n.div_ceil(y).max(1), y)
}

/// An error naming `kernel` where its `workgroups` in x pass the per-dimension limit (rows wider
/// than any real model's).
fn within_one_dimension(kernel: &str, workgroups: u32) -> Result<()> {
    if workgroups > MAX_WORKGROUPS_PER_DIMENSION {
        return Err(Error::InvalidRequest(format!(
            "{kernel}: {workgroups} workgroups in one dimension, over the {MAX_WORKGROUPS_PER_DIMENSION} a dispatch allows"
        )));
    }
    Ok(())
}

/// Buffers bound at 1, 2, 3, ... (binding 0 is the params uniform).
fn numbered<'a>(buffers: &[&'a wgpu::Buffer]) -> Vec<(u32, wgpu::BindingResource<'a>)> {
    buffers.iter().enumerate().map(|(i, b)| (i as u32 + 1, b.as_entire_binding())).collect()
}

/// Buffers at the bindings given (an entry point that uses only some of its module's).
fn at<'a>(buffers: &[(u32, &'a wgpu::Buffer)]) -> Vec<(u32, wgpu::BindingResource<'a>)> {
    buffers.iter().map(|(i, b)| (*i, b.as_entire_binding())).collect()
}

/// A Dispatch of `pipeline` with `params` in a uniform at binding 0 and `resources` at theirs.
fn bind(
    gpu: &Gpu,
    name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: &[u8],
    resources: Vec<(u32, wgpu::BindingResource)>,
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let uniform = gpu.buffer(&wgpu::BufferDescriptor {
        label: Some(name),
        size: params.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&uniform, 0, params);
    let bound = resources
        .iter()
        .filter_map(|(_, r)| match r {
            wgpu::BindingResource::Buffer(b) => Some(Bound::Buffer(b.buffer.clone())),
            wgpu::BindingResource::TextureView(t) => Some(Bound::Texture((*t).clone())),
            _ => None,
        })
        .collect();
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    entries.extend(resources.into_iter().map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource }));
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    gpu.take_error()?;
    Ok(Dispatch { name, pipeline, bind_group, workgroups, _uniform: uniform, bound, weight_rows: None })
}

/// The per-step uniform every position-dependent kernel reads. A step runs a batch of rows: one
/// token (decode), a chunk of a prompt (rows at pos, pos + 1, ...) or n candidates (every row at
/// pos, each with its own branch of the KV cache from prefix_len on). shaders/step.wgsl declares it
/// for the kernels, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Step {
    /// Position of row 0.
    pub pos: u32,
    /// Positions in the KV cache including row 0's (pos + 1).
    pub kv_len: u32,
    /// Rows in the batch.
    pub n_rows: u32,
    /// 1: row r is at pos + r; 0: every row is at pos.
    pub pos_step: u32,
    /// 1: positions from prefix_len on come from each row's branch cache.
    pub branch: u32,
    pub prefix_len: u32,
    pub _pad: [u32; 2],
}

impl Step {
    /// One token at `pos`.
    pub fn single(pos: u32) -> Step {
        Step { pos, kv_len: pos + 1, n_rows: 1, pos_step: 1, ..Default::default() }
    }
    /// A prompt chunk of `n_rows` tokens from `pos` on.
    pub fn chunk(pos: u32, n_rows: u32) -> Step {
        Step { n_rows, ..Step::single(pos) }
    }
    /// `n_rows` candidates, each at `pos`, sharing positions below `prefix_len`.
    pub fn candidates(pos: u32, n_rows: u32, prefix_len: u32) -> Step {
        Step { n_rows, pos_step: 0, branch: 1, prefix_len, ..Step::single(pos) }
    }
}

/// Where a matrix's blocks are on the GPU.
#[derive(Clone, Copy)]
pub enum Blocks<'a> {
    /// A storage buffer: rows `row_stride` bytes apart.
    Buffer(&'a wgpu::Buffer),
    /// A texture of 16-byte texels (Rgba32Uint), TEXTURE_WIDTH per texture row, holding the rows
    /// padded to 16 bytes one after another: on CPU adapters, for types with a wide decoder, whose
    /// kernels alone read it (`uses_texture`).
    Texture(&'a wgpu::TextureView),
}

/// A quantized matrix (or one row-range part of one) in raw GGUF bytes on the GPU.
pub struct QuantMatrix<'a> {
    pub ty: QuantType,
    pub blocks: Blocks<'a>,
    pub rows: u32,
    pub cols: u32,
    /// Bytes from one row to the next: row_bytes(), or more where rows are padded.
    pub row_stride: u32,
}

impl<'a> QuantMatrix<'a> {
    /// Rows packed back to back in a buffer, as in the GGUF file.
    pub fn packed(ty: QuantType, buffer: &'a wgpu::Buffer, rows: u32, cols: u32) -> QuantMatrix<'a> {
        QuantMatrix { ty, blocks: Blocks::Buffer(buffer), rows, cols, row_stride: row_bytes(ty, cols) }
    }

    /// Rows in a buffer as `layout` stores them (row_stride: blocks padded in the GPU family, rows
    /// in the CPU family's).
    pub fn stored(layout: &Layout, ty: QuantType, buffer: &'a wgpu::Buffer, rows: u32, cols: u32) -> QuantMatrix<'a> {
        QuantMatrix { ty, blocks: Blocks::Buffer(buffer), rows, cols, row_stride: row_stride(layout, ty, cols) }
    }

    /// The buffer, for the kernels that read blocks from one (all but the wide ones).
    fn buffer(&self, kernel: &str) -> Result<&'a wgpu::Buffer> {
        match self.blocks {
            Blocks::Buffer(b) => Ok(b),
            Blocks::Texture(_) => Err(Error::InvalidRequest(format!(
                "{kernel}: a {} matrix in a texture has no {kernel} kernel",
                self.ty.name()
            ))),
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'a> {
        match self.blocks {
            Blocks::Buffer(b) => b.as_entire_binding(),
            Blocks::Texture(t) => wgpu::BindingResource::TextureView(t),
        }
    }
}

/// Zero bytes a layout inserts in each stored block of a type, and where (kernels::block_pad).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockPad {
    /// The byte offset in a GGUF block at which the zero bytes go.
    pub at: u64,
    /// How many.
    pub bytes: u64,
}

/// Where `layout`'s stored blocks of `ty` differ from GGUF's (None where they do not).
/// The GPU family pads blocks by 2 bytes so that they start on 4-byte boundaries and every field
/// read as a word is aligned (one load instead of two and a shift): GGUF's 34-, 18-, 22-, 110- and
/// 210-byte blocks: Q8_0, Q4_0, IQ4_NL (d: f16, then the quants) and Q5_0 (d, then qh and the
/// quants) padded after d; Q3_K and Q6_K (d: f16 last) padded at the end. The CPU family pads the
/// blocks its wide decoders would otherwise read out of line with their 16-byte loads
/// (cpu::block_pad). The CPU reference reads GGUF.
pub fn block_pad(layout: &Layout, ty: QuantType) -> Option<BlockPad> {
    if layout.is_cpu() {
        return cpu::block_pad(layout, ty);
    }
    let at = match ty {
        QuantType::Q8_0 | QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Iq4Nl => 2,
        QuantType::Q3K | QuantType::Q6K => ty.block_bytes(),
        _ => return None,
    };
    Some(BlockPad { at, bytes: 2 })
}

/// Bytes of a block of `ty` as `layout` stores it (block_pad).
pub fn stored_block_bytes(layout: &Layout, ty: QuantType) -> u64 {
    ty.block_bytes() + block_pad(layout, ty).map_or(0, |p| p.bytes)
}

/// Bytes of a row of `cols` values of type `ty` in the GGUF file.
pub fn row_bytes(ty: QuantType, cols: u32) -> u32 {
    (cols as u64 / ty.block_elems() * ty.block_bytes()) as u32
}

/// The row stride a matrix gets in this layout: its stored blocks (block_pad) packed, and in the
/// CPU family, for the types it reads wide (cpu::wide_decoder), padded to 16 bytes so that the wide
/// kernels' 16-byte loads line up.
pub fn row_stride(layout: &Layout, ty: QuantType, cols: u32) -> u32 {
    let packed = (cols as u64 / ty.block_elems() * stored_block_bytes(layout, ty)) as u32;
    if layout.is_cpu() && cpu::wide_decoder(layout, ty).is_some() && packed.is_multiple_of(4) {
        packed.next_multiple_of(16)
    } else {
        packed
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatvecParams {
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub x_offset: u32,
    pub out_offset: u32,
    pub out_pos_stride: u32,
    pub accumulate: u32,
    /// Set by the CPU family's swiglu fold.
    pub up_offset: u32,
    pub eps: f32,
    pub _pad: [u32; 3],
}

/// matvec: out[out_offset + pos * out_pos_stride + r] (+)= dot(W[r], x[x_offset..]).
/// x is read four values at a time: x_offset and the row length must be multiples of 4.
pub fn matvec(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
) -> Result<Dispatch> {
    matvec_folded(t, w, x, out, step, p, cpu::Fold::default())
}

/// matvec with `fold` folded in: the CPU family's rmsnorm and swiglu folds (cpu::can_fold); an
/// error where a fold is asked for and cannot run.
pub fn matvec_folded(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
    fold: cpu::Fold,
) -> Result<Dispatch> {
    if !p.x_offset.is_multiple_of(4) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!(
            "matvec: x offset {} and row length {} must be multiples of 4",
            p.x_offset, w.cols
        )));
    }
    let p = MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_stride, ..p };
    match t.layout.family {
        crate::gpu::Family::Gpu if fold.any() => {
            Err(Error::InvalidRequest("matvec: folds are the CPU family's".into()))
        }
        crate::gpu::Family::Gpu => gpu::matvec(t, w, x, out, step, p),
        crate::gpu::Family::Cpu => cpu::matvec(t, w, x, out, step, p, fold),
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    /// Elements per token row of x.
    pub x_stride: u32,
    pub out_offset: u32,
    /// Elements per token row of out.
    pub out_stride: u32,
    /// 1: out += result (residual add).
    pub accumulate: u32,
    /// 1: only the batch's last token, into token row 0.
    pub last_only: u32,
    /// First weight row of `w` to use (rows w_row0 .. w_row0 + rows).
    pub w_row0: u32,
    pub _pad: [u32; 3],
}

/// matmul: out[t, r] (+)= dot(W[w_row0 + r], x[t]) for the step.n_rows tokens of a batch of at most
/// `max_tokens` (p.rows: how many weight rows; 0 means all of w's rows from w_row0 on).
pub fn matmul(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatmulParams,
    max_tokens: u32,
) -> Result<Dispatch> {
    if !p.x_stride.is_multiple_of(4) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!(
            "matmul: x stride {} and row length {} must be multiples of 4",
            p.x_stride, w.cols
        )));
    }
    let rows = if p.rows == 0 { w.rows - p.w_row0 } else { p.rows };
    let p = MatmulParams { rows, cols: w.cols, row_bytes: w.row_stride, ..p };
    match t.layout.family {
        crate::gpu::Family::Gpu => gpu::matmul(t, w, x, out, step, p, max_tokens),
        crate::gpu::Family::Cpu => cpu::matmul(t, w, x, out, step, p, max_tokens),
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EmbedParams {
    pub dim: u32,
    pub row_bytes: u32,
    pub row_start: u32,
    pub n_rows: u32,
    pub token_index: u32,
    pub out_offset: u32,
    pub _pad: [u32; 2],
}

/// embed: out = dequantized row tokens[token_index] of the table part starting at `row_start`.
/// With `rows` > 1, tokens token_index.. go to rows of `out` one `table.cols` apart; the grid
/// covers `rows`, and rows from `step`'s n_rows on do nothing. The CPU family reads tables in its
/// wide layout through embed_wide.
#[allow(clippy::too_many_arguments)]
pub fn embed(
    t: Target,
    table: &QuantMatrix,
    row_start: u32,
    tokens: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    token_index: u32,
    rows: u32,
) -> Result<Dispatch> {
    let p = EmbedParams {
        dim: table.cols,
        row_bytes: table.row_stride,
        row_start,
        n_rows: table.rows,
        token_index,
        ..Default::default()
    };
    if let Some(d) = cpu::embed_wide(t, table, tokens, out, step, p, rows)? {
        return Ok(d);
    }
    let pipeline = t.pipeline(&Module::quant(t.layout, "embed", table.ty, &[wgsl::EMBED])?, "main")?;
    bind(
        t.gpu,
        "embed",
        pipeline,
        bytemuck::bytes_of(&p),
        numbered(&[table.buffer("embed")?, tokens, out, step]),
        [table.cols.div_ceil(64), rows, 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RmsnormParams {
    pub n: u32,
    pub eps: f32,
    pub x_offset: u32,
    pub out_offset: u32,
}

/// Where rmsnorm puts its rows: written over `out`, or added to it (Gemma's post-norms: a block's
/// output normed into the residual stream).
#[derive(Clone, Copy)]
pub enum NormOut<'a> {
    Write(&'a wgpu::Buffer),
    Add(&'a wgpu::Buffer),
}

/// rmsnorm: out = x / sqrt(mean(x^2) + eps) * w (or out += that), for `rows` vectors of n one
/// after another: a workgroup of 256 per row, or, writing, in the CPU family with subgroups one
/// subgroup of 8 or 4 lanes per row (rmsnorm_lanes.wgsl, Layout::act_lanes). The grid covers `rows`;
/// rows from `step`'s n_rows on do nothing.
#[allow(clippy::too_many_arguments)]
pub fn rmsnorm(
    t: Target,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    out: NormOut,
    step: &wgpu::Buffer,
    n: u32,
    eps: f32,
    rows: u32,
) -> Result<Dispatch> {
    let p = RmsnormParams { n, eps, x_offset: 0, out_offset: 0 };
    let lanes = t.layout.act_lanes();
    let (module, entry, out) = match out {
        NormOut::Write(out) if lanes > 0 => {
            let module = Module::new("rmsnorm_lanes", &[wgsl::RMSNORM])
                .variant(&format!("{lanes}"), &format!("const LANES: u32 = {lanes}u;"))
                .with(&[wgsl::cpu::RMSNORM_LANES]);
            (module, "main_lanes", out)
        }
        NormOut::Write(out) => (Module::new("rmsnorm", &[wgsl::RMSNORM]), "main", out),
        NormOut::Add(out) => (Module::new("rmsnorm", &[wgsl::RMSNORM]), "add_normed", out),
    };
    bind(
        t.gpu,
        "rmsnorm",
        t.pipeline(&module, entry)?,
        bytemuck::bytes_of(&p),
        numbered(&[x, w, out, step]),
        [1, rows, 1],
    )
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RopeParams {
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub offset: u32,
    pub pos_stride: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Elements per batch row.
    pub row_stride: u32,
    /// 1: NEOX pairs (x[i], x[i + n_rot/2]) (qwen2, qwen3); 0: adjacent pairs (llama).
    pub neox: u32,
    pub _pad: [u32; 3],
}

/// rope: rotates the heads at x[offset + pos * pos_stride ..] in place for position step.pos (and
/// for `rows` batch rows, row_stride apart, at their positions); `freq_factors` holds n_rot / 2
/// divisors of the angles (ones when the model has none).
pub fn rope(
    t: Target,
    x: &wgpu::Buffer,
    freq_factors: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: RopeParams,
    rows: u32,
) -> Result<Dispatch> {
    let n = p.n_heads * p.n_rot / 2;
    let pipeline = t.pipeline(&Module::new("rope", &[wgsl::ROPE]), "main")?;
    bind(t.gpu, "rope", pipeline, bytemuck::bytes_of(&p), numbered(&[step, x, freq_factors]), [n.div_ceil(64), rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct QkvBiasParams {
    pub q_dim: u32,
    pub kv_dim: u32,
    /// Elements per batch row of qkv.
    pub row_stride: u32,
    pub _pad: u32,
}

/// qkv_bias (qwen2, a llama file with the biases): q | k | v += bq | bk | bv in place, for `rows`
/// batch rows of qkv.
pub fn qkv_bias(
    t: Target,
    qkv: &wgpu::Buffer,
    bias: [&wgpu::Buffer; 3],
    p: QkvBiasParams,
    rows: u32,
) -> Result<Dispatch> {
    let n = p.q_dim + 2 * p.kv_dim;
    within_one_dimension("qkv_bias", n.div_ceil(64))?;
    let pipeline = t.pipeline(&Module::new("qkv_bias", &[wgsl::QKV_BIAS]), "main")?;
    let buffers = numbered(&[qkv, bias[0], bias[1], bias[2]]);
    bind(t.gpu, "qkv_bias", pipeline, bytemuck::bytes_of(&p), buffers, [n.div_ceil(64), rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AddBiasParams {
    /// The bias's length.
    pub len: u32,
    /// Elements per batch row of out.
    pub row_stride: u32,
    /// Where in a row the biased values start.
    pub offset: u32,
    /// scale_values' multiplier (add_bias reads none).
    pub scale: f32,
}

/// add_bias (a llama file's other biases): out[r, offset..offset + len] += bias in place, for the
/// first step.n_rows of `rows` batch rows.
pub fn add_bias(
    t: Target,
    out: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: AddBiasParams,
    rows: u32,
) -> Result<Dispatch> {
    within_one_dimension("add_bias", p.len.div_ceil(64))?;
    let pipeline = t.pipeline(&Module::new("add_bias", &[wgsl::ADD_BIAS]), "main")?;
    let buffers = numbered(&[out, bias, step]);
    bind(t.gpu, "add_bias", pipeline, bytemuck::bytes_of(&p), buffers, [p.len.div_ceil(64), rows, 1])
}

/// What scale_values does to each value v, with `scale` c: multiply it (granite's multipliers), or
/// soft-cap it, c * tanh(v / c) (Gemma 2's logits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueMap {
    Scale,
    SoftCap,
}

/// scale_values: out[r, offset..offset + len] *= scale (or soft-capped by it) in place, for the
/// first step.n_rows of `rows` batch rows.
pub fn scale_values(
    t: Target,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: AddBiasParams,
    rows: u32,
    map: ValueMap,
) -> Result<Dispatch> {
    within_one_dimension("scale_values", p.len.div_ceil(64))?;
    let entry = match map {
        ValueMap::Scale => "scale_values",
        ValueMap::SoftCap => "soft_cap_values",
    };
    let pipeline = t.pipeline(&Module::new("add_bias", &[wgsl::ADD_BIAS]), entry)?;
    let buffers = at(&[(1, out), (3, step)]);
    bind(t.gpu, "scale_values", pipeline, bytemuck::bytes_of(&p), buffers, [p.len.div_ceil(64), rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct HeadRmsnormParams {
    pub head_dim: u32,
    pub n_q_heads: u32,
    /// Elements per batch row of qkv.
    pub row_stride: u32,
    pub eps: f32,
}

/// head_rmsnorm (qwen3): every head of q (the first `p.n_q_heads` of a row) and of k (the next
/// `n_k_heads`) RMS-normed on its own in place, times q_norm or k_norm ([head_dim]), for `rows` rows.
pub fn head_rmsnorm(
    t: Target,
    qkv: &wgpu::Buffer,
    [q_norm, k_norm]: [&wgpu::Buffer; 2],
    p: HeadRmsnormParams,
    n_k_heads: u32,
    rows: u32,
) -> Result<Dispatch> {
    let pipeline = t.pipeline(&Module::new("head_rmsnorm", &[wgsl::HEAD_RMSNORM]), "main")?;
    let buffers = numbered(&[qkv, q_norm, k_norm]);
    bind(t.gpu, "head_rmsnorm", pipeline, bytemuck::bytes_of(&p), buffers, [p.n_q_heads + n_k_heads, rows, 1])
}

#[cfg(test)]
mod tests {
    use super::spill;

    #[test]
    fn grids_spill_into_y_with_few_workgroups_to_spare() {
        // Qwen's 151,936 logits rows at 2 a workgroup (75,968); 2^16; the most a grid holds.
        for n in [0, 1, 65535, 65536, 75968, 131071, 262147, 1 << 20, 65535 * 65535] {
            let (x, y) = spill(n);
            assert!(x <= 65535 && y <= 65535, "{n}: {x} x {y}");
            let total = x as u64 * y as u64;
            assert!(total >= n.max(1) as u64 && total - (n.max(1) as u64) < y as u64, "{n}: {x} x {y}");
        }
    }
}
