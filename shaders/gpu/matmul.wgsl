//! matmul, a few tokens (GPU family): out[t, r] (+)= dot(W[r], x[t]) for up to 8 tokens (n
//! candidates, or a prompt's last token for its logits) and a quantized [rows, cols] matrix in raw
//! GGUF blocks: the decode matvec's shape, each weight read and dequantized once for all the
//! tokens. Prompt chunks take the tiled kernel, matmul_tiled.wgsl.
//! Composed after common.wgsl, quant/<type>.wgsl, matmul_io.wgsl and matmul_weights.wgsl.

const FEW: u32 = 8u; // most tokens main_few takes
var<workgroup> few_partial: array<array<f32, 64>, 8>; // [token][lane]: neighbouring lanes on neighbouring banks

// GPUs, a few tokens (n candidates): the decode matvec's shape, 16 threads per row and 4 rows per
// workgroup, each thread dequantizing 8 weights at a time (adjacent threads on adjacent bytes) and
// applying them to every token; each weight is still read once for all of them. The token loops
// run to the constant FEW (with a test inside), so acc stays in registers.
@compute @workgroup_size(64)
fn main_few(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let range = token_range();
    let nt = min(range.y, FEW);
    let t = lid % 16u;
    let row = flat_workgroup(wid, nwg) * 4u + lid / 16u;
    var acc: array<f32, 8>;
    if (row < p.rows) {
        let cols8 = p.cols & ~7u;
        let stride4 = p.x_stride / 4u;
        let xbase = range.x * stride4;
        for (var k = t * 8u; k < cols8; k += 128u) {
            let w = weight8(row, k);
            for (var j = 0u; j < FEW; j++) {
                if (j < nt) {
                    let at = xbase + j * stride4 + k / 4u;
                    acc[j] += dot(w[0], x[at]) + dot(w[1], x[at + 1u]);
                }
            }
        }
        if (t == 0u && cols8 < p.cols) {
            let w = vec4<f32>(weight_at(row, cols8), weight_at(row, cols8 + 1u), weight_at(row, cols8 + 2u), weight_at(row, cols8 + 3u));
            for (var j = 0u; j < FEW; j++) {
                if (j < nt) {
                    acc[j] += dot(w, x[xbase + j * stride4 + cols8 / 4u]);
                }
            }
        }
    }
    for (var j = 0u; j < FEW; j++) {
        few_partial[j][lid] = acc[j];
    }
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if (t < s) {
            for (var j = 0u; j < FEW; j++) {
                few_partial[j][lid] += few_partial[j][lid + s];
            }
        }
        workgroupBarrier();
    }
    if (t == 0u && row < p.rows) {
        for (var j = 0u; j < FEW; j++) {
            if (j < nt) {
                store(j, row, few_partial[j][lid]);
            }
        }
    }
}
