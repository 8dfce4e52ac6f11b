//! Q2_K { scales: [u8; 16] (low nibble scale, high nibble min), qs: [u8; 64], d: f16, dmin: f16 } (84
//! bytes, 256 values): value 128n + 32j + 16s + l is bits 2j..2j+1 of qs[32n + 16s + l] with scale byte
//! 8n + 2j + s; x = d * (sc & 0xF) * q - dmin * (sc >> 4).
const BLOCK_ELEMS: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk + 80u));
    var acc = 0.0;
    for (var n = 0u; n < 2u; n++) {
        for (var j = 0u; j < 4u; j++) {
            for (var s = 0u; s < 2u; s++) {
                let sc = load_u8(blk + 8u * n + 2u * j + s);
                var sum = 0.0;
                var xs = vec4<f32>(0.0);
                for (var k = 0u; k < 4u; k++) {
                    let q = load_u32(blk + 16u + 32u * n + 16u * s + 4u * k);
                    let xv = act4(xi + 128u * n + 32u * j + 16u * s + 4u * k);
                    sum += dot(vec4<f32>(bits2(q, 2u * j)), xv);
                    xs += xv;
                }
                acc += dm.x * f32(sc & 0xfu) * sum - dm.y * f32(sc >> 4u) * dot(xs, vec4<f32>(1.0));
            }
        }
    }
    return acc;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk + 80u));
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let l = i % 16u;
    let sc = load_u8(blk + 8u * n + 2u * j + s);
    let q = (load_u8(blk + 16u + 32u * n + 16u * s + l) >> (2u * j)) & 3u;
    return dm.x * f32(sc & 0xfu) * f32(q) - dm.y * f32(sc >> 4u);
}

// Values i .. i+7 (i a multiple of 8, inside one 16-value group): bit pair 2j of 8 consecutive quant
// bytes; d * scale, -dmin * min of the group's scale byte.
fn quant8(blk: u32, i: u32) -> Q8 {
    let dm = unpack2x16float(load_u32(blk + 80u));
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let sc = load_u8(blk + 8u * n + 2u * j + s);
    let at = blk + 16u + 32u * n + 16u * s + (i % 16u);
    return Q8(vec4<f32>(bits2(load_u32(at), 2u * j)), vec4<f32>(bits2(load_u32(at + 4u), 2u * j)),
              dm.x * f32(sc & 0xfu), -dm.y * f32(sc >> 4u));
}

// Values i .. i+7 and i+64 .. i+71 (i % 128 < 64: j 0 or 1, and j + 2): bit pairs 2j and 2j+4 of 8
// quant bytes; each one's d * scale, -dmin * min.
const PAIR: u32 = 64u;
fn quant16(blk: u32, i: u32) -> Q16 {
    let dm = unpack2x16float(load_u32(blk + 80u));
    let n = i / 128u;
    let j = (i % 128u) / 32u;
    let s = (i % 32u) / 16u;
    let sa = load_u8(blk + 8u * n + 2u * j + s);
    let sb = load_u8(blk + 8u * n + 2u * j + 4u + s);
    let at = blk + 16u + 32u * n + 16u * s + (i % 16u);
    let q = vec2<u32>(load_u32(at), load_u32(at + 4u));
    return Q16(
        Q8(vec4<f32>(bits2(q.x, 2u * j)), vec4<f32>(bits2(q.y, 2u * j)), dm.x * f32(sa & 0xfu), -dm.y * f32(sa >> 4u)),
        Q8(vec4<f32>(bits2(q.x, 2u * j + 4u)), vec4<f32>(bits2(q.y, 2u * j + 4u)), dm.x * f32(sb & 0xfu), -dm.y * f32(sb >> 4u))
    );
}
