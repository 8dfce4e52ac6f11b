//! Q5_1 { d: f16, m: f16, qh: u32 (bit j = 5th bit of x[j]), qs: [u8; 16] } (24 bytes):
//! x[j] = d * ((qs[j] & 0xF) | qh_j << 4) + m, x[j+16] = d * ((qs[j] >> 4) | qh_{j+16} << 4) + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    let qh = load_u32(blk + 4u);
    var sum_qx = 0.0;
    var sum_x = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + 8u + 4u * k);
        let x0 = act4(xi + 4u * k);
        let x1 = act4(xi + 16u + 4u * k);
        sum_qx += dot(vec4<f32>(vec4<u32>(nibbles_lo(q)) | bits4_x16(qh, 4u * k)), x0)
                + dot(vec4<f32>(vec4<u32>(nibbles_hi(q)) | bits4_x16(qh, 16u + 4u * k)), x1);
        sum_x += x0 + x1;
    }
    return dm.x * sum_qx + dm.y * dot(sum_x, vec4<f32>(1.0));
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    let qh = load_u32(blk + 4u);
    let byte = load_u8(blk + 8u + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u) | (((qh >> i) & 1u) << 4u);
    return dm.x * f32(q) + dm.y;
}

// Values i .. i+7 (i a multiple of 8): nibbles of 8 consecutive quant bytes with their fifth bits
// from qh; d, m.
fn quant8(blk: u32, i: u32) -> Q8 {
    let dm = unpack2x16float(load_u32(blk));
    let qh = load_u32(blk + 4u);
    let at = blk + 8u + (i % 16u);
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let h0 = vec4<f32>(bits4_x16(qh, i));
    let h1 = vec4<f32>(bits4_x16(qh, i + 4u));
    if (i >= 16u) {
        return Q8(nibbles_hi(a) + h0, nibbles_hi(b) + h1, dm.x, dm.y);
    }
    return Q8(nibbles_lo(a) + h0, nibbles_lo(b) + h1, dm.x, dm.y);
}

// Values i .. i+7 and i+16 .. i+23 (i 0 or 8): both nibbles of 8 consecutive quant bytes and their
// fifth bits; d, m.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let dm = unpack2x16float(load_u32(blk));
    let qh = load_u32(blk + 4u);
    let at = blk + 8u + i;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let lo = Q8(nibbles_lo(a) + vec4<f32>(bits4_x16(qh, i)), nibbles_lo(b) + vec4<f32>(bits4_x16(qh, i + 4u)), dm.x, dm.y);
    let hi = Q8(nibbles_hi(a) + vec4<f32>(bits4_x16(qh, i + 16u)), nibbles_hi(b) + vec4<f32>(bits4_x16(qh, i + 20u)), dm.x, dm.y);
    return Q16(lo, hi);
}
