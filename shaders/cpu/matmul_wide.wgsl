//! matmul_wide: out[t, r] (+)= dot(W[r], x[t]) on CPU adapters, 8 weight rows per thread (rows
//! lid, lid + 8, ..., lid + 56 of the workgroup's 64) against RT tokens (`const RT: u32 = ...;`
//! composed before it by kernels::cpu::matmul): each block of the rows
//! dequantized once from 16-byte loads (block_values_wide), then applied to every token, the
//! tokens' activations loaded through block_acts (one load per invocation per token and block with
//! subgroups) once for the 8 rows: on lavapipe loading and broadcasting activations cost more than
//! the dot products (BENCH.md: 8 rows per thread against 1 and 4). The
//! 8 rows are 8 named values, not an array (an array indexed at run time is memory there); a
//! workgroup is one subgroup of 8, so a matrix's last workgroup computes at most 63 rows for nothing.
//! Needs rows padded to 16 bytes.
//! Composed after common.wgsl, quant/<type>.wgsl, cpu/quant/wide_<type>.wgsl, wide.wgsl, matmul_io.wgsl
//! and acts_plain.wgsl or acts_subgroup.wgsl (Layout::lanes_of_8), and wide_texture.wgsl or
//! wide_buffer.wgsl (where the weights are: load16).

// Activations i .. i+3 of x, i counted from x's start (a multiple of 4).
fn act4(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    acts_init(lid);
    let range = token_range();
    let t0 = wid.y * RT;
    if (t0 >= range.y) {
        return; // the whole workgroup
    }
    let row0 = wid.x * 64u + lid;
    let nt = min(RT, range.y - t0);
    let stride16 = p.row_bytes / 16u;
    let base0 = (p.w_row0 + min(row0, p.rows - 1u)) * stride16;
    let base1 = (p.w_row0 + min(row0 + 8u, p.rows - 1u)) * stride16;
    let base2 = (p.w_row0 + min(row0 + 16u, p.rows - 1u)) * stride16;
    let base3 = (p.w_row0 + min(row0 + 24u, p.rows - 1u)) * stride16;
    let base4 = (p.w_row0 + min(row0 + 32u, p.rows - 1u)) * stride16;
    let base5 = (p.w_row0 + min(row0 + 40u, p.rows - 1u)) * stride16;
    let base6 = (p.w_row0 + min(row0 + 48u, p.rows - 1u)) * stride16;
    let base7 = (p.w_row0 + min(row0 + 56u, p.rows - 1u)) * stride16;
    let x0 = (range.x + t0) * p.x_stride;
    var acc: array<vec4<f32>, RT>;
    var acc2: array<vec4<f32>, RT>;
    for (var b = 0u; b < p.cols / WIDE_ELEMS; b++) {
        let w0 = block_values_wide(base0, b);
        let w1 = block_values_wide(base1, b);
        let w2 = block_values_wide(base2, b);
        let w3 = block_values_wide(base3, b);
        let w4 = block_values_wide(base4, b);
        let w5 = block_values_wide(base5, b);
        let w6 = block_values_wide(base6, b);
        let w7 = block_values_wide(base7, b);
        for (var t = 0u; t < nt; t++) {
            let a = block_acts(x0 + t * p.x_stride + b * WIDE_ELEMS);
            acc[t] += vec4<f32>(dot8(w0, a), dot8(w1, a), dot8(w2, a), dot8(w3, a));
            acc2[t] += vec4<f32>(dot8(w4, a), dot8(w5, a), dot8(w6, a), dot8(w7, a));
        }
    }
    for (var k = 0u; k < 4u; k++) {
        let row = row0 + 8u * k;
        if (row < p.rows) {
            for (var t = 0u; t < nt; t++) {
                store(t0 + t, row, acc[t][k]);
            }
        }
        if (row + 32u < p.rows) {
            for (var t = 0u; t < nt; t++) {
                store(t0 + t, row + 32u, acc2[t][k]);
            }
        }
    }
}
