//! The wide kernels' walk over 24-byte blocks (composed after cpu/quant/wide_<type>.wgsl for Q5_1,
//! and for Q5_0 as the CPU family pads it: kernels::cpu::block_pad): word 0 holds the scales (the
//! type's values_of and block_dot_wide read it), word 1 the fifth bits (qh), words 2..5 the 16
//! quant bytes. 2 blocks (48 bytes) are 3 aligned vec4 loads.
const WIDE_ELEMS: u32 = BLOCK_ELEMS; // values a block_dot_wide or block_values_wide covers
const GROUP_BLOCKS: u32 = 2u;
const GROUP_VEC4: u32 = 3u;

// A group of blocks as loaded (GROUP_VEC4 vec4 loads), and block j of it dotted with activations x
// (matvec_wide calls group_block_0 and group_block_1, gpu/compose.rs group_blocks writes the calls out).
struct Group { v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32> }
fn load_group(a: u32) -> Group {
    return Group(load16(a), load16(a + 1u), load16(a + 2u));
}
fn group_block_0(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v0.x, g.v0.y, vec4<u32>(g.v0.zw, g.v1.xy), x); }
fn group_block_1(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v1.z, g.v1.w, g.v2, x); }

// Block b of the row at vec4 `row16`: an even block is words 0..5 of the 2 vec4 from the one it
// starts in, an odd one words 2..7.
fn block_values_wide(row16: u32, b: u32) -> Vec4x8 {
    let v0 = load16(row16 + (3u * b) / 2u);
    let v1 = load16(row16 + (3u * b) / 2u + 1u);
    let odd = (b & 1u) == 1u;
    return values_of(select(v0.x, v0.z, odd), select(v0.y, v0.w, odd), select(vec4<u32>(v0.zw, v1.xy), v1, odd));
}

// The 32 quants of a block (0..31) from its fifth bits and quant bytes, unscaled.
fn quants5(qh: u32, q: vec4<u32>) -> Vec4x8 {
    return Vec4x8(vec4<f32>(vec4<u32>(nibbles_lo(q.x)) | bits4_x16(qh, 0u)), vec4<f32>(vec4<u32>(nibbles_lo(q.y)) | bits4_x16(qh, 4u)),
                  vec4<f32>(vec4<u32>(nibbles_lo(q.z)) | bits4_x16(qh, 8u)), vec4<f32>(vec4<u32>(nibbles_lo(q.w)) | bits4_x16(qh, 12u)),
                  vec4<f32>(vec4<u32>(nibbles_hi(q.x)) | bits4_x16(qh, 16u)), vec4<f32>(vec4<u32>(nibbles_hi(q.y)) | bits4_x16(qh, 20u)),
                  vec4<f32>(vec4<u32>(nibbles_hi(q.z)) | bits4_x16(qh, 24u)), vec4<f32>(vec4<u32>(nibbles_hi(q.w)) | bits4_x16(qh, 28u)));
}
