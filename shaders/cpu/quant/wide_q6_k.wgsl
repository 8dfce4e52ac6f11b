//! Q6_K from 16-byte loads, for matvec_wide, matmul_wide and embed_wide (composed after
//! quant/q6_k.wgsl). The CPU family pads its blocks to 224 bytes (kernels::cpu::block_pad): 14
//! aligned vec4, ql in 0..7, qh in 8..11, the 16 scales in 12, d the low half of 13's first word.
//! A wide block is the 32 values of group g of half n of a superblock (j = 4n + g): value l is the
//! low (g < 2) or high nibble of ql[64n + 32(g % 2) + l] with bits 2g, 2g + 1 of qh[32n + l] above
//! it, minus 32, times d * scales[8n + 2g + l / 16]. matvec_wide's group is one superblock.
const WIDE_ELEMS: u32 = 32u;
const GROUP_BLOCKS: u32 = 8u;
const GROUP_VEC4: u32 = 14u;

// Four values less their scale: the nibbles at `ns` (0 or 4) of a ql word's bytes, with the bit
// pairs at `hs` of a qh word's bytes above them, minus 32.
fn q6_4(ql: u32, qh: u32, ns: u32, hs: u32) -> vec4<f32> {
    let lo = (vec4<u32>(ql) >> vec4<u32>(ns, ns + 8u, ns + 16u, ns + 24u)) & vec4<u32>(0xfu);
    let hi = (vec4<u32>(qh) >> vec4<u32>(hs, hs + 8u, hs + 16u, hs + 24u)) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

// Wide block j's 32 values less their scales, from its two vec4 of ql (a, b) and of qh (h0, h1):
// nibbles at 4 (g / 2), bit pairs at 2g.
fn q6_32(a: vec4<u32>, b: vec4<u32>, h0: vec4<u32>, h1: vec4<u32>, j: u32) -> Vec4x8 {
    let ns = 4u * ((j % 4u) / 2u);
    let hs = 2u * (j % 4u);
    return Vec4x8(q6_4(a.x, h0.x, ns, hs), q6_4(a.y, h0.y, ns, hs), q6_4(a.z, h0.z, ns, hs), q6_4(a.w, h0.w, ns, hs),
                  q6_4(b.x, h1.x, ns, hs), q6_4(b.y, h1.y, ns, hs), q6_4(b.z, h1.z, ns, hs), q6_4(b.w, h1.w, ns, hs));
}

// d times wide block j's two signed scale bytes, 8n + 2g and the next, from the scales' vec4:
// values 0..15 and 16..31.
fn q6_scales(d: f32, sc: vec4<u32>, j: u32) -> vec2<f32> {
    let k = 8u * (j / 4u) + 2u * (j % 4u);
    let w = sc[k / 4u] >> (8u * (k % 4u));
    return d * vec2<f32>(f32(bitcast<i32>(w << 24u) >> 24u), f32(bitcast<i32>(w << 16u) >> 24u));
}

// Wide block (n, g) of a superblock's loads dotted with activations x, each scale applied once
// per 16 values.
fn q6_dot(v: Vec4x8, s: vec2<f32>, x: Vec4x8) -> f32 {
    let lo = dot(v.a0, x.a0) + dot(v.a1, x.a1) + dot(v.a2, x.a2) + dot(v.a3, x.a3);
    let hi = dot(v.a4, x.a4) + dot(v.a5, x.a5) + dot(v.a6, x.a6) + dot(v.a7, x.a7);
    return s.x * lo + s.y * hi;
}

// A superblock as loaded (GROUP_VEC4 vec4 loads), and wide block j of it dotted with activations
// x (matvec_wide calls group_block_0 .. group_block_7, gpu/compose.rs group_blocks writes the calls
// out): ql in v[4n + 2(g % 2)] and the next, qh in v[8 + 2n] and the next, the scales in v12.
struct Group {
    v0: vec4<u32>, v1: vec4<u32>, v2: vec4<u32>, v3: vec4<u32>, v4: vec4<u32>, v5: vec4<u32>, v6: vec4<u32>,
    v7: vec4<u32>, v8: vec4<u32>, v9: vec4<u32>, v10: vec4<u32>, v11: vec4<u32>, v12: vec4<u32>, v13: vec4<u32>,
}
fn load_group(a: u32) -> Group {
    return Group(load16(a), load16(a + 1u), load16(a + 2u), load16(a + 3u), load16(a + 4u), load16(a + 5u), load16(a + 6u),
                 load16(a + 7u), load16(a + 8u), load16(a + 9u), load16(a + 10u), load16(a + 11u), load16(a + 12u),
                 load16(a + 13u));
}
fn group_d(g: Group) -> f32 {
    return unpack2x16float(g.v13.x).x;
}
fn group_block_0(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v0, g.v1, g.v8, g.v9, 0u), q6_scales(group_d(g), g.v12, 0u), x); }
fn group_block_1(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v2, g.v3, g.v8, g.v9, 1u), q6_scales(group_d(g), g.v12, 1u), x); }
fn group_block_2(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v0, g.v1, g.v8, g.v9, 2u), q6_scales(group_d(g), g.v12, 2u), x); }
fn group_block_3(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v2, g.v3, g.v8, g.v9, 3u), q6_scales(group_d(g), g.v12, 3u), x); }
fn group_block_4(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v4, g.v5, g.v10, g.v11, 4u), q6_scales(group_d(g), g.v12, 4u), x); }
fn group_block_5(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v6, g.v7, g.v10, g.v11, 5u), q6_scales(group_d(g), g.v12, 5u), x); }
fn group_block_6(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v4, g.v5, g.v10, g.v11, 6u), q6_scales(group_d(g), g.v12, 6u), x); }
fn group_block_7(g: Group, x: Vec4x8) -> f32 { return q6_dot(q6_32(g.v6, g.v7, g.v10, g.v11, 7u), q6_scales(group_d(g), g.v12, 7u), x); }

// Wide block b of the row at vec4 `row16`, dequantized: wide block j = b % 8 of superblock b / 8.
fn block_values_wide(row16: u32, b: u32) -> Vec4x8 {
    let at = row16 + (b / 8u) * GROUP_VEC4;
    let j = b % 8u;
    let ql = at + 4u * (j / 4u) + 2u * (j % 2u);
    let qh = at + 8u + 2u * (j / 4u);
    let q = q6_32(load16(ql), load16(ql + 1u), load16(qh), load16(qh + 1u), j);
    let s = q6_scales(unpack2x16float(load16(at + 13u).x).x, load16(at + 12u), j);
    return Vec4x8(s.x * q.a0, s.x * q.a1, s.x * q.a2, s.x * q.a3, s.y * q.a4, s.y * q.a5, s.y * q.a6, s.y * q.a7);
}
