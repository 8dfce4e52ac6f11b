//! Q4_1 group_dot for matvec_wide (composed after quant/q4_1.wgsl, before matvec_wide.wgsl).
// matvec_wide: 4 blocks (80 bytes) are 5 aligned vec4 loads; block j's words are 5j .. 5j+4.
const GROUP_BLOCKS: u32 = 4u;
const GROUP_VEC4: u32 = 5u;

// One block from its words: dm (d, m as halves) and the 16 quant bytes.
fn block_dot_words(dm_word: u32, q: vec4<u32>, xi: u32) -> f32 {
    let dm = unpack2x16float(dm_word);
    var sum_qx = 0.0;
    var sum_x = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let x0 = act4(xi + 4u * k);
        let x1 = act4(xi + 16u + 4u * k);
        sum_qx += dot(nibbles_lo(q[k]), x0) + dot(nibbles_hi(q[k]), x1);
        sum_x += x0 + x1;
    }
    return dm.x * sum_qx + dm.y * dot(sum_x, vec4<f32>(1.0));
}

fn group_dot(a: u32, xi: u32) -> f32 {
    let v0 = weights16[a];
    let v1 = weights16[a + 1u];
    let v2 = weights16[a + 2u];
    let v3 = weights16[a + 3u];
    let v4 = weights16[a + 4u];
    return block_dot_words(v0.x, vec4<u32>(v0.yzw, v1.x), xi)
        + block_dot_words(v1.y, vec4<u32>(v1.zw, v2.xy), xi + 32u)
        + block_dot_words(v2.z, vec4<u32>(v2.w, v3.xyz), xi + 64u)
        + block_dot_words(v3.w, v4, xi + 96u);
}

// Block b of the row at vec4 `row16`: its 5 words lie in the 2 vec4 from the one it starts in.
fn block_dot_wide(row16: u32, b: u32, xi: u32) -> f32 {
    let at = b * BLOCK_BYTES;
    let v0 = weights16[row16 + at / 16u];
    let v1 = weights16[row16 + at / 16u + 1u];
    let w = (at % 16u) / 4u;
    let first = words_at(v0, v1, w);
    return block_dot_words(first.x, vec4<u32>(first.yzw, v1[w]), xi);
}
