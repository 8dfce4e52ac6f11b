//! The wide kernels' walk over 20-byte blocks (composed after cpu/quant/wide_<type>.wgsl for Q4_1,
//! and for Q4_0 as the CPU family pads it: kernels::cpu::block_pad): word 0 holds the
//! scales (the type's values_of and block_dot_wide read it), words 1..4 the 16 quant bytes.
//! 4 blocks (80 bytes) are 5 aligned vec4 loads; block j's words are 5j .. 5j+4.
const WIDE_ELEMS: u32 = BLOCK_ELEMS; // values a block_dot_wide or block_values_wide covers
const GROUP_BLOCKS: u32 = 4u;
const GROUP_VEC4: u32 = 5u;

// A group of blocks as loaded (GROUP_VEC4 vec4 loads), and block j of it dotted with activations x
// (matvec_wide calls group_block_0 .. group_block_3, gpu/compose.rs group_blocks writes the calls out).
struct Group { v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, v4: vec4<u32> }
fn load_group(a: u32) -> Group {
    return Group(load16(a), load16(a + 1u), load16(a + 2u), load16(a + 3u), load16(a + 4u));
}
fn group_block_0(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v0.x, vec4<u32>(g.v0.yzw, g.v1.x), x); }
fn group_block_1(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v1.y, vec4<u32>(g.v1.zw, g.v2.xy), x); }
fn group_block_2(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v2.z, vec4<u32>(g.v2.w, g.v3.xyz), x); }
fn group_block_3(g: Group, x: Vec4x8) -> f32 { return block_dot_wide(g.v3.w, g.v4, x); }

// Block b of the row at vec4 `row16`: its 5 words lie in the 2 vec4 from the one it starts in.
fn block_values_wide(row16: u32, b: u32) -> Vec4x8 {
    let at = b * BLOCK_BYTES;
    let v0 = load16(row16 + at / 16u);
    let v1 = load16(row16 + at / 16u + 1u);
    let w = (at % 16u) / 4u;
    let first = words_at(v0, v1, w);
    return values_of(first.x, vec4<u32>(first.yzw, v1[w]));
}
