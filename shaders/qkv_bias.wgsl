//! qkv_bias (qwen2, a llama file's): q | k | v += bq | bk | bv in place, for every batch row of
//! [q | k | v]. One thread per value; grid row y is batch row y.

struct Params {
    q_dim: u32,      // width of q (bq's length)
    kv_dim: u32,     // width of k and of v (bk's and bv's length)
    row_stride: u32, // elements per batch row of qkv (q_dim + 2 kv_dim)
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>; // [rows, q_dim + 2 kv_dim]
@group(0) @binding(2) var<storage, read> bq: array<f32>;        // [q_dim]
@group(0) @binding(3) var<storage, read> bk: array<f32>;        // [kv_dim]
@group(0) @binding(4) var<storage, read> bv: array<f32>;        // [kv_dim]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.q_dim + 2u * p.kv_dim) {
        return;
    }
    var b: f32;
    if (i < p.q_dim) {
        b = bq[i];
    } else if (i < p.q_dim + p.kv_dim) {
        b = bk[i - p.q_dim];
    } else {
        b = bv[i - p.q_dim - p.kv_dim];
    }
    let j = gid.y * p.row_stride + i;
    qkv[j] = qkv[j] + b;
}
