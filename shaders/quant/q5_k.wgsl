//! Q5_K { d: f16, dmin: f16, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] } (176 bytes, 256 values):
//! as Q4_K with a fifth bit per value: bit 2c of qh[l] for value 64c+l, bit 2c+1 for 64c+32+l.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    var acc = 0.0;
    for (var c = 0u; c < 4u; c++) {
        let sm1 = scale_min_k4(blk + 4u, 2u * c);
        let sm2 = scale_min_k4(blk + 4u, 2u * c + 1u);
        var s1 = 0.0;
        var s2 = 0.0;
        var xs1 = vec4<f32>(0.0);
        var xs2 = vec4<f32>(0.0);
        for (var k = 0u; k < 8u; k++) {
            let q = load_u32(blk + 48u + 32u * c + 4u * k);
            let h = load_u32(blk + 16u + 4u * k);
            let xa = act4(xi + 64u * c + 4u * k);
            let xb = act4(xi + 64u * c + 32u + 4u * k);
            s1 += dot(vec4<f32>(vec4<u32>(nibbles_lo(q)) | bit_x16(h, 2u * c)), xa);
            s2 += dot(vec4<f32>(vec4<u32>(nibbles_hi(q)) | bit_x16(h, 2u * c + 1u)), xb);
            xs1 += xa;
            xs2 += xb;
        }
        let one = vec4<f32>(1.0);
        acc += dm.x * (sm1.x * s1 + sm2.x * s2) - dm.y * (sm1.y * dot(xs1, one) + sm2.y * dot(xs2, one));
    }
    return acc;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    let c = i / 64u;
    let w = i % 64u;
    let l = w % 32u;
    let byte = load_u8(blk + 48u + 32u * c + l);
    let hbit = (load_u8(blk + 16u + l) >> (2u * c + w / 32u)) & 1u;
    let q = select(byte & 0xfu, byte >> 4u, w >= 32u) | (hbit << 4u);
    let sm = scale_min_k4(blk + 4u, 2u * c + w / 32u);
    return dm.x * sm.x * f32(q) - dm.y * sm.y;
}

// Values i .. i+7 (i a multiple of 8): 8 consecutive quant bytes' nibbles with their fifth bits from
// qh; d * scale, -dmin * min of their sub-block.
fn quant8(blk: u32, i: u32) -> Q8 {
    let dm = unpack2x16float(load_u32(blk));
    let c = i / 64u;
    let w = i % 64u;
    let l = w % 32u;
    let bit = 2u * c + w / 32u;
    let sm = scale_min_k4(blk + 4u, bit);
    let at = blk + 48u + 32u * c + l;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let h0 = vec4<f32>(bit_x16(load_u32(blk + 16u + l), bit));
    let h1 = vec4<f32>(bit_x16(load_u32(blk + 20u + l), bit));
    if (w >= 32u) {
        return Q8(nibbles_hi(a) + h0, nibbles_hi(b) + h1, dm.x * sm.x, -dm.y * sm.y);
    }
    return Q8(nibbles_lo(a) + h0, nibbles_lo(b) + h1, dm.x * sm.x, -dm.y * sm.y);
}

// Values i .. i+7 and i+32 .. i+39 (i % 64 < 32): both nibbles of 8 consecutive quant bytes and
// bits 2c, 2c+1 of 8 high-bit bytes, of sub-blocks 2c and 2c+1; each one's d * scale, -dmin * min.
const PAIR: u32 = 32u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let dm = unpack2x16float(load_u32(blk));
    let c = i / 64u;
    let l = i % 64u;
    let sm = scale_min_k4_pair(blk + 4u, 2u * c);
    let at = blk + 48u + 32u * c + l;
    let a = load_u32(at);
    let b = load_u32(at + 4u);
    let h0 = load_u32(blk + 16u + l);
    let h1 = load_u32(blk + 20u + l);
    return Q16(
        Q8(nibbles_lo(a) + vec4<f32>(bit_x16(h0, 2u * c)), nibbles_lo(b) + vec4<f32>(bit_x16(h1, 2u * c)), dm.x * sm.x, -dm.y * sm.y),
        Q8(nibbles_hi(a) + vec4<f32>(bit_x16(h0, 2u * c + 1u)), nibbles_hi(b) + vec4<f32>(bit_x16(h1, 2u * c + 1u)), dm.x * sm.z, -dm.y * sm.w)
    );
}
