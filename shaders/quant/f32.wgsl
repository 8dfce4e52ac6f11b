//! F32: little-endian f32 values, taken four at a time (rows are 4-byte aligned).
const BLOCK_ELEMS: u32 = 4u;
const BLOCK_BYTES: u32 = 16u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let w = blk >> 2u;
    let v = bitcast<vec4<f32>>(vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u]));
    return dot(v, act4(xi));
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    return bitcast<f32>(weights[(blk >> 2u) + i]);
}

// Values 0 .. 7 from the block at blk and the next (4-value blocks), as they are.
fn quant8(blk: u32, i: u32) -> Q8 {
    let w = blk >> 2u;
    return Q8(bitcast<vec4<f32>>(vec4<u32>(weights[w], weights[w + 1u], weights[w + 2u], weights[w + 3u])),
              bitcast<vec4<f32>>(vec4<u32>(weights[w + 4u], weights[w + 5u], weights[w + 6u], weights[w + 7u])), 1.0, 0.0);
}
