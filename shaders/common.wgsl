//! Byte and half loaders over `weights: array<u32>`, the raw GGUF bytes of a tensor, which every
//! kernel that reads a quantized tensor declares. No shader-f16 needed: halves go through
//! unpack2x16float.

// The 4 bytes at any byte offset, little-endian. WORD_ALIGNED (put first by compose.rs's
// Module::quant): every call is at a multiple of 4 (the GPU family, whose stored blocks keep their
// words aligned: kernels::block_pad), so the shifting path is compiled out.
fn load_u32(byte: u32) -> u32 {
    let w = byte >> 2u;
    let s = (byte & 3u) * 8u;
    if (WORD_ALIGNED || s == 0u) {
        return weights[w];
    }
    return (weights[w] >> s) | (weights[w + 1u] << (32u - s));
}

// The byte at a byte offset.
fn load_u8(byte: u32) -> u32 {
    return (weights[byte >> 2u] >> ((byte & 3u) * 8u)) & 0xffu;
}

// The 16 bits at an even byte offset.
fn load_u16(byte: u32) -> u32 {
    return (weights[byte >> 2u] >> ((byte & 2u) * 8u)) & 0xffffu;
}

// The IEEE half at an even byte offset, as f32.
fn load_f16(byte: u32) -> f32 {
    return unpack2x16float(load_u16(byte)).x;
}

// Byte b (0..3) of a word as a signed value.
fn i8_of(word: u32, b: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * b)) >> 24u);
}

// Rows beyond 65535 workgroups go to the y dimension: the flat workgroup index.
fn flat_workgroup(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.y * nwg.x + wid.x;
}

// The low and high nibbles of the four bytes of a word, as four values each.
fn nibbles_lo(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xfu));
}
fn nibbles_hi(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(q >> 4u, q >> 12u, q >> 20u, q >> 28u) & vec4<u32>(0xfu));
}

// The four bytes of a word as signed values.
fn bytes_i8(q: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(q << 24u), bitcast<i32>(q << 16u), bitcast<i32>(q << 8u), bitcast<i32>(q)) >> vec4<u32>(24u));
}

// Bits k..k+3 of a word, each as 0 or 16 (the fifth bit of four 5-bit quants).
fn bits4_x16(h: u32, k: u32) -> vec4<u32> {
    return ((vec4<u32>(h) >> (vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u))) & vec4<u32>(1u)) << vec4<u32>(4u);
}

// The 6-bit scale (x) and min (y) of sub-block j of the 12 scale bytes at `at` (Q4_K, Q5_K; ggml's
// get_scale_min_k4).
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    // Bytes j & 3 of the three scale words (at is word-aligned: the blocks are 144 and 176 bytes),
    // both cases decoded and one selected: lanes of one subgroup read different sub-blocks, and a
    // branch on j would run both sides for all of them.
    let s = (j & 3u) * 8u;
    let b0 = (load_u32(at) >> s) & 0xffu;
    let b1 = (load_u32(at + 4u) >> s) & 0xffu;
    let b2 = (load_u32(at + 8u) >> s) & 0xffu;
    let low = vec2<f32>(f32(b0 & 63u), f32(b1 & 63u));
    let high = vec2<f32>(f32((b2 & 0xfu) | ((b0 >> 6u) << 4u)), f32((b2 >> 4u) | ((b1 >> 6u) << 4u)));
    return select(low, high, j >= 4u);
}

// Sub-blocks j and j + 1 (j even) of a Q4_K / Q5_K scale array at `at`: (scale j, min j, scale j+1,
// min j+1), the three words loaded once.
fn scale_min_k4_pair(at: u32, j: u32) -> vec4<f32> {
    let w = vec3<u32>(load_u32(at), load_u32(at + 4u), load_u32(at + 8u));
    let s = (j & 3u) * 8u;
    let b0 = (vec2<u32>(w.x) >> vec2<u32>(s, s + 8u)) & vec2<u32>(0xffu);
    let b1 = (vec2<u32>(w.y) >> vec2<u32>(s, s + 8u)) & vec2<u32>(0xffu);
    let b2 = (vec2<u32>(w.z) >> vec2<u32>(s, s + 8u)) & vec2<u32>(0xffu);
    let low = vec4<f32>(vec4<u32>(b0.x, b1.x, b0.y, b1.y) & vec4<u32>(63u));
    let high = vec4<f32>(
        (vec4<u32>(b2.x, b2.x >> 4u, b2.y, b2.y >> 4u) & vec4<u32>(0xfu))
            | ((vec4<u32>(b0.x, b1.x, b0.y, b1.y) >> vec4<u32>(6u)) << vec4<u32>(4u))
    );
    return select(low, high, j >= 4u);
}

// Bits s and s+1 of each byte of a word (0..3 each).
fn bits2(h: u32, s: u32) -> vec4<u32> {
    return (vec4<u32>(h, h >> 8u, h >> 16u, h >> 24u) >> vec4<u32>(s)) & vec4<u32>(3u);
}

// Bit s of each byte of a word, times 16.
fn bit_x16(h: u32, s: u32) -> vec4<u32> {
    return ((vec4<u32>(h, h >> 8u, h >> 16u, h >> 24u) >> vec4<u32>(s)) & vec4<u32>(1u)) << vec4<u32>(4u);
}


// The dot of row `row` (of `row_bytes` bytes, `cols` values) with the kernel's activations (act4),
// over the row's blocks first, first + stride, ... (block_dot comes from the quant file).
fn row_dot(row: u32, first: u32, stride: u32, cols: u32, row_bytes: u32) -> f32 {
    let n_blocks = cols / BLOCK_ELEMS;
    let base = row * row_bytes;
    var acc = 0.0;
    for (var b = first; b < n_blocks; b += stride) {
        acc += block_dot(base + b * BLOCK_BYTES, b * BLOCK_ELEMS);
    }
    return acc;
}

// The four bytes of a word, as four values.
fn bytes_u8(q: u32) -> vec4<u32> {
    return vec4<u32>(q, q >> 8u, q >> 16u, q >> 24u) & vec4<u32>(0xffu);
}

// Eight consecutive values of a row, as each quant file's quant8 reads them: value k is
// d * q[k] + m (q0 holds values 0..3, q1 values 4..7), d and m shared by the eight.
struct Q8 {
    q0: vec4<f32>,
    q1: vec4<f32>,
    d: f32,
    m: f32,
}

// Sixteen values of a row from the same quant words, as the paired types' quant16 reads them
// (row_walk_pairs.wgsl): a holds values i .. i+7 and b values i+PAIR .. i+PAIR+7.
struct Q16 {
    a: Q8,
    b: Q8,
}

// Values i .. i+7 of the block at blk (i a multiple of 8), dequantized.
fn dequant8(blk: u32, i: u32) -> array<vec4<f32>, 2> {
    let v = quant8(blk, i);
    return array<vec4<f32>, 2>(v.d * v.q0 + v.m, v.d * v.q1 + v.m);
}

// The dot of eight values (quant8) with activations x0, x1 whose sum is xsum: the scale and offset
// applied once to the quants' dot, not to each value.
fn q8_dot(v: Q8, x0: vec4<f32>, x1: vec4<f32>, xsum: f32) -> f32 {
    return v.d * (dot(v.q0, x0) + dot(v.q1, x1)) + v.m * xsum;
}
