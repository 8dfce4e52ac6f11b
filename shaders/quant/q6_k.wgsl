//! Q6_K { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: f16 } (210 bytes and BLOCK_PAD
//! zero bytes where the layout pads blocks: kernels::block_pad; 256 values): in half n,
//! values l, l+32, l+64, l+96 are the low nibble of ql[64n+l], low of ql[64n+32+l], high of ql[64n+l],
//! high of ql[64n+32+l], with bits 0-1, 2-3, 4-5, 6-7 of qh[32n+l] above them, minus 32, times
//! d * scales[8n + l/16 + 2g].
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 210u + BLOCK_PAD;

fn scale_i8(at: u32) -> f32 {
    return f32(bitcast<i32>(load_u8(at) << 24u) >> 24u);
}

fn block_dot(blk: u32, xi: u32) -> f32 {
    var acc = 0.0;
    for (var n = 0u; n < 2u; n++) {
        for (var k = 0u; k < 8u; k++) {
            let a = load_u32(blk + 64u * n + 4u * k);
            let b = load_u32(blk + 64u * n + 32u + 4u * k);
            let h = load_u32(blk + 128u + 32u * n + 4u * k);
            let sc = blk + 192u + 8u * n + k / 4u;
            let base = xi + 128u * n + 4u * k;
            let q1 = vec4<f32>(vec4<u32>(nibbles_lo(a)) | (bits2(h, 0u) << vec4<u32>(4u))) - 32.0;
            let q2 = vec4<f32>(vec4<u32>(nibbles_lo(b)) | (bits2(h, 2u) << vec4<u32>(4u))) - 32.0;
            let q3 = vec4<f32>(vec4<u32>(nibbles_hi(a)) | (bits2(h, 4u) << vec4<u32>(4u))) - 32.0;
            let q4 = vec4<f32>(vec4<u32>(nibbles_hi(b)) | (bits2(h, 6u) << vec4<u32>(4u))) - 32.0;
            acc += scale_i8(sc) * dot(q1, act4(base)) + scale_i8(sc + 2u) * dot(q2, act4(base + 32u))
                 + scale_i8(sc + 4u) * dot(q3, act4(base + 64u)) + scale_i8(sc + 6u) * dot(q4, act4(base + 96u));
        }
    }
    return load_f16(blk + 208u) * acc;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let n = i / 128u;
    let r = i % 128u;
    let g = r / 32u;
    let l = r % 32u;
    let byte = load_u8(blk + 64u * n + 32u * (g % 2u) + l);
    let nib = select(byte & 0xfu, byte >> 4u, g >= 2u);
    let hb = (load_u8(blk + 128u + 32u * n + l) >> (2u * g)) & 3u;
    let q = f32(nib | (hb << 4u)) - 32.0;
    return load_f16(blk + 208u) * scale_i8(blk + 192u + 8u * n + l / 16u + 2u * g) * q;
}

// Values i .. i+7 (i a multiple of 8): 8 low-nibble bytes, 8 high-bit bytes; d * scale, -32 d * scale.
fn quant8(blk: u32, i: u32) -> Q8 {
    let n = i / 128u;
    let r = i % 128u;
    let g = r / 32u;
    let l = r % 32u;
    let s = load_f16(blk + 208u) * scale_i8(blk + 192u + 8u * n + l / 16u + 2u * g);
    let at = blk + 64u * n + 32u * (g % 2u) + l;
    let h = blk + 128u + 32u * n + l;
    let shift = select(0u, 4u, g >= 2u);
    var q: array<vec4<f32>, 2>;
    for (var k = 0u; k < 2u; k++) {
        let lo = bytes_u8(load_u32(at + 4u * k) >> shift) & vec4<u32>(0xfu);
        q[k] = vec4<f32>(lo | (bits2(load_u32(h + 4u * k), 2u * g) << vec4<u32>(4u)));
    }
    return Q8(q[0], q[1], s, -32.0 * s);
}

// Values i .. i+7 and i+64 .. i+71 (i % 128 < 64): both nibbles of 8 low-nibble bytes and bit
// pairs 2g, 2g+4 of 8 high-bit bytes (groups g and g+2 of 32); each one's d * scale, -32 d * scale.
const PAIR: u32 = 64u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let n = i / 128u;
    let r = i % 128u;
    let g = r / 32u;
    let l = r % 32u;
    let d = load_f16(blk + 208u);
    let sc = blk + 192u + 8u * n + l / 16u + 2u * g;
    let s0 = d * scale_i8(sc);
    let s1 = d * scale_i8(sc + 4u);
    let at = blk + 64u * n + 32u * g + l;
    let h = blk + 128u + 32u * n + l;
    var lo: array<vec4<f32>, 2>;
    var hi: array<vec4<f32>, 2>;
    for (var k = 0u; k < 2u; k++) {
        let q = load_u32(at + 4u * k);
        let qh = load_u32(h + 4u * k);
        lo[k] = vec4<f32>((bytes_u8(q) & vec4<u32>(0xfu)) | (bits2(qh, 2u * g) << vec4<u32>(4u)));
        hi[k] = vec4<f32>((bytes_u8(q >> 4u) & vec4<u32>(0xfu)) | (bits2(qh, 2u * g + 4u) << vec4<u32>(4u)));
    }
    return Q16(Q8(lo[0], lo[1], s0, -32.0 * s0), Q8(hi[0], hi[1], s1, -32.0 * s1));
}
