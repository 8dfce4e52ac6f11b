//! The GPU family's kernels (NVIDIA, AMD, Intel, Apple through WebGPU): matvec with threads sharing
//! a row, the tiled matmul (and its matvec-shaped variant for a few candidates), the fused
//! rmsnorm + qkv + RoPE and rmsnorm + gate_up + swiglu kernels, attention split over the KV length.

mod attention;
pub use attention::{attention, ATTENTION_MAX_SPLITS, ATTENTION_SPLIT_LEN};

use super::{bind, grid, numbered, Dispatch, MatmulParams, MatvecParams, QuantMatrix, Target};
use crate::error::{Error, Result};
use crate::gpu::compose::{wgsl, Module};
use bytemuck::{Pod, Zeroable};

/// Rows per workgroup of matvec.wgsl (16 threads each).
const MATVEC_ROWS_PER_WG: u32 = 4;

/// matvec (see kernels::matvec; `p` complete).
pub fn matvec(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatvecParams,
) -> Result<Dispatch> {
    let pipeline = t.pipeline(&Module::quant("matvec", w.ty, &[wgsl::MATVEC_IO, wgsl::gpu::MATVEC])?, "main")?;
    bind(
        t.gpu,
        "matvec",
        pipeline,
        bytemuck::bytes_of(&p),
        numbered(&[step, w.buffer("matvec")?, x, out]),
        grid(w.rows.div_ceil(MATVEC_ROWS_PER_WG)),
    )
}

/// Most tokens the matvec-shaped matmul (`main_few`: n candidates) takes.
pub const MATMUL_FEW: u32 = 8;
/// Tokens per tile of the tiled matmul (`main`).
const MATMUL_TILE_TOKENS: u32 = 32;
/// Weight rows per tile (both entry points' grids: 64 rows, or 4 per workgroup for main_few).
const MATMUL_TILE_ROWS: u32 = 64;

/// matmul (see kernels::matmul; `p` complete): at most MATMUL_FEW tokens take the matvec-shaped
/// kernel (candidates), more the tiled one.
pub fn matmul(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: MatmulParams,
    max_tokens: u32,
) -> Result<Dispatch> {
    let module = Module::quant("matmul", w.ty, &[wgsl::MATMUL_IO, wgsl::MATMUL_WEIGHTS, wgsl::gpu::MATMUL])?;
    let buffers = numbered(&[step, w.buffer("matmul")?, x, out]);
    if max_tokens <= MATMUL_FEW {
        return bind(
            t.gpu,
            "matmul",
            t.pipeline(&module, "main_few")?,
            bytemuck::bytes_of(&p),
            buffers,
            grid(p.rows.div_ceil(4)),
        );
    }
    let tiles = if p.last_only == 1 { 1 } else { max_tokens.div_ceil(MATMUL_TILE_TOKENS) };
    bind(
        t.gpu,
        "matmul",
        t.pipeline(&module, "main")?,
        bytemuck::bytes_of(&p),
        buffers,
        [p.rows.div_ceil(MATMUL_TILE_ROWS), tiles, 1],
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
    pub _pad: [u32; 3],
}

/// Row pairs per workgroup of qkv.wgsl and outputs per workgroup of gate_up.wgsl.
const FUSED_PAIRS_PER_WG: u32 = 2;

/// qkv: rmsnorm(x) * norm_w through the concatenated [Wq; Wk; Wv] (`w`, q_rows + 2 kv_rows rows)
/// into `out` = [q | k | v], q and k roped for position step.pos.
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
) -> Result<Dispatch> {
    let p = QkvParams { cols: w.cols, row_bytes: w.row_stride, ..p };
    if w.rows != p.q_rows + 2 * p.kv_rows || !p.head_dim.is_multiple_of(2) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!(
            "qkv: {} rows for q {} + 2 x kv {}, head {}",
            w.rows, p.q_rows, p.kv_rows, p.head_dim
        )));
    }
    let pipeline = t.pipeline(&Module::quant("qkv", w.ty, &[wgsl::gpu::NORM_FOLD, wgsl::gpu::QKV])?, "main")?;
    let buffers = numbered(&[step, w.buffer("qkv")?, x, norm_w, out, freq_factors]);
    bind(t.gpu, "qkv", pipeline, bytemuck::bytes_of(&p), buffers, grid((w.rows / 2).div_ceil(FUSED_PAIRS_PER_WG)))
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
pub fn gate_up(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    eps: f32,
) -> Result<Dispatch> {
    if !w.rows.is_multiple_of(2) || !w.cols.is_multiple_of(4) {
        return Err(Error::InvalidRequest(format!("gate_up: {} rows of {} are not two halves", w.rows, w.cols)));
    }
    let p = GateUpParams { ffn: w.rows / 2, cols: w.cols, row_bytes: w.row_stride, eps };
    let pipeline = t.pipeline(&Module::quant("gate_up", w.ty, &[wgsl::gpu::NORM_FOLD, wgsl::gpu::GATE_UP])?, "main")?;
    bind(
        t.gpu,
        "gate_up",
        pipeline,
        bytemuck::bytes_of(&p),
        numbered(&[w.buffer("gate_up")?, x, norm_w, out]),
        grid(p.ffn.div_ceil(FUSED_PAIRS_PER_WG)),
    )
}
