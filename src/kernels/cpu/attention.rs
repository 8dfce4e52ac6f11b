//! attention in the CPU family: one token through attention_lanes (8 lanes per kv head walking
//! the positions, made for the model's group size and head width, RoPE applied in the kernel from
//! host-computed rotations), where the layout has lanes of 8; a prompt chunk through
//! attention_prompt_lanes (Layout::act_lanes rows of a head per subgroup: 8, or SwiftShader's 4),
//! where it has subgroups; else attention_rowwise (an invocation per row and head), which
//! candidates always take.

use crate::error::{Error, Result};
use crate::gpu::compose::{self, wgsl, Module};
use crate::gpu::Layout;
use crate::kernels::{at, bind, AttentionBuffers, AttentionParams, AttentionRows, Dispatch, Target};

/// The rotations RoPE applies at position `pos` (llama.cpp NORM mode, as rope.wgsl and
/// reference::rope compute them), for the decode graph's attention, which rotates q and k itself
/// (AttentionBuffers::rotations): per pair of dims k < head_dim / 2, (cos, sin) of
/// freq_scale * pos * base^(-2k / n_rot) / factors[k], and (1, 0) for pairs past n_rot / 2.
pub fn rope_rotations(
    pos: u32,
    head_dim: usize,
    n_rot: usize,
    base: f32,
    freq_scale: f32,
    factors: Option<&[f32]>,
) -> Vec<f32> {
    (0..head_dim / 2)
        .flat_map(|k| {
            if k >= n_rot / 2 {
                return [1.0, 0.0];
            }
            let ff = factors.map_or(1.0, |f| f[k]);
            let theta = freq_scale * pos as f32 * base.powf(-2.0 * k as f32 / n_rot as f32) / ff;
            let (sin, cos) = theta.sin_cos();
            [cos, sin]
        })
        .collect()
}

/// Whether one token's attention runs attention_lanes in `layout` for this shape: lanes of 8 and at
/// most 1024 query values per kv head.
pub fn runs_attention_lanes(layout: &Layout, n_heads: u32, n_kv_heads: u32, head_dim: u32) -> bool {
    layout.lanes_of_8() && n_heads / n_kv_heads.max(1) * head_dim <= 1024
}

/// Whether a prompt chunk's attention runs attention_prompt_lanes for heads of `head_dim`: at most
/// 128 (32 named vectors each for the query and the accumulator).
fn runs_prompt_lanes(layout: &Layout, head_dim: u32) -> bool {
    layout.prompt_lanes && head_dim <= 128
}

/// Most (row, head) invocations per workgroup of attention_rowwise.
const ROWWISE_WG: u32 = 8;

/// attention for the `which` rows in one dispatch, no splits over the KV length.
pub fn attention(
    t: Target,
    b: &AttentionBuffers,
    step: &wgpu::Buffer,
    p: AttentionParams,
    which: AttentionRows,
) -> Result<Dispatch> {
    let p = AttentionParams { n_splits: 1, ..p };
    let params = bytemuck::bytes_of(&p);
    let hd4 = p.head_dim / 4;
    // The lane kernels walk every position of a whole cache with plain scores: not for a sliding
    // window, its ring or a soft-cap.
    let plain = p.window == 0 && p.slots == 0 && p.softcap == 0.0;
    if let (Some(rotations), AttentionRows::One, true) =
        (b.rotations, which, plain && runs_attention_lanes(t.layout, p.n_heads, p.n_kv_heads, p.head_dim))
    {
        let group = p.n_heads / p.n_kv_heads;
        let walk = if group * hd4 <= 64 {
            compose::attention_lanes_walk(group, hd4)
        } else {
            wgsl::cpu::ATTENTION_LANES_LOOP.to_string()
        };
        let lanes = compose::fill(wgsl::cpu::ATTENTION_LANES, &[("    //@positions\n", walk)]);
        let module = Module::new(
            &format!("attention_lanes/{group}x{}", p.head_dim),
            &[wgsl::ATTENTION_PARAMS, wgsl::cpu::ATTENTION_ROWWISE, &lanes],
        )
        .prepend(format!("const ROPE: bool = true;\nconst GROUP: u32 = {group}u;\nconst HD4: u32 = {hd4}u;\n"));
        let resources = at(&[(1, step), (2, b.qkv), (3, b.k_cache), (4, b.v_cache), (7, b.out), (8, rotations)]);
        return bind(t.gpu, "attention", t.pipeline(&module, "decode_lanes")?, params, resources, [p.n_kv_heads, 1, 1]);
    }
    if let (AttentionRows::Prompt(rows), None, true) =
        (which, b.rotations, plain && runs_prompt_lanes(t.layout, p.head_dim))
    {
        let lanes = t.layout.act_lanes();
        let walks = compose::fill(wgsl::cpu::ATTENTION_PROMPT_LANES, &compose::prompt_lanes_walks(hd4, lanes));
        let module = Module::new(
            &format!("attention_prompt_lanes/{lanes}x{}", p.head_dim),
            &[wgsl::ATTENTION_PARAMS, wgsl::cpu::ATTENTION_ROWWISE, &walks],
        )
        .prepend(format!("const ROPE: bool = false;\nconst HD4: u32 = {hd4}u;\nconst LANES: u32 = {lanes}u;\n"));
        let resources = at(&[(1, step), (2, b.qkv), (3, b.k_cache), (4, b.v_cache), (7, b.out)]);
        return bind(
            t.gpu,
            "attention",
            t.pipeline(&module, "prompt_lanes")?,
            params,
            resources,
            [rows.div_ceil(lanes), p.n_heads, 1],
        );
    }
    let rows = which.count();
    if b.rotations.is_some() && rows != 1 {
        return Err(Error::InvalidRequest("attention: RoPE in the kernel is for one token".into()));
    }
    let (name, rope) = match b.rotations {
        Some(_) => ("attention_rowwise_rope", "const ROPE: bool = true;\n"),
        None => ("attention_rowwise", "const ROPE: bool = false;\n"),
    };
    let module = Module::new(name, &[rope, wgsl::ATTENTION_PARAMS, wgsl::cpu::ATTENTION_ROWWISE]);
    // (Binding 8 is in the layout either way; without RoPE any buffer stands in.)
    let used = [
        (1, step),
        (2, b.qkv),
        (3, b.k_cache),
        (4, b.v_cache),
        (5, b.k_branch),
        (6, b.v_branch),
        (7, b.out),
        (8, b.rotations.unwrap_or(b.partial)),
    ];
    bind(
        t.gpu,
        "attention",
        t.pipeline(&module, "main")?,
        params,
        at(&used),
        [(rows * p.n_heads).div_ceil(ROWWISE_WG), 1, 1],
    )
}
