//! Q3_K { hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12] (sixteen 6-bit scales), d: f16 } (110 bytes and
//! BLOCK_PAD zero bytes where the layout pads blocks: kernels::block_pad;
//! 256 values): value 128n + 32j + 16s + l is bits 2j..2j+1 of qs[32n + 16s + l], minus 4 unless bit
//! 4n + j of hmask[16s + l] is set; x = d * (scale(8n + 2j + s) - 32) * q.
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 110u + BLOCK_PAD;

// Scale i: low 4 bits from the low (i < 8) or high nibble of byte i % 8, top 2 from byte 8 + i % 4.
fn q3k_scale(at: u32, i: u32) -> f32 {
    let low = select(load_u8(at + i) & 0xfu, load_u8(at + i - 8u) >> 4u, i >= 8u);
    let high = (load_u8(at + 8u + i % 4u) >> (2u * (i / 4u))) & 3u;
    return f32(i32(low | (high << 4u)) - 32);
}

fn block_dot(blk: u32, xi: u32) -> f32 {
    var acc = 0.0;
    for (var n = 0u; n < 2u; n++) {
        for (var j = 0u; j < 4u; j++) {
            for (var s = 0u; s < 2u; s++) {
                var sum = 0.0;
                for (var k = 0u; k < 4u; k++) {
                    let q = load_u32(blk + 32u + 32u * n + 16u * s + 4u * k);
                    let hm = load_u32(blk + 16u * s + 4u * k);
                    let hb = (vec4<u32>(hm, hm >> 8u, hm >> 16u, hm >> 24u) >> vec4<u32>(4u * n + j)) & vec4<u32>(1u);
                    let qv = vec4<f32>(bits2(q, 2u * j)) - 4.0 + 4.0 * vec4<f32>(hb);
                    sum += dot(qv, act4(xi + 128u * n + 32u * j + 16u * s + 4u * k));
                }
                acc += q3k_scale(blk + 96u, 8u * n + 2u * j + s) * sum;
            }
        }
    }
    return load_f16(blk + 108u) * acc;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let l = i % 16u;
    let q = f32((load_u8(blk + 32u + 32u * n + 16u * s + l) >> (2u * j)) & 3u);
    let high = (load_u8(blk + 16u * s + l) >> (4u * n + j)) & 1u;
    return load_f16(blk + 108u) * q3k_scale(blk + 96u, 8u * n + 2u * j + s) * (q - select(4.0, 0.0, high == 1u));
}

// Values i .. i+7 (i a multiple of 8, inside one 16-value group): bit pair 2j of 8 consecutive quant
// bytes plus 4 where hmask's bit 4n + j is set; d * scale, -4 d * scale.
fn quant8(blk: u32, i: u32) -> Q8 {
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let l = i % 16u;
    let d = load_f16(blk + 108u) * q3k_scale(blk + 96u, 8u * n + 2u * j + s);
    let at = blk + 32u + 32u * n + 16u * s + l;
    let h = blk + 16u * s + l;
    let q0 = bits2(load_u32(at), 2u * j) + (bit_x16(load_u32(h), 4u * n + j) >> vec4<u32>(2u));
    let q1 = bits2(load_u32(at + 4u), 2u * j) + (bit_x16(load_u32(h + 4u), 4u * n + j) >> vec4<u32>(2u));
    return Q8(vec4<f32>(q0), vec4<f32>(q1), d, -4.0 * d);
}

// Values i .. i+7 and i+64 .. i+71 (i % 128 < 64: j 0 or 1, and j + 2): bit pairs 2j and 2j+4 of 8
// quant bytes, bits 4n+j and 4n+j+2 of 8 hmask bytes; each one's d * scale, -4 d * scale.
const PAIR: u32 = 64u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let l = i % 16u;
    let d = load_f16(blk + 108u);
    let da = d * q3k_scale(blk + 96u, 8u * n + 2u * j + s);
    let db = d * q3k_scale(blk + 96u, 8u * n + 2u * j + 4u + s);
    let at = blk + 32u + 32u * n + 16u * s + l;
    let h = blk + 16u * s + l;
    let q = vec2<u32>(load_u32(at), load_u32(at + 4u));
    let m = vec2<u32>(load_u32(h), load_u32(h + 4u));
    let hb = 4u * n + j;
    let a0 = bits2(q.x, 2u * j) + (bit_x16(m.x, hb) >> vec4<u32>(2u));
    let a1 = bits2(q.y, 2u * j) + (bit_x16(m.y, hb) >> vec4<u32>(2u));
    let b0 = bits2(q.x, 2u * j + 4u) + (bit_x16(m.x, hb + 2u) >> vec4<u32>(2u));
    let b1 = bits2(q.y, 2u * j + 4u) + (bit_x16(m.y, hb + 2u) >> vec4<u32>(2u));
    return Q16(Q8(vec4<f32>(a0), vec4<f32>(a1), da, -4.0 * da), Q8(vec4<f32>(b0), vec4<f32>(b1), db, -4.0 * db));
}
