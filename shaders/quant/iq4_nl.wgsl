//! IQ4_NL { d: f16, qs: [u8; 16] } (18 bytes, 32 values): a 4-bit index into the non-linear table
//! IQ4_LEVELS; x[j] = d * IQ4_LEVELS[qs[j] & 0xF], x[j+16] = d * IQ4_LEVELS[qs[j] >> 4].
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

// ggml's kvalues_iq4nl.
fn iq4_level(q: u32) -> f32 {
    var levels = array<f32, 16>(-127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0,
                                1.0, 13.0, 25.0, 38.0, 53.0, 69.0, 89.0, 113.0);
    return levels[q & 0xfu];
}

// The table values of the low nibbles of a word's four bytes.
fn iq4_levels4(q: u32) -> vec4<f32> {
    return vec4<f32>(iq4_level(q), iq4_level(q >> 8u), iq4_level(q >> 16u), iq4_level(q >> 24u));
}

fn block_dot(blk: u32, xi: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + 2u + 4u * k);
        s += dot(iq4_levels4(q), act4(xi + 4u * k)) + dot(iq4_levels4(q >> 4u), act4(xi + 16u + 4u * k));
    }
    return load_f16(blk) * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let byte = load_u8(blk + 2u + (i % 16u));
    return load_f16(blk) * iq4_level(select(byte, byte >> 4u, i >= 16u));
}

// Values i .. i+7 (i a multiple of 8): nibbles of 8 consecutive quant bytes.
fn dequant8(blk: u32, i: u32) -> array<vec4<f32>, 2> {
    let d = load_f16(blk);
    let at = blk + 2u + (i % 16u);
    let shift = select(0u, 4u, i >= 16u);
    return array<vec4<f32>, 2>(d * iq4_levels4(load_u32(at) >> shift), d * iq4_levels4(load_u32(at + 4u) >> shift));
}
