//! The mixture of experts' kernels (both families): each token's route from its router logits
//! (moe_route), an expert's rows against a token for decode (moe_matvec), a batch grouped by expert
//! (moe_matmul) and the routed experts' weighted sum (moe_sum). Only the chosen experts' rows are read.

use super::{bind, numbered, spill, Dispatch, QuantMatrix, Target};
use crate::error::Result;
use crate::gpu::compose::{wgsl, Module};
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MoeRouteParams {
    pub n_experts: u32,
    pub n_used: u32,
    pub rows: u32,
    pub _pad: u32,
}

/// moe_route: for `p.rows` batch rows of router logits ([rows, n_experts]), the n_used experts
/// each runs and their weights (softmax, top n_used, renormalized) into `route` ([rows, n_used, 2]
/// u32: expert id, f32 weight's bits).
pub fn moe_route(t: Target, logits: &wgpu::Buffer, route: &wgpu::Buffer, p: MoeRouteParams) -> Result<Dispatch> {
    let pipeline = t.pipeline(&Module::new("moe_route", &[wgsl::MOE_ROUTE]), "main")?;
    bind(t.gpu, "moe_route", pipeline, bytemuck::bytes_of(&p), numbered(&[logits, route]), [p.rows.div_ceil(64), 1, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MoeMatvecParams {
    /// Rows of one expert.
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    /// Elements per batch row of x and of out.
    pub x_stride: u32,
    pub out_stride: u32,
    /// Which of each token's routed experts (0..n_used).
    pub slot: u32,
    pub n_used: u32,
    /// 1: out += the route's weight * result (the down projection); 0: out = result.
    pub weighted: u32,
}

/// moe_matvec: for each of `batch_rows` tokens, out (+)= [weight *] W_e x with e the expert in the
/// token's route slot `p.slot`, W a stacked matrix of experts (`w`: n_experts * p.rows rows, in
/// one buffer); only the chosen experts' rows are read.
pub fn moe_matvec(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    route: &wgpu::Buffer,
    p: MoeMatvecParams,
    batch_rows: u32,
) -> Result<Dispatch> {
    let p = MoeMatvecParams { cols: w.cols, row_bytes: w.row_stride, ..p };
    let pipeline = t.pipeline(&Module::quant(t.layout, "moe_matvec", w.ty, &[wgsl::MOE_MATVEC])?, "main")?;
    let buffers = numbered(&[w.buffer("moe_matvec")?, x, out, route]);
    let (x, z) = spill(p.rows);
    let groups = [x, batch_rows, z];
    bind(t.gpu, "moe_matvec", pipeline, bytemuck::bytes_of(&p), buffers, groups)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MoeMatmulParams {
    /// Rows of one expert.
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    /// Elements per input vector of x.
    pub x_stride: u32,
    /// Batch rows * n_used: one item per token and routed slot.
    pub n_items: u32,
    pub n_used: u32,
    /// 1: item i reads x[i / n_used] (its token's input); 0: x[i].
    pub per_token: u32,
    /// Set by moe_matmul: tiles of 64 items.
    pub n_tiles: u32,
}

/// Routed items (token, slot) a moe_matmul workgroup takes.
const MOE_TILE: u32 = 64;

/// moe_matmul's grid y for `n_items` routed items over `n_experts` experts: a workgroup per expert
/// and tile of items. It does not spill: past MAX_WORKGROUPS_PER_DIMENSION no dispatch holds it.
pub fn moe_matmul_grid_y(n_experts: u32, n_items: u32) -> u64 {
    n_experts as u64 * n_items.div_ceil(MOE_TILE) as u64
}

/// moe_matmul: a batch grouped by expert: out[i] = W_e x_i for each item i (token, routed slot) with
/// e = its expert, each expert's rows read once per 64 items and unchosen experts not at all.
pub fn moe_matmul(
    t: Target,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    out: &wgpu::Buffer,
    route: &wgpu::Buffer,
    p: MoeMatmulParams,
    n_experts: u32,
) -> Result<Dispatch> {
    let p = MoeMatmulParams { cols: w.cols, row_bytes: w.row_stride, n_tiles: p.n_items.div_ceil(MOE_TILE), ..p };
    let pipeline = t.pipeline(&Module::quant(t.layout, "moe_matmul", w.ty, &[wgsl::MOE_MATMUL])?, "main")?;
    let buffers = numbered(&[w.buffer("moe_matmul")?, x, out, route]);
    let (x, z) = spill(p.rows);
    let groups = [x, moe_matmul_grid_y(n_experts, p.n_items) as u32, z];
    bind(t.gpu, "moe_matmul", pipeline, bytemuck::bytes_of(&p), buffers, groups)
}

/// moe_sum: x[t] += sum over t's routed slots j of weight_tj * y[t, j] for `tokens` tokens (y:
/// [tokens, n_used, dim]).
pub fn moe_sum(
    t: Target,
    y: &wgpu::Buffer,
    route: &wgpu::Buffer,
    x: &wgpu::Buffer,
    dim: u32,
    n_used: u32,
    tokens: u32,
) -> Result<Dispatch> {
    let p = [dim, n_used, 0, 0];
    let pipeline = t.pipeline(&Module::new("moe_sum", &[wgsl::MOE_SUM]), "main")?;
    bind(t.gpu, "moe_sum", pipeline, bytemuck::bytes_of(&p), numbered(&[y, route, x]), [dim.div_ceil(64), tokens, 1])
}
