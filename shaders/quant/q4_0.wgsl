//! Q4_0 { d: f16, qs: [u8; 16] } (18 bytes; BLOCK_PAD zero bytes after d where the layout pads
//! blocks: kernels::block_pad): x[j] = d * ((qs[j] & 0xF) - 8), x[j+16] = d * ((qs[j] >> 4) - 8).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 18u + BLOCK_PAD;
const QS: u32 = 2u + BLOCK_PAD; // the quants' first byte

fn block_dot(blk: u32, xi: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + QS + 4u * k);
        s += dot(nibbles_lo(q) - 8.0, act4(xi + 4u * k)) + dot(nibbles_hi(q) - 8.0, act4(xi + 16u + 4u * k));
    }
    return load_f16(blk) * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let byte = load_u8(blk + QS + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u);
    return load_f16(blk) * (f32(q) - 8.0);
}

// Values i .. i+7 (i a multiple of 8): nibbles of 8 consecutive quant bytes; d, -8 d.
fn quant8(blk: u32, i: u32) -> Q8 {
    let d = load_f16(blk);
    let at = blk + QS + (i % 16u);
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    if (i >= 16u) {
        return Q8(nibbles_hi(a), nibbles_hi(b), d, -8.0 * d);
    }
    return Q8(nibbles_lo(a), nibbles_lo(b), d, -8.0 * d);
}

// Values i .. i+7 and i+16 .. i+23 (i 0 or 8): both nibbles of 8 consecutive quant bytes; d, -8 d.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let d = load_f16(blk);
    let at = blk + QS + i;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    return Q16(Q8(nibbles_lo(a), nibbles_lo(b), d, -8.0 * d), Q8(nibbles_hi(a), nibbles_hi(b), d, -8.0 * d));
}
