//! IQ4_NL's and IQ4_XS's non-linear levels (ggml's kvalues_iq4nl), composed before either
//! type's decoder (gpu::compose::quant_wgsl).

// The level a 4-bit quant (the low nibble of q) stands for.
fn iq4_level(q: u32) -> f32 {
    var levels = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
    return levels[q & 0xfu];
}

// The levels of the low nibbles of a word's four bytes.
fn iq4_levels4(q: u32) -> vec4<f32> {
    return vec4<f32>(iq4_level(q), iq4_level(q >> 8u), iq4_level(q >> 16u), iq4_level(q >> 24u));
}
