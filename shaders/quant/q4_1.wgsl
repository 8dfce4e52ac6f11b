//! Q4_1 { d: f16, m: f16, qs: [u8; 16] } (20 bytes): x[j] = d * (qs[j] & 0xF) + m, x[j+16] = d * (qs[j] >> 4) + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    var sum_qx = 0.0;
    var sum_x = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + 4u + 4u * k);
        let x0 = act4(xi + 4u * k);
        let x1 = act4(xi + 16u + 4u * k);
        sum_qx += dot(nibbles_lo(q), x0) + dot(nibbles_hi(q), x1);
        sum_x += x0 + x1;
    }
    return dm.x * sum_qx + dm.y * dot(sum_x, vec4<f32>(1.0));
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    let byte = load_u8(blk + 4u + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u);
    return dm.x * f32(q) + dm.y;
}

// Values i .. i+7 (i a multiple of 8): nibbles of 8 consecutive quant bytes; d, m.
fn quant8(blk: u32, i: u32) -> Q8 {
    let dm = unpack2x16float(load_u32(blk));
    let at = blk + 4u + (i % 16u);
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    if (i >= 16u) {
        return Q8(nibbles_hi(a), nibbles_hi(b), dm.x, dm.y);
    }
    return Q8(nibbles_lo(a), nibbles_lo(b), dm.x, dm.y);
}

// Values i .. i+7 and i+16 .. i+23 (i 0 or 8): both nibbles of 8 consecutive quant bytes; d, m.
const PAIR: u32 = 16u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let dm = unpack2x16float(load_u32(blk));
    let at = blk + 4u + i;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    return Q16(Q8(nibbles_lo(a), nibbles_lo(b), dm.x, dm.y), Q8(nibbles_hi(a), nibbles_hi(b), dm.x, dm.y));
}
