//! attention's parameters, buffers and rows, shared by both families; the Layout's family picks the
//! kernel (gpu/attention.rs: a workgroup per kv head split over the KV length, tiled prompt chunks,
//! f16 cache; cpu/attention.rs: lanes of 8 or an invocation per row and head, f32 cache).

use super::{cpu, gpu, Dispatch, Target};
use crate::error::{Error, Result};
use crate::gpu::Family;
use bytemuck::{Pod, Zeroable};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AttentionParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub kv_dim: u32,
    pub scale: f32,
    pub qkv_stride: u32,
    pub n_splits: u32,
    pub branch_len: u32,
    /// Positions a query sees, its own included, in a sliding-window layer (gemma2, gemma3); 0: all
    /// of them.
    pub window: u32,
    /// Gemma 2's soft-cap of the (scaled) scores, s = c * tanh(s / c); 0: none.
    pub softcap: f32,
    /// A sliding-window layer's ring cache: the cache's rows, position j in row j % slots
    /// (kv_cache::KvCache::rows); 0: position j in row j.
    pub slots: u32,
    pub _pad: u32,
}

/// The buffers attention reads and writes.
pub struct AttentionBuffers<'a> {
    /// [rows, q | k | v]: the batch's own queries, keys and values.
    pub qkv: &'a wgpu::Buffer,
    /// [ctx, kv_dim] each (a ring of [slots, kv_dim] where slots is set), f16 in the GPU family, f32
    /// in the CPU family (kv_cache::elem_bytes).
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// [branches, branch_len, kv_dim] each, as the cache (candidates; any distinct small buffers
    /// otherwise).
    pub k_branch: &'a wgpu::Buffer,
    pub v_branch: &'a wgpu::Buffer,
    /// [rows, n_heads * head_dim].
    pub out: &'a wgpu::Buffer,
    /// [rows, n_heads, n_splits, head_dim + 4] f32 when n_splits > 1 (any buffer otherwise):
    /// gpu::attention_partial_bytes.
    pub partial: &'a wgpu::Buffer,
    /// [head_dim / 2] (cos, sin) pairs (cpu::rope_rotations) when q and the token's key arrive
    /// unrotated and the kernel rotates them (one token, CPU family); None when rope.wgsl has
    /// rotated them.
    pub rotations: Option<&'a wgpu::Buffer>,
}

/// The rows an attention dispatch is recorded for (the step uniform gives their positions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionRows {
    /// One token (the decode graph).
    One,
    /// A prompt chunk: up to this many rows at consecutive positions after the cache's.
    Prompt(u32),
    /// This many candidates at one position, each with its own branch after a shared prefix.
    Candidates(u32),
}

impl AttentionRows {
    /// The most rows the dispatch covers.
    pub fn count(self) -> u32 {
        match self {
            AttentionRows::One => 1,
            AttentionRows::Prompt(n) | AttentionRows::Candidates(n) => n,
        }
    }
}

/// attention for the `which` rows: causal softmax(q k^T / sqrt(head_dim)) v per head, each row's k
/// and v stored in the cache (or its branch) on the way. One dispatch, or two in the GPU family
/// when the positions may be split (p.n_splits > 1: the most splits; the current length picks how
/// many work).
pub fn attention(
    t: Target,
    b: &AttentionBuffers,
    step: &wgpu::Buffer,
    p: AttentionParams,
    which: AttentionRows,
) -> Result<Vec<Dispatch>> {
    let p = complete(p);
    match t.layout.family {
        Family::Gpu => gpu::attention(t, b, step, p, which, true),
        Family::Cpu => cpu::attention(t, b, step, p, which).map(|d| vec![d]),
    }
}

/// GPU family, one token: attention without its combine dispatch, the splits' partials left for
/// gpu::matvec_combine (Wo) to merge; at most gpu::COMBINE_IN_WO_SPLITS splits.
pub fn attention_unmerged(
    t: Target,
    b: &AttentionBuffers,
    step: &wgpu::Buffer,
    p: AttentionParams,
) -> Result<Dispatch> {
    if t.layout.is_cpu() || p.n_splits > gpu::COMBINE_IN_WO_SPLITS {
        return Err(Error::InvalidRequest(format!(
            "attention_unmerged: the GPU family's, at most {} splits (asked {})",
            gpu::COMBINE_IN_WO_SPLITS,
            p.n_splits
        )));
    }
    Ok(gpu::attention(t, b, step, complete(p), AttentionRows::One, false)?.remove(0))
}

/// `p` with what follows from its shape: kv_dim, the scale where it has none (1 / sqrt(head_dim)),
/// at least one split.
fn complete(p: AttentionParams) -> AttentionParams {
    AttentionParams {
        kv_dim: p.n_kv_heads * p.head_dim,
        scale: if p.scale > 0.0 { p.scale } else { 1.0 / (p.head_dim as f32).sqrt() },
        n_splits: p.n_splits.max(1),
        ..p
    }
}
