//! Q5_0 { d: f16, qh: u32 (bit j = 5th bit of x[j]), qs: [u8; 16] } (22 bytes):
//! x[j] = d * (((qs[j] & 0xF) | qh_j << 4) - 16), x[j+16] = d * (((qs[j] >> 4) | qh_{j+16} << 4) - 16).
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let d = load_f16(blk);
    let qh = load_u32(blk + 2u);
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + 6u + 4u * k);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * k + b;
            let lo = ((q >> (8u * b)) & 0xfu) | (((qh >> j) & 1u) << 4u);
            let hi = ((q >> (8u * b + 4u)) & 0xfu) | (((qh >> (j + 16u)) & 1u) << 4u);
            s += (f32(lo) - 16.0) * act(xi + j) + (f32(hi) - 16.0) * act(xi + j + 16u);
        }
    }
    return d * s;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let qh = load_u32(blk + 2u);
    let byte = load_u8(blk + 6u + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u) | (((qh >> i) & 1u) << 4u);
    return load_f16(blk) * (f32(q) - 16.0);
}
