//! Q4_1 from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q4_1.wgsl, before cpu/quant/wide_20.wgsl): a block's scale word holds d and m as halves.

// A block's 32 values from its words: dm (d, m as halves) and the 16 quant bytes.
fn values_of(dm_word: u32, q: vec4<u32>) -> Vec4x8 {
    let dm = unpack2x16float(dm_word);
    let m = vec4<f32>(dm.y);
    return Vec4x8(dm.x * nibbles_lo(q.x) + m, dm.x * nibbles_lo(q.y) + m, dm.x * nibbles_lo(q.z) + m, dm.x * nibbles_lo(q.w) + m,
                  dm.x * nibbles_hi(q.x) + m, dm.x * nibbles_hi(q.y) + m, dm.x * nibbles_hi(q.z) + m, dm.x * nibbles_hi(q.w) + m);
}

// A block's dot with activations x, as d * (q . x) + m * sum(x): the offset applied once per block
// rather than to each value (12% off a matvec on lavapipe).
fn block_dot_wide(dm_word: u32, q: vec4<u32>, x: Vec4x8) -> f32 {
    let dm = unpack2x16float(dm_word);
    return dm.x * nibbles_dot(q, x) + dm.y * acts_sum(x);
}
