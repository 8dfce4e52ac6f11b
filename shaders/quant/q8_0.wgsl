//! Q8_0 { d: f16, qs: [i8; 32] } (34 bytes; BLOCK_PAD zero bytes after d where the layout pads
//! blocks: kernels::block_pad): x[j] = d * qs[j].
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 34u + BLOCK_PAD;
const QS: u32 = 2u + BLOCK_PAD; // the quants' first byte

fn block_dot(blk: u32, xi: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 8u; k++) {
        s += dot(bytes_i8(load_u32(blk + QS + 4u * k)), act4(xi + 4u * k));
    }
    return load_f16(blk) * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let byte = load_u8(blk + QS + i);
    return load_f16(blk) * f32(bitcast<i32>(byte << 24u) >> 24u);
}

// Values i .. i+7 (i a multiple of 8): 8 consecutive signed bytes; d.
fn quant8(blk: u32, i: u32) -> Q8 {
    return Q8(bytes_i8(load_u32(blk + QS + i)), bytes_i8(load_u32(blk + QS + 4u + i)), load_f16(blk), 0.0);
}
