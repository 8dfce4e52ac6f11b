//! The row walk's lanes and steps for the types without quant16 (see row_walk.wgsl; F32, F16,
//! BF16, Q8_0): lane l dots values 8c .. 8c+7 for c = l, l + WG, ... (4 lanes per 32-value
//! block).

// Lane lid's share of the dots of the rows starting at byte offsets `rows` with act_of over `cols`
// values (slots 0 .. ROWS-1), and of the sum of squares of raw4 (slot ROWS).
fn walk_rows(rows: array<u32, ROWS>, lid: u32, cols: u32) -> array<f32, RED> {
    var acc: array<f32, RED>;
    let chunks = cols / 8u;
    for (var c = lid; c < chunks; c += WG) {
        let k = 8u * c;
        let r0 = raw4(k);
        let r1 = raw4(k + 4u);
        let x0 = act_of(r0, k);
        let x1 = act_of(r1, k + 4u);
        let xsum = dot(x0 + x1, vec4<f32>(1.0));
        acc[ROWS] += dot(r0, r0) + dot(r1, r1);
        let at = (k / BLOCK_ELEMS) * BLOCK_BYTES;
        let i = k % BLOCK_ELEMS;
        for (var r = 0u; r < ROWS; r++) {
            acc[r] += q8_dot(quant8(rows[r] + at, i), x0, x1, xsum);
        }
    }
    // Rows of 8k + 4 values (F32, F16, BF16 only): lane 0 takes the last four.
    if (lid == 0u && cols % 8u != 0u) {
        let k = cols - 4u;
        let r0 = raw4(k);
        let x0 = act_of(r0, k);
        acc[ROWS] += dot(r0, r0);
        let at = (k / BLOCK_ELEMS) * BLOCK_BYTES;
        for (var r = 0u; r < ROWS; r++) {
            let b = rows[r] + at;
            acc[r] += dot(vec4<f32>(dequant_at(b, 0u), dequant_at(b, 1u), dequant_at(b, 2u), dequant_at(b, 3u)), x0);
        }
    }
    return acc;
}
