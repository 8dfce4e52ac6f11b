//! Q4_1 { d: f16, m: f16, qs: [u8; 16] } (20 bytes): x[j] = d * (qs[j] & 0xF) + m, x[j+16] = d * (qs[j] >> 4) + m.
const BLOCK_ELEMS: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn block_dot(blk: u32, xi: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    var sum_qx = 0.0;
    var sum_x = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let q = load_u32(blk + 4u + 4u * k);
        for (var b = 0u; b < 4u; b++) {
            let j = 4u * k + b;
            let x0 = act(xi + j);
            let x1 = act(xi + j + 16u);
            sum_qx += f32((q >> (8u * b)) & 0xfu) * x0 + f32((q >> (8u * b + 4u)) & 0xfu) * x1;
            sum_x += x0 + x1;
        }
    }
    return dm.x * sum_qx + dm.y * sum_x;
}

fn dequant_at(blk: u32, i: u32) -> f32 {
    let dm = unpack2x16float(load_u32(blk));
    let byte = load_u8(blk + 4u + (i % 16u));
    let q = select(byte & 0xfu, byte >> 4u, i >= 16u);
    return dm.x * f32(q) + dm.y;
}
