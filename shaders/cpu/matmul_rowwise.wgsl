//! matmul_rowwise (CPU family): out[t, r] (+)= dot(W[r], x[t]) for the tokens of a batch, a weight
//! row per invocation against 16 tokens held in registers, each weight dequantized once per 16
//! tokens. For the types without a wide decoder (matmul_wide.wgsl). Composed after common.wgsl,
//! quant/<type>.wgsl, matmul_io.wgsl and matmul_weights.wgsl.

const RT: u32 = 16u; // tokens per thread on CPU adapters

// CPU adapters: a row per thread, 16 tokens per pass, each weight dequantized once per pass.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let range = token_range();
    let t0 = wid.y * RT;
    let row = wid.x * 64u + lid;
    if (t0 >= range.y || row >= p.rows) {
        return;
    }
    let nt = min(RT, range.y - t0);
    var acc: array<f32, 16>;
    let xbase = (range.x + t0) * p.x_stride / 4u;
    let stride4 = p.x_stride / 4u;
    let cols8 = p.cols & ~7u;
    for (var k = 0u; k < cols8; k += 8u) {
        let w = weight8(row, k);
        for (var t = 0u; t < nt; t++) {
            let at = xbase + t * stride4 + k / 4u;
            acc[t] += dot(w[0], x[at]) + dot(w[1], x[at + 1u]);
        }
    }
    if (cols8 < p.cols) {
        // A last 4 (row lengths are multiples of 4).
        let w = vec4<f32>(weight_at(row, cols8), weight_at(row, cols8 + 1u), weight_at(row, cols8 + 2u), weight_at(row, cols8 + 3u));
        for (var t = 0u; t < nt; t++) {
            acc[t] += dot(w, x[xbase + t * stride4 + cols8 / 4u]);
        }
    }
    for (var t = 0u; t < nt; t++) {
        store(t0 + t, row, acc[t]);
    }
}
