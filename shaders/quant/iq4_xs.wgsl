//! IQ4_XS { d: f16, scales_h: u16, scales_l: [u8; 4], qs: [u8; 128] } (136 bytes, 256 values in 8
//! sub-blocks of 32): sub-block b has the 6-bit scale ls = nibble b of scales_l | bits 2b..2b+1 of
//! scales_h << 4, and quants qs[16b..16b+16] as IQ4_NL's: x = d * (ls - 32) * IQ4_LEVELS[q].
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 136u;

// d * (ls - 32) of sub-block b.
fn iq4xs_scale(blk: u32, b: u32) -> f32 {
    let low = (load_u8(blk + 4u + b / 2u) >> (4u * (b % 2u))) & 0xfu;
    let high = (load_u16(blk + 2u) >> (2u * b)) & 3u;
    return load_f16(blk) * (f32(low | (high << 4u)) - 32.0);
}

fn block_dot(blk: u32, xi: u32) -> f32 {
    var acc = 0.0;
    for (var b = 0u; b < 8u; b++) {
        var s = 0.0;
        for (var k = 0u; k < 4u; k++) {
            let q = load_u32(blk + 8u + 16u * b + 4u * k);
            let x0 = xi + 32u * b + 4u * k;
            s += dot(iq4_levels4(q), act4(x0)) + dot(iq4_levels4(q >> 4u), act4(x0 + 16u));
        }
        acc += iq4xs_scale(blk, b) * s;
    }
    return acc;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let b = i / 32u;
    let w = i % 32u;
    let byte = load_u8(blk + 8u + 16u * b + (w % 16u));
    return iq4xs_scale(blk, b) * iq4_level(select(byte, byte >> 4u, w >= 16u));
}

// Values i .. i+7 (i a multiple of 8): the levels of 8 consecutive quant bytes' nibbles; d * the
// sub-block's scale.
fn quant8(blk: u32, i: u32) -> Q8 {
    let b = i / 32u;
    let w = i % 32u;
    let at = blk + 8u + 16u * b + (w % 16u);
    let shift = select(0u, 4u, w >= 16u);
    return Q8(iq4_levels4(load_u32(at) >> shift), iq4_levels4(load_u32(at + 4u) >> shift), iq4xs_scale(blk, b), 0.0);
}

// Values i .. i+7 and i+16 .. i+23 (i % 32 0 or 8): both nibbles of 8 consecutive quant bytes of
// sub-block i / 32 as levels; its scale.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let b = i / 32u;
    let at = blk + 8u + 16u * b + (i % 32u);
    let a = load_u32(at);
    let c = load_u32(at + 4u);
    let s = iq4xs_scale(blk, b);
    return Q16(Q8(iq4_levels4(a), iq4_levels4(c), s, 0.0), Q8(iq4_levels4(a >> 4u), iq4_levels4(c >> 4u), s, 0.0));
}
