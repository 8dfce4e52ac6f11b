//! Q4_K from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q4_k.wgsl). A 144-byte superblock is 9 aligned vec4: d, dmin and the 12 scale bytes in
//! v0, the 128 quant bytes in v1..v8. A wide block is sub-block j (32 values) of a superblock: the
//! low (j even) or high nibbles of quant bytes 32 (j / 2) .. +31 (v[1 + 2 (j / 2)] and the next),
//! times d * scale_j, less dmin * min_j. matvec_wide's group is one superblock.
const WIDE_ELEMS: u32 = 32u;
const GROUP_BLOCKS: u32 = 8u;
const GROUP_VEC4: u32 = 9u;

// Sub-block j's 32 quants (unscaled) from its two vec4 of quant bytes (nibbles at 4 (j % 2)).
fn quants4_k(a: vec4<u32>, b: vec4<u32>, j: u32) -> Vec4x8 {
    let s = 4u * (j % 2u);
    return Vec4x8(nibbles_at(a.x, s), nibbles_at(a.y, s), nibbles_at(a.z, s), nibbles_at(a.w, s),
                  nibbles_at(b.x, s), nibbles_at(b.y, s), nibbles_at(b.z, s), nibbles_at(b.w, s));
}

// A superblock as loaded (GROUP_VEC4 vec4 loads), and sub-block j of it dotted with activations x
// (matvec_wide calls group_block_0 .. group_block_7, gpu/compose.rs group_blocks writes the calls out).
struct Group {
    v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, v4: vec4<u32>, v5: vec4<u32>, v6: vec4<u32>,
    v7: vec4<u32>, v8: vec4<u32>,
}
fn load_group(a: u32) -> Group {
    return Group(load16(a), load16(a + 1u), load16(a + 2u), load16(a + 3u), load16(a + 4u), load16(a + 5u), load16(a + 6u),
                 load16(a + 7u), load16(a + 8u));
}
fn group_block_0(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 0u, quants4_k(g.v1, g.v2, 0u), x); }
fn group_block_1(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 1u, quants4_k(g.v1, g.v2, 1u), x); }
fn group_block_2(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 2u, quants4_k(g.v3, g.v4, 2u), x); }
fn group_block_3(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 3u, quants4_k(g.v3, g.v4, 3u), x); }
fn group_block_4(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 4u, quants4_k(g.v5, g.v6, 4u), x); }
fn group_block_5(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 5u, quants4_k(g.v5, g.v6, 5u), x); }
fn group_block_6(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 6u, quants4_k(g.v7, g.v8, 6u), x); }
fn group_block_7(g: Group, x: Vec4x8) -> f32 { return sub_dot_k(g.v0, 7u, quants4_k(g.v7, g.v8, 7u), x); }

// Wide block b of the row at vec4 `row16`, dequantized: sub-block b % 8 of superblock b / 8.
fn block_values_wide(row16: u32, b: u32) -> Vec4x8 {
    let at = row16 + (b / 8u) * GROUP_VEC4;
    let j = b % 8u;
    let q = at + 1u + 2u * (j / 2u);
    let sm = scale_min_k4_wide(load16(at), j);
    return scale_values_k(quants4_k(load16(q), load16(q + 1u), j), sm);
}
