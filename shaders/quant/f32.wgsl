//! F32: one little-endian f32 per element.
const BLOCK_ELEMS: u32 = 1u;
const BLOCK_BYTES: u32 = 4u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    return bitcast<f32>(load_u32(blk)) * act(xi);
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    return bitcast<f32>(load_u32(blk));
}
