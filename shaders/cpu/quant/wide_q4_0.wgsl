//! Q4_0 from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q4_0.wgsl, before cpu/quant/wide_20.wgsl): the CPU family pads the 18-byte blocks after d
//! to 20 (kernels::cpu::block_pad), so a block's scale word holds d and 2 zero bytes.

// A block's 32 values from its words: d (the low half) and the 16 quant bytes.
fn values_of(d_word: u32, q: vec4<u32>) -> Vec4x8 {
    let d = unpack2x16float(d_word).x;
    return Vec4x8(d * (nibbles_lo(q.x) - 8.0), d * (nibbles_lo(q.y) - 8.0), d * (nibbles_lo(q.z) - 8.0), d * (nibbles_lo(q.w) - 8.0),
                  d * (nibbles_hi(q.x) - 8.0), d * (nibbles_hi(q.y) - 8.0), d * (nibbles_hi(q.z) - 8.0), d * (nibbles_hi(q.w) - 8.0));
}

// A block's dot with activations x, as d * (q . x - 8 sum(x)).
fn block_dot_wide(d_word: u32, q: vec4<u32>, x: Vec4x8) -> f32 {
    return unpack2x16float(d_word).x * (nibbles_dot(q, x) - 8.0 * acts_sum(x));
}
