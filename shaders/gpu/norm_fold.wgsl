//! RMSNorm folded into a following matrix product (composed before qkv.wgsl and gate_up.wgsl, which
//! declare `x` and `norm_w` as array<vec4<f32>> bindings). The matrix reads x * norm_w through act4;
//! the norm's scale, common to every term, multiplies the finished dot products.

var<workgroup> red: array<f32, 64>;

fn act4(i: u32) -> vec4<f32> {
    return x[i >> 2u] * norm_w[i >> 2u];
}

// 1 / sqrt(mean(x^2) + eps) over x's `cols` values, by the whole workgroup of 64 with one barrier.
fn norm_scale(lid: u32, cols: u32, eps: f32) -> f32 {
    var ss = 0.0;
    for (var i = lid; i < cols / 4u; i += 64u) {
        let v = x[i];
        ss += dot(v, v);
    }
    red[lid] = ss;
    workgroupBarrier();
    var total = 0.0;
    for (var j = 0u; j < 64u; j++) {
        total += red[j];
    }
    return 1.0 / sqrt(total / f32(cols) + eps);
}
