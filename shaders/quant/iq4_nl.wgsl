//! IQ4_NL { d: f16, qs: [u8; 16] } (18 bytes; BLOCK_PAD zero bytes after d
//! where the layout pads blocks: kernels::block_pad; 32 values): a 4-bit index into the non-linear levels
//! of iq4_levels.wgsl; x[j] = d * IQ4_LEVELS[qs[j] & 0xF], x[j+16] = d * IQ4_LEVELS[qs[j] >> 4].
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u + BLOCK_PAD;
const QS: u32 = 2u + BLOCK_PAD; // the quants' first byte

fn block_dot(blk: u32, xi: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + QS + 4u * k);
        s += dot(iq4_levels4(q), act4(xi + 4u * k)) + dot(iq4_levels4(q >> 4u), act4(xi + 16u + 4u * k));
    }
    return load_f16(blk) * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let byte = load_u8(blk + QS + (i % 16u));
    return load_f16(blk) * iq4_level(select(byte, byte >> 4u, i >= 16u));
}

// Values i .. i+7 (i a multiple of 8): the levels of 8 consecutive quant bytes' nibbles; d.
fn quant8(blk: u32, i: u32) -> Q8 {
    let at = blk + QS + (i % 16u);
    let shift = select(0u, 4u, i >= 16u);
    return Q8(iq4_levels4(load_u32(at) >> shift), iq4_levels4(load_u32(at + 4u) >> shift), load_f16(blk), 0.0);
}

// Values i .. i+7 and i+16 .. i+23 (i 0 or 8): both nibbles of 8 consecutive quant bytes as levels; d.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let d = load_f16(blk);
    let a = load_u32(blk + QS + i);
    let b = load_u32(blk + QS + i + 4u);
    return Q16(Q8(iq4_levels4(a), iq4_levels4(b), d, 0.0), Q8(iq4_levels4(a >> 4u), iq4_levels4(b >> 4u), d, 0.0));
}
