//! attention's kernels: which one runs for a shape and an adapter (attention.wgsl split over the
//! KV length on GPUs; on CPU adapters attention_lanes for one token, attention_prompt_lanes for a
//! prompt chunk, attention_rowwise otherwise), their parameters and bindings.

use super::{build_at, build_bound, build_with, Dispatch};
use crate::error::Result;
use crate::gpu::Gpu;
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
}

/// The rotations RoPE applies at position `pos` (llama.cpp NORM mode, as rope.wgsl and
/// reference::rope compute them), for attention with the rotation in the kernel
/// (AttentionBuffers::rotations): per pair of dims k < head_dim / 2, (cos, sin) of
/// freq_scale * pos * base^(-2k / n_rot) / factors[k], and (1, 0) for pairs past n_rot / 2.
pub fn rope_rotations(pos: u32, head_dim: usize, n_rot: usize, base: f32, freq_scale: f32, factors: Option<&[f32]>) -> Vec<f32> {
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

/// The buffers attention reads and writes.
pub struct AttentionBuffers<'a> {
    /// [rows, q | k | v]: the batch's own queries, keys and values.
    pub qkv: &'a wgpu::Buffer,
    /// [ctx, kv_dim] each.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    /// [branches, branch_len, kv_dim] each (candidates; any distinct small buffers otherwise).
    pub k_branch: &'a wgpu::Buffer,
    pub v_branch: &'a wgpu::Buffer,
    /// [rows, n_heads * head_dim].
    pub out: &'a wgpu::Buffer,
    /// [rows, n_heads, n_splits, head_dim + 2] when n_splits > 1 (any buffer otherwise).
    pub partial: &'a wgpu::Buffer,
    /// [head_dim / 2] (cos, sin) pairs (rope_rotations) when q and the token's key arrive
    /// unrotated and the kernel rotates them (one token on a CPU adapter); None when rope.wgsl has
    /// rotated them.
    pub rotations: Option<&'a wgpu::Buffer>,
    /// The cache's copy in textures (k, v: kv_cache::KvMirror) holding every position before this
    /// one, which attention_lanes then reads instead of the buffers (one token, CPU adapters).
    pub kv_mirror: Option<(&'a wgpu::TextureView, &'a wgpu::TextureView)>,
}

/// Whether one token's attention runs attention_lanes on `gpu` (a CPU adapter with 8-lane subgroups)
/// for this shape: at most 1024 query values per kv head.
pub fn runs_attention_lanes(gpu: &Gpu, n_heads: u32, n_kv_heads: u32, head_dim: u32) -> bool {
    gpu.matvec_rowwise && gpu.subgroup_acts && n_heads / n_kv_heads.max(1) * head_dim <= 1024
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

/// Whether a prompt chunk's attention runs attention_prompt_lanes on `gpu` (a CPU adapter with
/// 8-lane subgroups) for heads of `head_dim`: at most 128 (32 named vectors each for the query and
/// the accumulator).
fn runs_prompt_lanes(gpu: &Gpu, head_dim: u32) -> bool {
    gpu.matvec_rowwise && gpu.subgroup_acts && head_dim <= 128 && std::env::var("WEBLLAMA_PROMPT_LANES").map_or(true, |v| v != "0")
}

/// attention for the `which` rows (see attention.wgsl): one dispatch, plus a combine dispatch when the
/// positions are split (p.n_splits > 1). Each row's k and v are stored in the cache (or its
/// branch) on the way.
pub fn attention(gpu: &Gpu, b: &AttentionBuffers, step: &wgpu::Buffer, p: AttentionParams, which: AttentionRows) -> Result<Vec<Dispatch>> {
    let rows = which.count();
    let p = AttentionParams { kv_dim: p.n_kv_heads * p.head_dim, scale: 1.0 / (p.head_dim as f32).sqrt(), n_splits: p.n_splits.max(1), ..p };
    let params = include_str!("../../shaders/attention_params.wgsl");
    let src = concat!(include_str!("../../shaders/attention_params.wgsl"), include_str!("../../shaders/attention.wgsl"));
    let buffers = [step, b.qkv, b.k_cache, b.v_cache, b.k_branch, b.v_branch, b.out, b.partial];
    if gpu.matvec_rowwise {
        // CPU adapters: an invocation per (row, head), no splits (see attention_rowwise.wgsl), RoPE
        // in the kernel where asked.
        let p = AttentionParams { n_splits: 1, ..p };
        let rowwise = include_str!("../../shaders/attention_rowwise.wgsl");
        let group = p.n_heads / p.n_kv_heads;
        if let (Some(rotations), true) = (b.rotations, which == AttentionRows::One && runs_attention_lanes(gpu, p.n_heads, p.n_kv_heads, p.head_dim)) {
            // One token, subgroups: a workgroup of 8 lanes per kv head (attention_lanes.wgsl), made
            // for this group size and head width.
            let hd4 = p.head_dim / 4;
            let consts = format!("const ROPE: bool = true;\nconst GROUP: u32 = {group}u;\nconst HD4: u32 = {hd4}u;\n");
            let walk = if group * hd4 <= 64 { attention_lanes_walk(group, hd4) } else { include_str!("../../shaders/attention_lanes_loop.wgsl").to_string() };
            let lanes = include_str!("../../shaders/attention_lanes.wgsl").replace("    //@positions\n", &walk);
            let (reads, kind) = match b.kv_mirror {
                Some(_) => (include_str!("../../shaders/attention_kv_texture.wgsl"), "mirror"),
                None => (include_str!("../../shaders/attention_kv_buffer.wgsl"), "buffers"),
            };
            let src = format!("{consts}{params}{rowwise}\n{reads}\n{lanes}");
            let pipeline = gpu.pipeline_at(&format!("attention_lanes/{group}x{}+{kind}", p.head_dim), &src, None, "decode_lanes")?;
            let used = [(1, step), (2, b.qkv), (3, b.k_cache), (4, b.v_cache), (7, b.out), (8, rotations)];
            let mut resources: Vec<(u32, wgpu::BindingResource)> = used.iter().map(|(i, buf)| (*i, buf.as_entire_binding())).collect();
            if let Some((k, v)) = b.kv_mirror {
                resources.extend([(9, wgpu::BindingResource::TextureView(k)), (10, wgpu::BindingResource::TextureView(v))]);
            }
            return Ok(vec![build_bound(gpu, "attention", pipeline, bytemuck::bytes_of(&p), resources, [p.n_kv_heads, 1, 1])?]);
        }
        if let (AttentionRows::Prompt(rows), None, true) = (which, b.rotations, runs_prompt_lanes(gpu, p.head_dim)) {
            let hd4 = p.head_dim / 4;
            let lanes = prompt_lanes_walks(hd4)
                .iter()
                .fold(include_str!("../../shaders/attention_prompt_lanes.wgsl").to_string(), |src, (marker, code)| src.replace(marker, code));
            let src = format!("const ROPE: bool = false;\nconst HD4: u32 = {hd4}u;\n{params}{rowwise}\n{lanes}");
            let pipeline = gpu.pipeline_at(&format!("attention_prompt_lanes/{}", p.head_dim), &src, None, "prompt_lanes")?;
            let used = [(1, step), (2, b.qkv), (3, b.k_cache), (4, b.v_cache), (7, b.out)];
            let resources = used.iter().map(|(i, buf)| (*i, buf.as_entire_binding())).collect();
            return Ok(vec![build_bound(gpu, "attention", pipeline, bytemuck::bytes_of(&p), resources, [rows.div_ceil(8), p.n_heads, 1])?]);
        }
        if b.rotations.is_some() && rows != 1 {
            return Err(crate::Error::InvalidRequest("attention: RoPE in the kernel is for one token".into()));
        }
        let (name, src) = match b.rotations {
            Some(_) => ("attention_rowwise_rope", format!("const ROPE: bool = true;\n{params}{rowwise}")),
            None => ("attention_rowwise", format!("const ROPE: bool = false;\n{params}{rowwise}")),
        };
        let pipeline = gpu.pipeline(name, &src, None)?;
        let grid = (rows * p.n_heads).div_ceil(8);
        // (Binding 8 is in the layout either way; without RoPE any buffer stands in.)
        let used = [(1, step), (2, b.qkv), (3, b.k_cache), (4, b.v_cache), (5, b.k_branch), (6, b.v_branch), (7, b.out), (8, b.rotations.unwrap_or(b.partial))];
        return Ok(vec![build_at(gpu, "attention", pipeline, bytemuck::bytes_of(&p), &used, [grid, 1, 1])?]);
    }
    if b.rotations.is_some() {
        return Err(crate::Error::InvalidRequest("attention: RoPE in the kernel is for CPU adapters".into()));
    }
    let main = gpu.pipeline_at("attention", src, None, "main")?;
    let mut out = vec![build_with(gpu, "attention", main, bytemuck::bytes_of(&p), &buffers, [p.n_heads, rows, p.n_splits])?];
    if p.n_splits > 1 {
        let combine = gpu.pipeline_at("attention", src, None, "combine")?;
        out.push(build_at(gpu, "attention", combine, bytemuck::bytes_of(&p), &[(1, step), (7, b.out), (8, b.partial)], [p.n_heads, rows, 1])?);
    }
    Ok(out)
}

/// attention_lanes' walk over the cache positions written out for `group` query heads of `hd4`
/// vectors: a named value per query vector, key vector and accumulator, so that lavapipe keeps them
/// in registers (the loop version, attention_lanes_loop.wgsl, indexes private arrays at run time,
/// which it keeps in memory). Reads q; leaves acc, m and l as the loop version does.
fn attention_lanes_walk(group: u32, hd4: u32) -> String {
    let (heads, vecs) = (0..group, 0..hd4);
    let mut w = String::new();
    for h in heads.clone() {
        for i in vecs.clone() {
            w += &format!("    let q_{h}_{i} = q[{}u];\n    var a_{h}_{i} = vec4<f32>(0.0);\n", h * hd4 + i);
        }
        w += &format!("    var m_{h} = -3.4e38;\n    var l_{h} = 0.0;\n");
    }
    w += "    for (var j = lane; j < pos; j += 8u) {\n";
    for i in vecs.clone() {
        w += &format!("        let k_{i} = cached_k(j, kv_off4 + {i}u);\n");
    }
    for h in heads.clone() {
        let dots: Vec<String> = vecs.clone().map(|i| format!("dot(q_{h}_{i}, k_{i})")).collect();
        w += &format!("        let s_{h} = {};\n", dots.join(" + "));
        w += &format!("        let cp_{h} = softmax_step(&m_{h}, &l_{h}, s_{h});\n");
    }
    for i in vecs.clone() {
        w += &format!("        let v_{i} = cached_v(j, kv_off4 + {i}u);\n");
        for h in heads.clone() {
            w += &format!("        a_{h}_{i} = a_{h}_{i} * cp_{h}.x + cp_{h}.y * v_{i};\n");
        }
    }
    w += "    }\n";
    for h in heads {
        for i in vecs.clone() {
            w += &format!("    acc[{}u] = a_{h}_{i};\n", h * hd4 + i);
        }
        w += &format!("    m[{h}u] = m_{h};\n    l[{h}u] = l_{h};\n");
    }
    w
}


/// attention_prompt_lanes' walks over the cache's positions and the chunk's own, and its output
/// store, written out for `hd4` vectors per head (markers and code): a named value per query, key,
/// value and accumulator vector, as attention_lanes_walk. Lane i loads vectors i, i + 8, ... of a
/// key and a value (clamped to the head), and takes each vector from the lane that loaded it.
fn prompt_lanes_walks(hd4: u32) -> [(&'static str, String); 3] {
    let (vecs, loads) = (0..hd4, 0..hd4.div_ceil(8));
    let mut cache = String::new();
    for i in vecs.clone() {
        cache += &format!("    let q_{i} = qkv[qa + {i}u] * p.scale;\n    var a_{i} = vec4<f32>(0.0);\n");
    }
    // One position: keys and values loaded by `k_load`/`v_load` (with AT the vector's index from
    // kb); `masked`: positions past the lane's row get weight 0.
    let body = |k_load: &str, v_load: &str, masked: bool| {
        let mut w = String::new();
        for c in loads.clone() {
            let at = format!("kb + min(lane + {}u, {}u)", 8 * c, hd4 - 1);
            w += &format!("        let kl_{c} = {};\n        let vl_{c} = {};\n", k_load.replace("AT", &at), v_load.replace("AT", &at));
        }
        for i in vecs.clone() {
            w += &format!("        let k_{i} = subgroupBroadcast(kl_{}, {}u);\n", i / 8, i % 8);
        }
        let dots: Vec<String> = vecs.clone().map(|i| format!("dot(q_{i}, k_{i})")).collect();
        w += &format!("        let s = {};\n", dots.join(" + "));
        w += if masked { "        let cp = softmax_step(&m, &l, select(s, -3.4e38, j > pos_r));\n" } else { "        let cp = softmax_step(&m, &l, s);\n" };
        for i in vecs.clone() {
            w += &format!("        a_{i} = a_{i} * cp.x + cp.y * subgroupBroadcast(vl_{}, {}u);\n", i / 8, i % 8);
        }
        w
    };
    cache += "    for (var j = 0u; j < step.pos; j++) {\n        let kb = j * kv4 + kv_off4;\n";
    cache += &body("k_cache[AT]", "v_cache[AT]", false);
    cache += "    }\n";
    let mut own = "    for (var j = step.pos; j <= last; j++) {\n        let kb = (j - step.pos) * stride4 + own_k;\n".to_string();
    own += &body("qkv[AT]", "qkv[kv4 + AT]", true);
    own += "    }\n";
    let store: String = vecs.map(|i| format!("        out[o + {i}u] = a_{i} / l;\n")).collect();
    [("    //@walk_cache\n", cache), ("    //@walk_own\n", own), ("        //@store\n", store)]
}
