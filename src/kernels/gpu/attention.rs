//! attention in the GPU family (gpu/attention.wgsl): a workgroup per head and row, the KV length
//! split over p.n_splits workgroups whose partial results a combine dispatch merges.

use crate::error::{Error, Result};
use crate::gpu::compose::{wgsl, Module};
use crate::kernels::{at, bind, numbered, AttentionBuffers, AttentionParams, AttentionRows, Dispatch, Target};

/// attention for the `which` rows: one dispatch, plus a combine dispatch when the positions are
/// split (p.n_splits > 1).
pub fn attention(
    t: Target,
    b: &AttentionBuffers,
    step: &wgpu::Buffer,
    p: AttentionParams,
    which: AttentionRows,
) -> Result<Vec<Dispatch>> {
    if b.rotations.is_some() {
        return Err(Error::InvalidRequest("attention: RoPE in the kernel is the CPU family's".into()));
    }
    let rows = which.count();
    let module = Module::new("attention", &[wgsl::ATTENTION_PARAMS, wgsl::gpu::ATTENTION]);
    let buffers = [step, b.qkv, b.k_cache, b.v_cache, b.k_branch, b.v_branch, b.out, b.partial];
    let params = bytemuck::bytes_of(&p);
    let mut out = vec![bind(
        t.gpu,
        "attention",
        t.pipeline(&module, "main")?,
        params,
        numbered(&buffers),
        [p.n_heads, rows, p.n_splits],
    )?];
    if p.n_splits > 1 {
        let combine = t.pipeline(&module, "combine")?;
        out.push(bind(
            t.gpu,
            "attention",
            combine,
            params,
            at(&[(1, step), (7, b.out), (8, b.partial)]),
            [p.n_heads, rows, 1],
        )?);
    }
    Ok(out)
}
