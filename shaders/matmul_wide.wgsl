//! matmul_wide: out[t, r] (+)= dot(W[r], x[t]) on CPU adapters, a weight row per thread against
//! RT tokens: each block of the row dequantized once from 16-byte loads (block_values_wide), then
//! applied to every token, the tokens' activations loaded through block_acts (one load per
//! invocation per token and block with subgroups). Needs rows padded to 16 bytes.
//! Composed after common.wgsl, quant/<type>.wgsl, quant/wide_<type>.wgsl, wide.wgsl, matmul_io.wgsl
//! and acts_plain.wgsl or acts_subgroup.wgsl (Gpu::subgroup_acts), and wide_texture.wgsl or
//! wide_buffer.wgsl (where the weights are: load16).

// Activations i .. i+3 of x, i counted from x's start (a multiple of 4).
fn act4(i: u32) -> vec4<f32> {
    return x[i >> 2u];
}

const RT: u32 = 16u; // tokens per thread

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    acts_init();
    let range = token_range();
    let t0 = wid.y * RT;
    if (t0 >= range.y) {
        return; // the whole workgroup
    }
    // Invocations past the last row compute row p.rows - 1 again without storing it (with
    // subgroup activations every lane must take part); tokens past the batch repeat its last.
    let row = wid.x * 64u + lid;
    let r = min(row, p.rows - 1u);
    let nt = min(RT, range.y - t0);
    let base16 = (p.w_row0 + r) * (p.row_bytes / 16u);
    let x0 = (range.x + t0) * p.x_stride;
    var acc: array<f32, 16>;
    for (var b = 0u; b < p.cols / BLOCK_ELEMS; b++) {
        let w = block_values_wide(base16, b);
        for (var t = 0u; t < RT; t++) {
            acc[t] += dot8(w, block_acts(x0 + min(t, nt - 1u) * p.x_stride + b * BLOCK_ELEMS));
        }
    }
    if (row < p.rows) {
        for (var t = 0u; t < nt; t++) {
            store(t0 + t, row, acc[t]);
        }
    }
}
