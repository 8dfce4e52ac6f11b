//! BF16: the top 16 bits of an f32, taken four at a time.
const BLOCK_ELEMS: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;

fn bf16_pair(w: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(w << 16u, w & 0xffff0000u));
}

fn block_dot(blk: u32, xi: u32) -> f32 {
    return dot(vec4<f32>(bf16_pair(load_u32(blk)), bf16_pair(load_u32(blk + 4u))), act4(xi));
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    return bitcast<f32>(load_u16(blk + 2u * i) << 16u);
}

// Values 0 .. 7 from the block at blk and the next (4-value blocks), as they are.
fn quant8(blk: u32, i: u32) -> Q8 {
    return Q8(vec4<f32>(bf16_pair(load_u32(blk)), bf16_pair(load_u32(blk + 4u))),
              vec4<f32>(bf16_pair(load_u32(blk + 8u)), bf16_pair(load_u32(blk + 12u))), 1.0, 0.0);
}
