//! The row walk's lanes and steps for the paired types (quant16; see row_walk.wgsl): lane l dots
//! values k .. k+7 and k+PAIR .. k+PAIR+7 from the same 8 quant bytes, step j = l, l + WG, ...
//! taking the j-th such run in row order (2 lanes per 32-value Q4_0 block, 16 per 256-value Q4_K
//! superblock, as llama.cpp's mul_mat_vec_q4_k), so each quant word is loaded once (twice for
//! Q2_K and Q3_K, whose bytes hold four runs).

// As row_walk_8.wgsl's walk_rows, over pairs of runs: rows of a multiple of 2 * PAIR values.
fn walk_rows(rows: array<u32, ROWS>, lid: u32, cols: u32) -> array<f32, RED> {
    var acc: array<f32, RED>;
    let runs = PAIR / 8u; // lanes a stretch of 2 * PAIR values takes
    let steps = cols / 16u;
    for (var j = lid; j < steps; j += WG) {
        let k = (j / runs) * 2u * PAIR + 8u * (j % runs);
        let r0 = raw4(k);
        let r1 = raw4(k + 4u);
        let r2 = raw4(k + PAIR);
        let r3 = raw4(k + PAIR + 4u);
        let x0 = act_of(r0, k);
        let x1 = act_of(r1, k + 4u);
        let x2 = act_of(r2, k + PAIR);
        let x3 = act_of(r3, k + PAIR + 4u);
        let one = vec4<f32>(1.0);
        let sum_a = dot(x0 + x1, one);
        let sum_b = dot(x2 + x3, one);
        acc[ROWS] += dot(r0, r0) + dot(r1, r1) + dot(r2, r2) + dot(r3, r3);
        let at = (k / BLOCK_ELEMS) * BLOCK_BYTES;
        let i = k % BLOCK_ELEMS;
        for (var r = 0u; r < ROWS; r++) {
            let q = quant16(rows[r] + at, i);
            acc[r] += q8_dot(q.a, x0, x1, sum_a) + q8_dot(q.b, x2, x3, sum_b);
        }
    }
    return acc;
}
