//! Q5_1 from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q5_1.wgsl, before cpu/quant/wide_24.wgsl): a block's scale word holds d and m as halves.

// A block's 32 values: d * q + m.
fn values_of(dm_word: u32, qh: u32, q: vec4<u32>) -> Vec4x8 {
    let dm = unpack2x16float(dm_word);
    let v = quants5(qh, q);
    let m = vec4<f32>(dm.y);
    return Vec4x8(dm.x * v.a0 + m, dm.x * v.a1 + m, dm.x * v.a2 + m, dm.x * v.a3 + m,
                  dm.x * v.a4 + m, dm.x * v.a5 + m, dm.x * v.a6 + m, dm.x * v.a7 + m);
}

// A block's dot with activations x, as d * (q . x) + m * sum(x).
fn block_dot_wide(dm_word: u32, qh: u32, q: vec4<u32>, x: Vec4x8) -> f32 {
    let dm = unpack2x16float(dm_word);
    return dm.x * dot8(quants5(qh, q), x) + dm.y * acts_sum(x);
}
