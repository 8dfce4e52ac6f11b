//! Q8_0 from 16-byte loads, for matvec_wide and matmul_wide (composed after quant/q8_0.wgsl).
// 8 blocks (272 bytes) are 17 aligned vec4 loads. An even block starts on a word (its
// d the low half, its quants 2 bytes into the word: shifted into place); an odd block's d is the high
// half of the word before its quants, which start on a word.
const WIDE_ELEMS: u32 = BLOCK_ELEMS; // values a block_dot_wide or block_values_wide covers
const GROUP_BLOCKS: u32 = 8u;
const GROUP_VEC4: u32 = 17u;

// A block's 32 values from its scale and its 32 quant bytes as 8 words (lo: words 0..3, hi: 4..7).
fn values_of(d: f32, lo: vec4<u32>, hi: vec4<u32>) -> Vec4x8 {
    return Vec4x8(d * bytes_i8(lo.x), d * bytes_i8(lo.y), d * bytes_i8(lo.z), d * bytes_i8(lo.w),
                  d * bytes_i8(hi.x), d * bytes_i8(hi.y), d * bytes_i8(hi.z), d * bytes_i8(hi.w));
}

// A block's dot with activations x as d * (q . x): the scale applied once per block rather than to
// each value (5% off a matvec on lavapipe).
fn block_dot_wide(d: f32, lo: vec4<u32>, hi: vec4<u32>, x: Vec4x8) -> f32 {
    let q = dot(bytes_i8(lo.x), x.a0) + dot(bytes_i8(lo.y), x.a1) + dot(bytes_i8(lo.z), x.a2) + dot(bytes_i8(lo.w), x.a3)
        + dot(bytes_i8(hi.x), x.a4) + dot(bytes_i8(hi.y), x.a5) + dot(bytes_i8(hi.z), x.a6) + dot(bytes_i8(hi.w), x.a7);
    return d * q;
}

// The words that start 2 bytes into a (lo word by word, the next word's low half on top).
fn shift16(a: vec4<u32>, next: vec4<u32>) -> vec4<u32> {
    return (a >> vec4<u32>(16u)) | (next << vec4<u32>(16u));
}

// A group of blocks as loaded (GROUP_VEC4 vec4 loads), and block j of it dotted with activations x
// (matvec_wide calls group_block_0 .. group_block_7, gpu/compose.rs group_blocks writes the calls out).
// Block j covers words [17 j / 2, 17 (j + 1) / 2]; word n is v[n / 4][n % 4].
struct Group {
    v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, v4: vec4<u32>, v5: vec4<u32>, v6: vec4<u32>, v7: vec4<u32>,
    v8: vec4<u32>, v9: vec4<u32>, v10: vec4<u32>, v11: vec4<u32>, v12: vec4<u32>, v13: vec4<u32>, v14: vec4<u32>, v15: vec4<u32>,
    v16: vec4<u32>,
}
fn load_group(a: u32) -> Group {
    return Group(load16(a), load16(a + 1u), load16(a + 2u), load16(a + 3u), load16(a + 4u), load16(a + 5u), load16(a + 6u),
                 load16(a + 7u), load16(a + 8u), load16(a + 9u), load16(a + 10u), load16(a + 11u), load16(a + 12u),
                 load16(a + 13u), load16(a + 14u), load16(a + 15u), load16(a + 16u));
}
fn group_block_0(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v0.x).x, shift16(g.v0, vec4<u32>(g.v0.yzw, g.v1.x)), shift16(g.v1, vec4<u32>(g.v1.yzw, g.v2.x)), x);
}
fn group_block_1(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v2.x).y, vec4<u32>(g.v2.yzw, g.v3.x), vec4<u32>(g.v3.yzw, g.v4.x), x);
}
fn group_block_2(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v4.y).x, shift16(vec4<u32>(g.v4.yzw, g.v5.x), vec4<u32>(g.v4.zw, g.v5.xy)),
                          shift16(vec4<u32>(g.v5.yzw, g.v6.x), vec4<u32>(g.v5.zw, g.v6.xy)), x);
}
fn group_block_3(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v6.y).y, vec4<u32>(g.v6.zw, g.v7.xy), vec4<u32>(g.v7.zw, g.v8.xy), x);
}
fn group_block_4(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v8.z).x, shift16(vec4<u32>(g.v8.zw, g.v9.xy), vec4<u32>(g.v8.w, g.v9.xyz)),
                          shift16(vec4<u32>(g.v9.zw, g.v10.xy), vec4<u32>(g.v9.w, g.v10.xyz)), x);
}
fn group_block_5(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v10.z).y, vec4<u32>(g.v10.w, g.v11.xyz), vec4<u32>(g.v11.w, g.v12.xyz), x);
}
fn group_block_6(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v12.w).x, shift16(vec4<u32>(g.v12.w, g.v13.xyz), g.v13), shift16(vec4<u32>(g.v13.w, g.v14.xyz), g.v14), x);
}
fn group_block_7(g: Group, x: Vec4x8) -> f32 {
    return block_dot_wide(unpack2x16float(g.v14.w).y, g.v15, g.v16, x);
}

// Block b of the row at vec4 `row16`: its 9 words (d in the low or high half of the first) lie in
// the 3 vec4 from the one it starts in.
fn block_values_wide(row16: u32, b: u32) -> Vec4x8 {
    let at = b * BLOCK_BYTES;
    let v0 = load16(row16 + at / 16u);
    let v1 = load16(row16 + at / 16u + 1u);
    let v2 = load16(row16 + at / 16u + 2u);
    let w = (at % 16u) / 4u;
    let a = words_at(v0, v1, w);
    let b4 = words_at(v1, v2, w);
    let lo = vec4<u32>(a.yzw, b4.x);
    let hi = vec4<u32>(b4.yzw, v2[w]);
    let d = unpack2x16float(a.x);
    if ((at & 2u) != 0u) {
        return values_of(d.y, lo, hi);
    }
    return values_of(d.x, shift16(a, lo), shift16(b4, hi));
}
