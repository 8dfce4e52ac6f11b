//! What matvec_wide, matmul_wide and embed_wide share: 8 vectors of 4 (a block of 32 values or activations)
//! and word windows over 16-byte loads. Composed after cpu/quant/wide_<type>.wgsl.

// 32 values as 8 vectors (fields, not an array: lavapipe keeps fields in registers but indexes
// arrays in memory).
struct Vec4x8 {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    a4: vec4<f32>, a5: vec4<f32>, a6: vec4<f32>, a7: vec4<f32>,
}

fn dot8(a: Vec4x8, b: Vec4x8) -> f32 {
    return dot(a.a0, b.a0) + dot(a.a1, b.a1) + dot(a.a2, b.a2) + dot(a.a3, b.a3)
        + dot(a.a4, b.a4) + dot(a.a5, b.a5) + dot(a.a6, b.a6) + dot(a.a7, b.a7);
}

// Words w .. w+3 of the 8 words a, b (w in 0..3).
fn words_at(a: vec4<u32>, b: vec4<u32>, w: u32) -> vec4<u32> {
    let lo = select(a, vec4<u32>(a.yzw, b.x), w == 1u);
    let hi = select(vec4<u32>(a.zw, b.xy), vec4<u32>(a.w, b.xyz), w == 3u);
    return select(lo, hi, w >= 2u);
}

// The dot of 16 quant bytes' nibbles (unscaled: low nibbles values 0..15, high 16..31) with
// activations x, and the activations' sum.
fn nibbles_dot(q: vec4<u32>, x: Vec4x8) -> f32 {
    return dot(nibbles_lo(q.x), x.a0) + dot(nibbles_lo(q.y), x.a1) + dot(nibbles_lo(q.z), x.a2) + dot(nibbles_lo(q.w), x.a3)
        + dot(nibbles_hi(q.x), x.a4) + dot(nibbles_hi(q.y), x.a5) + dot(nibbles_hi(q.z), x.a6) + dot(nibbles_hi(q.w), x.a7);
}
fn acts_sum(x: Vec4x8) -> f32 {
    return dot((x.a0 + x.a1) + (x.a2 + x.a3) + (x.a4 + x.a5) + (x.a6 + x.a7), vec4<f32>(1.0));
}

// The nibbles at `s` (0 or 4) of a word's four bytes, as four values.
fn nibbles_at(q: u32, s: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q) >> vec4<u32>(s, s + 8u, s + 16u, s + 24u)) & vec4<u32>(0xfu));
}

// d * scale and dmin * min of sub-block j (0..7) of a Q4_K or Q5_K superblock from its first 16
// bytes: d and dmin (halves of v.x), the 12 scale bytes (v.yzw; ggml's get_scale_min_k4).
fn scale_min_k4_wide(v: vec4<u32>, j: u32) -> vec2<f32> {
    let s = (j & 3u) * 8u;
    let b = (v.yzw >> vec3<u32>(s)) & vec3<u32>(0xffu);
    let low = vec2<u32>(b.x & 63u, b.y & 63u);
    let high = vec2<u32>((b.z & 0xfu) | ((b.x >> 6u) << 4u), (b.z >> 4u) | ((b.y >> 6u) << 4u));
    return unpack2x16float(v.x) * vec2<f32>(select(low, high, j >= 4u));
}

// A K-quant sub-block's values from its quants q: d * scale * q - dmin * min (sm as
// scale_min_k4_wide gives them).
fn scale_values_k(q: Vec4x8, sm: vec2<f32>) -> Vec4x8 {
    let m = vec4<f32>(sm.y);
    return Vec4x8(sm.x * q.a0 - m, sm.x * q.a1 - m, sm.x * q.a2 - m, sm.x * q.a3 - m,
                  sm.x * q.a4 - m, sm.x * q.a5 - m, sm.x * q.a6 - m, sm.x * q.a7 - m);
}

// Sub-block j of the Q4_K or Q5_K superblock whose first vec4 is v0, its quants q, dotted with
// activations x: d * scale * (q . x) - dmin * min * sum(x).
fn sub_dot_k(v0: vec4<u32>, j: u32, q: Vec4x8, x: Vec4x8) -> f32 {
    let sm = scale_min_k4_wide(v0, j);
    return sm.x * dot8(q, x) - sm.y * acts_sum(x);
}
