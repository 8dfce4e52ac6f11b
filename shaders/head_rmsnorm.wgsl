//! head_rmsnorm (qwen3): each head of q and k RMS-normed on its own, in place: x = x / sqrt(mean(x^2) +
//! eps) * w, with q's weights for the first n_q_heads heads of a row and k's for the rest. One workgroup
//! of 64 threads per head (workgroup x: the head among q's then k's; y: the batch row).

struct Params {
    head_dim: u32,
    n_q_heads: u32,
    row_stride: u32, // elements per batch row of qkv; q's heads, then k's, start each row
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>; // [rows, (n_q_heads + n_k_heads) * head_dim + ...]
@group(0) @binding(2) var<storage, read> q_norm: array<f32>;  // [head_dim]
@group(0) @binding(3) var<storage, read> k_norm: array<f32>;  // [head_dim]

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h0 = wid.y * p.row_stride + wid.x * p.head_dim;
    var ss = 0.0;
    for (var i = lid; i < p.head_dim; i += 64u) {
        let v = x[h0 + i];
        ss += v * v;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(red[0] / f32(p.head_dim) + p.eps);
    let is_q = wid.x < p.n_q_heads;
    for (var i = lid; i < p.head_dim; i += 64u) {
        var w: f32;
        if (is_q) {
            w = q_norm[i];
        } else {
            w = k_norm[i];
        }
        x[h0 + i] = x[h0 + i] * scale * w;
    }
}
