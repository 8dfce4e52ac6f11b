//! Q4_1 from 16-byte loads, for matvec_wide and matmul_wide (composed after quant/q4_1.wgsl).
// 4 blocks (80 bytes) are 5 aligned vec4 loads; block j's words are 5j .. 5j+4.
const GROUP_BLOCKS: u32 = 4u;
const GROUP_VEC4: u32 = 5u;

// A block's 32 values from its words: dm (d, m as halves) and the 16 quant bytes.
fn values_of(dm_word: u32, q: vec4<u32>) -> Vec4x8 {
    let dm = unpack2x16float(dm_word);
    let m = vec4<f32>(dm.y);
    return Vec4x8(dm.x * nibbles_lo(q.x) + m, dm.x * nibbles_lo(q.y) + m, dm.x * nibbles_lo(q.z) + m, dm.x * nibbles_lo(q.w) + m,
                  dm.x * nibbles_hi(q.x) + m, dm.x * nibbles_hi(q.y) + m, dm.x * nibbles_hi(q.z) + m, dm.x * nibbles_hi(q.w) + m);
}

// A block's dot with activations x, as d * (q . x) + m * sum(x): the offset applied once per block
// rather than to each value (12% off a matvec on lavapipe).
fn block_dot_wide(dm_word: u32, q: vec4<u32>, x: Vec4x8) -> f32 {
    let dm = unpack2x16float(dm_word);
    let qx = dot(nibbles_lo(q.x), x.a0) + dot(nibbles_lo(q.y), x.a1) + dot(nibbles_lo(q.z), x.a2) + dot(nibbles_lo(q.w), x.a3)
        + dot(nibbles_hi(q.x), x.a4) + dot(nibbles_hi(q.y), x.a5) + dot(nibbles_hi(q.z), x.a6) + dot(nibbles_hi(q.w), x.a7);
    let sum = dot((x.a0 + x.a1) + (x.a2 + x.a3) + (x.a4 + x.a5) + (x.a6 + x.a7), vec4<f32>(1.0));
    return dm.x * qx + dm.y * sum;
}
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
