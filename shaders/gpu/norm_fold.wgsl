//! RMSNorm folded into the following matrix product (composed before qkv.wgsl and gate_up.wgsl, which
//! declare `x` and `norm_w` as array<vec4<f32>> bindings): the row walk dots the rows with
//! x * norm_w and sums the squares of x on the way; the norm's scale, common to every term,
//! multiplies the finished dots.

// The quant files' block_dot reads x * norm_w.
fn act4(i: u32) -> vec4<f32> {
    return x[i >> 2u] * norm_w[i >> 2u];
}
fn raw4(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}
fn act_of(v: vec4<f32>, i: u32) -> vec4<f32> {
    return v * norm_w[i >> 2u];
}

// 1 / sqrt(mean(x^2) + eps) from the sum of squares of x's `cols` values.
fn norm_scale(sum_squares: f32, cols: u32, eps: f32) -> f32 {
    return 1.0 / sqrt(sum_squares / f32(cols) + eps);
}
