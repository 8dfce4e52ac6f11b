//! F16: one little-endian IEEE half per element.
const BLOCK_ELEMS: u32 = 1u;
const BLOCK_BYTES: u32 = 2u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    return load_f16(blk) * act(xi);
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    return load_f16(blk);
}
