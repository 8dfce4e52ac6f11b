//! What matvec_wide and matmul_wide share: 8 vectors of 4 (a block of 32 values or activations)
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
