//! rope: rotates pairs of the first n_rot dims of each head, adjacent (x[2i], x[2i+1]) in llama.cpp's
//! NORM mode or the halves' (x[i], x[i + n_rot/2]) in its NEOX mode (qwen2, qwen3), by freq_scale * pos * freq_base^(-2i/n_rot) / freq_factors[i], in place. One thread per pair;
//! grid row y is batch row y, at position step.pos + y * step.pos_step.

struct Params {
    n_heads: u32,
    head_dim: u32,
    n_rot: u32,
    offset: u32,     // first element of head 0 at position 0
    pos_stride: u32, // added per step.pos (KV-cache rows); 0 for the query vector
    freq_base: f32,
    freq_scale: f32, // 1 / linear scaling factor
    row_stride: u32, // elements per batch row
    neox: u32,       // 1: NEOX pairs (x[i], x[i + n_rot/2]); 0: NORM pairs (x[2i], x[2i+1])
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;   // [n_heads, head_dim] at offset + pos * pos_stride
@group(0) @binding(3) var<storage, read> freq_factors: array<f32>; // [n_rot / 2] (ones without rope_freqs)

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half_rot = p.n_rot / 2u;
    if (gid.x >= p.n_heads * half_rot || gid.y >= step.n_rows) {
        return;
    }
    let head = gid.x / half_rot;
    let i = gid.x % half_rot;
    let pos = step.pos + gid.y * step.pos_step;
    let theta = p.freq_scale * f32(pos) * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot)) / freq_factors[i];
    let c = cos(theta);
    let s = sin(theta);
    let h0 = p.offset + gid.y * p.row_stride + pos * p.pos_stride + head * p.head_dim;
    var j = h0 + 2u * i;
    var j2 = j + 1u;
    if (p.neox == 1u) {
        j = h0 + i;
        j2 = j + half_rot;
    }
    let a = x[j];
    let b = x[j2];
    x[j] = a * c - b * s;
    x[j2] = a * s + b * c;
}
