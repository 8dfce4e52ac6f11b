//! F16: little-endian IEEE halves, taken four at a time.
const BLOCK_ELEMS: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let v = vec4<f32>(unpack2x16float(load_u32(blk)), unpack2x16float(load_u32(blk + 4u)));
    return dot(v, act4(xi));
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    return load_f16(blk + 2u * i);
}

// Values 0 .. 7 from the block at blk and the next (4-value blocks), as they are.
fn quant8(blk: u32, i: u32) -> Q8 {
    return Q8(vec4<f32>(unpack2x16float(load_u32(blk)), unpack2x16float(load_u32(blk + 4u))),
              vec4<f32>(unpack2x16float(load_u32(blk + 8u)), unpack2x16float(load_u32(blk + 12u))), 1.0, 0.0);
}
