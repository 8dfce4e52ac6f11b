//! Q5_0 { d: f16, qh: u32 (bit j = 5th bit of x[j]), qs: [u8; 16] } (22 bytes;
//! BLOCK_PAD zero bytes after d where the layout pads blocks: kernels::block_pad):
//! x[j] = d * (((qs[j] & 0xF) | qh_j << 4) - 16), x[j+16] = d * (((qs[j] >> 4) | qh_{j+16} << 4) - 16).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u + BLOCK_PAD;
const QH: u32 = 2u + BLOCK_PAD; // qh's first byte
const QS: u32 = 6u + BLOCK_PAD; // the quants' first byte

fn block_dot(blk: u32, xi: u32) -> f32 {
    let qh = load_u32(blk + QH);
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + QS + 4u * k);
        let lo = vec4<f32>(vec4<u32>(nibbles_lo(q)) | bits4_x16(qh, 4u * k)) - 16.0;
        let hi = vec4<f32>(vec4<u32>(nibbles_hi(q)) | bits4_x16(qh, 16u + 4u * k)) - 16.0;
        s += dot(lo, act4(xi + 4u * k)) + dot(hi, act4(xi + 16u + 4u * k));
    }
    return load_f16(blk) * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let qh = load_u32(blk + QH);
    let byte = load_u8(blk + QS + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u) | (((qh >> i) & 1u) << 4u);
    return load_f16(blk) * (f32(q) - 16.0);
}

// Values i .. i+7 (i a multiple of 8): nibbles of 8 consecutive quant bytes with their fifth bits
// from qh; d, -16 d.
fn quant8(blk: u32, i: u32) -> Q8 {
    let d = load_f16(blk);
    let qh = load_u32(blk + QH);
    let at = blk + QS + (i % 16u);
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let h0 = vec4<f32>(bits4_x16(qh, i));
    let h1 = vec4<f32>(bits4_x16(qh, i + 4u));
    if (i >= 16u) {
        return Q8(nibbles_hi(a) + h0, nibbles_hi(b) + h1, d, -16.0 * d);
    }
    return Q8(nibbles_lo(a) + h0, nibbles_lo(b) + h1, d, -16.0 * d);
}

// Values i .. i+7 and i+16 .. i+23 (i 0 or 8): both nibbles of 8 consecutive quant bytes and their
// fifth bits; d, -16 d.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let d = load_f16(blk);
    let qh = load_u32(blk + QH);
    let at = blk + QS + i;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let lo = Q8(nibbles_lo(a) + vec4<f32>(bits4_x16(qh, i)), nibbles_lo(b) + vec4<f32>(bits4_x16(qh, i + 4u)), d, -16.0 * d);
    let hi = Q8(nibbles_hi(a) + vec4<f32>(bits4_x16(qh, i + 16u)), nibbles_hi(b) + vec4<f32>(bits4_x16(qh, i + 20u)), d, -16.0 * d);
    return Q16(lo, hi);
}
