//! Q5_0 from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q5_0.wgsl, before cpu/quant/wide_24.wgsl): the CPU family pads the 22-byte blocks after d
//! to 24 (kernels::cpu::block_pad), so a block's scale word holds d and 2 zero bytes.

// A block's 32 values: d * (q - 16).
fn values_of(d_word: u32, qh: u32, q: vec4<u32>) -> Vec4x8 {
    let d = unpack2x16float(d_word).x;
    let v = quants5(qh, q);
    return Vec4x8(d * (v.a0 - 16.0), d * (v.a1 - 16.0), d * (v.a2 - 16.0), d * (v.a3 - 16.0),
                  d * (v.a4 - 16.0), d * (v.a5 - 16.0), d * (v.a6 - 16.0), d * (v.a7 - 16.0));
}

// A block's dot with activations x, as d * (q . x - 16 sum(x)).
fn block_dot_wide(d_word: u32, qh: u32, q: vec4<u32>, x: Vec4x8) -> f32 {
    return unpack2x16float(d_word).x * (dot8(quants5(qh, q), x) - 16.0 * acts_sum(x));
}
