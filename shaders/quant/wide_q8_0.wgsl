//! Q8_0 from 16-byte loads, for matvec_wide and matmul_wide (composed after quant/q8_0.wgsl).
// 8 blocks (272 bytes) are 17 aligned vec4 loads. An even block starts on a word (its
// d the low half, its quants 2 bytes into the word: shifted into place); an odd block's d is the high
// half of the word before its quants, which start on a word.
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

// The dot of the group of blocks at vec4 `a` with activations xi .. xi + 255.
fn group_dot(a: u32, xi: u32) -> f32 {
    let v0 = load16(a);
    let v1 = load16(a + 1u);
    let v2 = load16(a + 2u);
    let v3 = load16(a + 3u);
    let v4 = load16(a + 4u);
    let v5 = load16(a + 5u);
    let v6 = load16(a + 6u);
    let v7 = load16(a + 7u);
    let v8 = load16(a + 8u);
    let v9 = load16(a + 9u);
    let v10 = load16(a + 10u);
    let v11 = load16(a + 11u);
    let v12 = load16(a + 12u);
    let v13 = load16(a + 13u);
    let v14 = load16(a + 14u);
    let v15 = load16(a + 15u);
    let v16 = load16(a + 16u);
    // Block j covers words [17 j / 2, 17 (j + 1) / 2]; word n is v[n / 4][n % 4].
    var s = block_dot_wide(unpack2x16float(v0.x).x, shift16(v0, vec4<u32>(v0.yzw, v1.x)), shift16(v1, vec4<u32>(v1.yzw, v2.x)), block_acts(xi));
    s += block_dot_wide(unpack2x16float(v2.x).y, vec4<u32>(v2.yzw, v3.x), vec4<u32>(v3.yzw, v4.x), block_acts(xi + 32u));
    s += block_dot_wide(unpack2x16float(v4.y).x, shift16(vec4<u32>(v4.yzw, v5.x), vec4<u32>(v4.zw, v5.xy)),
                         shift16(vec4<u32>(v5.yzw, v6.x), vec4<u32>(v5.zw, v6.xy)), block_acts(xi + 64u));
    s += block_dot_wide(unpack2x16float(v6.y).y, vec4<u32>(v6.zw, v7.xy), vec4<u32>(v7.zw, v8.xy), block_acts(xi + 96u));
    s += block_dot_wide(unpack2x16float(v8.z).x, shift16(vec4<u32>(v8.zw, v9.xy), vec4<u32>(v8.w, v9.xyz)),
                         shift16(vec4<u32>(v9.zw, v10.xy), vec4<u32>(v9.w, v10.xyz)), block_acts(xi + 128u));
    s += block_dot_wide(unpack2x16float(v10.z).y, vec4<u32>(v10.w, v11.xyz), vec4<u32>(v11.w, v12.xyz), block_acts(xi + 160u));
    s += block_dot_wide(unpack2x16float(v12.w).x, shift16(vec4<u32>(v12.w, v13.xyz), v13),
                         shift16(vec4<u32>(v13.w, v14.xyz), v14), block_acts(xi + 192u));
    s += block_dot_wide(unpack2x16float(v14.w).y, v15, v16, block_acts(xi + 224u));
    return s;
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
