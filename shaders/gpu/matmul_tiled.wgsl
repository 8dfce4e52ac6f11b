//! matmul, tiled (GPU family; the shape of llama.cpp's mul_mm): out[t, r] (+)= dot(W[r], x[t]) for
//! a tile of BM weight rows x BN tokens per workgroup of WG threads. Each K step of BK columns, the
//! weights are dequantized once (dequant8: 8 consecutive values a thread, neighbouring threads on
//! neighbouring bytes) and the activations copied, both into workgroup memory k-major (4 rows or 4
//! tokens a vec4); then each thread adds the outer products of its TR rows x 4 tokens: per column,
//! TR / 4 + 1 vec4 reads for 4 * TR FMAs, from registers.
//! The tile (BM, BN, BK, WG, TR) is put first by kernels::gpu::matmul, chosen by the matrix's shape.
//! Composed after common.wgsl, quant/<type>.wgsl, matmul_io.wgsl and matmul_weights.wgsl.

const TT: u32 = 4u;       // tokens per thread: one vec4
const NR: u32 = BM / TR;  // threads along the rows (the rest, BN / TT, along the tokens)
const RG: u32 = TR / 4u;  // groups of 4 rows per thread: rows g * BM / RG + 4 * tr + 0..3
const BM4: u32 = BM / 4u; // vec4s per column of w_tile
const BN4: u32 = BN / 4u; // vec4s per column of x_tile
const W_CHUNKS: u32 = BM * BK / 8u; // dequant8 calls per K step
const X_CHUNKS: u32 = BN * BK / 4u; // vec4 activation loads per K step

var<workgroup> w_tile: array<vec4<f32>, BK * BM4>; // [BK][BM / 4]: column k, rows 4i .. 4i+3
var<workgroup> x_tile: array<vec4<f32>, BK * BN4>; // [BK][BN / 4]: column k, tokens 4i .. 4i+3

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let range = token_range();
    let t0 = wid.y * BN;
    if (t0 >= range.y) {
        return;
    }
    let r0 = wid.x * BM;
    let tr = lid % NR; // rows g * BM / RG + 4 * tr + 0..3 of the tile
    let tt = lid / NR; // tokens 4 * tt + 0..3 of the tile
    var acc: array<vec4<f32>, TR>; // [TR rows][4 tokens]
    for (var k0 = 0u; k0 < p.cols; k0 += BK) {
        // Weights: chunk c is 8 columns of one row, neighbouring chunks along the row.
        for (var c = lid; c < W_CHUNKS; c += WG) {
            let row = c / (BK / 8u);
            let k = (c % (BK / 8u)) * 8u;
            var w = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
            if (r0 + row < p.rows) {
                if (k0 + k + 8u <= p.cols) {
                    w = weight8(r0 + row, k0 + k);
                } else {
                    // The last step of a row length that is not a multiple of BK (or of 8).
                    for (var i = 0u; i < 8u; i++) {
                        if (k0 + k + i < p.cols) {
                            w[i / 4u][i % 4u] = weight_at(r0 + row, k0 + k + i);
                        }
                    }
                }
            }
            let at = k * BM4 + row / 4u;
            let lane = row % 4u;
            for (var i = 0u; i < 4u; i++) {
                w_tile[at + i * BM4][lane] = w[0][i];
                w_tile[at + (i + 4u) * BM4][lane] = w[1][i];
            }
        }
        // Activations: chunk c is 4 columns of one token (zeros past the batch and the row).
        for (var c = lid; c < X_CHUNKS; c += WG) {
            let tok = c / (BK / 4u);
            let k = (c % (BK / 4u)) * 4u;
            var v = vec4<f32>(0.0);
            if (t0 + tok < range.y && k0 + k < p.cols) {
                v = x[((range.x + t0 + tok) * p.x_stride + k0 + k) / 4u];
            }
            let at = k * BN4 + tok / 4u;
            let lane = tok % 4u;
            for (var i = 0u; i < 4u; i++) {
                x_tile[at + i * BN4][lane] = v[i];
            }
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let xv = x_tile[k * BN4 + tt];
            for (var g = 0u; g < RG; g++) {
                let wv = w_tile[k * BM4 + g * NR + tr];
                acc[4u * g] = fma(vec4<f32>(wv.x), xv, acc[4u * g]);
                acc[4u * g + 1u] = fma(vec4<f32>(wv.y), xv, acc[4u * g + 1u]);
                acc[4u * g + 2u] = fma(vec4<f32>(wv.z), xv, acc[4u * g + 2u]);
                acc[4u * g + 3u] = fma(vec4<f32>(wv.w), xv, acc[4u * g + 3u]);
            }
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < RG; g++) {
        for (var i = 0u; i < 4u; i++) {
            let row = r0 + g * (BM / RG) + 4u * tr + i;
            for (var j = 0u; j < TT; j++) {
                let t = t0 + TT * tt + j;
                if (row < p.rows && t < range.y) {
                    store(t, row, acc[4u * g + i][j]);
                }
            }
        }
    }
}
