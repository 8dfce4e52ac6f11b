//! One function per shader: its params struct (mirroring the WGSL one), its bind group and its
//! workgroup count, returned as a Dispatch to record into a compute pass. Bind groups are made once
//! when the model is built and replayed for every token.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::quant::QuantType;
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

/// A recorded kernel call: pipeline, bindings and grid.
pub struct Dispatch {
    pub name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Uniform buffers the bind group uses, kept alive with it.
    _uniforms: Vec<wgpu::Buffer>,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
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

/// A grid of `n` workgroups, spilling into y past the 65535 per-dimension limit.
fn grid(n: u32) -> [u32; 3] {
    if n <= 65535 {
        [n.max(1), 1, 1]
    } else {
        [65535, n.div_ceil(65535), 1]
    }
}

fn build(
    gpu: &Gpu,
    name: &'static str,
    src: &'static str,
    quant: Option<QuantType>,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    build_with(gpu, name, gpu.pipeline(name, src, quant)?, params, buffers, workgroups)
}

fn build_with(
    gpu: &Gpu,
    name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let uniform = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(name),
        size: params.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&uniform, 0, params);
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    for (i, b) in buffers.iter().enumerate() {
        entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
    }
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    gpu.take_error()?;
    Ok(Dispatch { name, pipeline, bind_group, workgroups, _uniforms: vec![uniform] })
}

/// The per-step uniform every position-dependent kernel reads.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Step {
    /// Position of the token being run.
    pub pos: u32,
    /// Positions in the KV cache including this one (pos + 1).
    pub kv_len: u32,
    pub _pad: [u32; 2],
}

/// A quantized matrix (or one row-range part of one) in raw GGUF bytes on the GPU.
pub struct QuantMatrix<'a> {
    pub ty: QuantType,
    pub buffer: &'a wgpu::Buffer,
    pub rows: u32,
    pub cols: u32,
}

impl QuantMatrix<'_> {
    pub fn row_bytes(&self) -> u32 {
        (self.cols as u64 / self.ty.block_elems() * self.ty.block_bytes()) as u32
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
    pub _pad: u32,
}

/// matvec: out[out_offset + pos * out_pos_stride + r] (+)= dot(W[r], x[x_offset..]).
/// x is read four values at a time: x_offset and the row length must be multiples of 4.
pub fn matvec(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, out: &wgpu::Buffer, step: &wgpu::Buffer, p: MatvecParams) -> Result<Dispatch> {
    if p.x_offset % 4 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("matvec: x offset {} and row length {} must be multiples of 4", p.x_offset, w.cols)));
    }
    let p = MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_bytes(), ..p };
    let (entry, rows_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 64) } else { ("main", 4) };
    let pipeline = gpu.pipeline_at("matvec", include_str!("../shaders/matvec.wgsl"), Some(w.ty), entry)?;
    build_with(gpu, "matvec", pipeline, bytemuck::bytes_of(&p), &[step, w.buffer, x, out], grid(w.rows.div_ceil(rows_per_wg)))
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
pub fn embed(gpu: &Gpu, table: &QuantMatrix, row_start: u32, tokens: &wgpu::Buffer, out: &wgpu::Buffer, token_index: u32) -> Result<Dispatch> {
    let p = EmbedParams { dim: table.cols, row_bytes: table.row_bytes(), row_start, n_rows: table.rows, token_index, ..Default::default() };
    let src = include_str!("../shaders/embed.wgsl");
    build(gpu, "embed", src, Some(table.ty), bytemuck::bytes_of(&p), &[table.buffer, tokens, out], grid(table.cols.div_ceil(64)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RmsnormParams {
    pub n: u32,
    pub eps: f32,
    pub x_offset: u32,
    pub out_offset: u32,
}

/// rmsnorm: out = x / sqrt(mean(x^2) + eps) * w.
pub fn rmsnorm(gpu: &Gpu, x: &wgpu::Buffer, w: &wgpu::Buffer, out: &wgpu::Buffer, n: u32, eps: f32) -> Result<Dispatch> {
    let p = RmsnormParams { n, eps, x_offset: 0, out_offset: 0 };
    build(gpu, "rmsnorm", include_str!("../shaders/rmsnorm.wgsl"), None, bytemuck::bytes_of(&p), &[x, w, out], [1, 1, 1])
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
    pub _pad: u32,
}

/// rope: rotates the heads at x[offset + pos * pos_stride ..] in place for position step.pos;
/// `freq_factors` holds n_rot / 2 divisors of the angles (ones when the model has none).
pub fn rope(gpu: &Gpu, x: &wgpu::Buffer, freq_factors: &wgpu::Buffer, step: &wgpu::Buffer, p: RopeParams) -> Result<Dispatch> {
    let n = p.n_heads * p.n_rot / 2;
    build(gpu, "rope", include_str!("../shaders/rope.wgsl"), None, bytemuck::bytes_of(&p), &[step, x, freq_factors], grid(n.div_ceil(64)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AttentionParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub kv_dim: u32,
    pub scale: f32,
    pub _pad: [u32; 3],
}

/// attention: out = softmax(q k^T * scale) v over step.kv_len positions, per query head: this
/// position's q, k, v from `qkv` = [q | k | v] (k and v then stored in the cache at step.pos), the
/// earlier ones from the cache.
pub fn attention(
    gpu: &Gpu,
    qkv: &wgpu::Buffer,
    k_cache: &wgpu::Buffer,
    v_cache: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
) -> Result<Dispatch> {
    let p = AttentionParams {
        n_heads,
        n_kv_heads,
        head_dim,
        kv_dim: n_kv_heads * head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        _pad: [0; 3],
    };
    let src = include_str!("../shaders/attention.wgsl");
    build(gpu, "attention", src, None, bytemuck::bytes_of(&p), &[step, qkv, k_cache, v_cache, out], [n_heads, 1, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CountParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

/// swiglu: gate = silu(gate) * up, in place.
pub fn swiglu(gpu: &Gpu, gate: &wgpu::Buffer, up: &wgpu::Buffer, n: u32) -> Result<Dispatch> {
    let p = CountParams { n, _pad: [0; 3] };
    build(gpu, "swiglu", include_str!("../shaders/swiglu.wgsl"), None, bytemuck::bytes_of(&p), &[gate, up], grid(n.div_ceil(64)))
}

/// argmax: result[0] = index of the largest of the n logits.
pub fn argmax(gpu: &Gpu, logits: &wgpu::Buffer, result: &wgpu::Buffer, n: u32) -> Result<Dispatch> {
    let p = CountParams { n, _pad: [0; 3] };
    build(gpu, "argmax", include_str!("../shaders/argmax.wgsl"), None, bytemuck::bytes_of(&p), &[logits, result], [1, 1, 1])
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
    pub _pad: [u32; 3],
}

/// qkv: rmsnorm(x) * norm_w through the concatenated [Wq; Wk; Wv] (`w`, q_rows + 2 kv_rows rows)
/// into `out` = [q | k | v], q and k roped for position step.pos.
#[allow(clippy::too_many_arguments)]
pub fn qkv(
    gpu: &Gpu,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    freq_factors: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: QkvParams,
) -> Result<Dispatch> {
    let p = QkvParams { cols: w.cols, row_bytes: w.row_bytes(), ..p };
    if w.rows != p.q_rows + 2 * p.kv_rows || p.head_dim % 2 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("qkv: {} rows for q {} + 2 x kv {}, head {}", w.rows, p.q_rows, p.kv_rows, p.head_dim)));
    }
    let (entry, pairs_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 32) } else { ("main", 2) };
    let pipeline = gpu.pipeline_at("qkv", concat!(include_str!("../shaders/norm_fold.wgsl"), include_str!("../shaders/qkv.wgsl")), Some(w.ty), entry)?;
    let buffers = [step, w.buffer, x, norm_w, out, freq_factors];
    build_with(gpu, "qkv", pipeline, bytemuck::bytes_of(&p), &buffers, grid((w.rows / 2).div_ceil(pairs_per_wg)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GateUpParams {
    pub ffn: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub eps: f32,
}

/// gate_up: out[r] = silu(Wgate[r] . xb) * (Wup[r] . xb), xb = rmsnorm(x) * norm_w, over the
/// concatenated [Wgate; Wup] (`w`, 2 ffn rows).
pub fn gate_up(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, norm_w: &wgpu::Buffer, out: &wgpu::Buffer, eps: f32) -> Result<Dispatch> {
    if w.rows % 2 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("gate_up: {} rows of {} are not two halves", w.rows, w.cols)));
    }
    let p = GateUpParams { ffn: w.rows / 2, cols: w.cols, row_bytes: w.row_bytes(), eps };
    let (entry, outs_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 32) } else { ("main", 2) };
    let pipeline = gpu.pipeline_at("gate_up", concat!(include_str!("../shaders/norm_fold.wgsl"), include_str!("../shaders/gate_up.wgsl")), Some(w.ty), entry)?;
    build_with(gpu, "gate_up", pipeline, bytemuck::bytes_of(&p), &[w.buffer, x, norm_w, out], grid(p.ffn.div_ceil(outs_per_wg)))
}
