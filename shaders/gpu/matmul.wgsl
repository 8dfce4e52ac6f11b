//! matmul (GPU family): out[t, r] (+)= dot(W[r], x[t]) for the tokens t of a batch (a prompt
//! chunk, or n candidates) and a quantized [rows, cols] matrix in raw GGUF blocks: each weight is
//! read and dequantized once per tile of tokens instead of once per token.
//! `main`: a 64-row x 32-token tile per workgroup of 256 threads, weights dequantized into
//! workgroup memory 32 columns at a time, 4 x 2 outputs per thread.
//! `main_few` (n candidates): the decode matvec's shape, applied to up to 8 tokens.
//! Composed after common.wgsl, quant/<type>.wgsl, matmul_io.wgsl and matmul_weights.wgsl.

const TM: u32 = 64u; // weight rows per tile
const TN: u32 = 32u; // tokens per tile
const TK: u32 = 32u; // columns per step
var<workgroup> w_tile: array<array<f32, 33>, 64>; // [TM][TK + 1]
var<workgroup> x_tile: array<array<f32, 33>, 32>; // [TN][TK + 1]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let range = token_range();
    let t0 = wid.y * TN;
    if (t0 >= range.y) {
        return;
    }
    let r0 = wid.x * TM;
    let tr = lid % 16u; // rows tr, tr + 16, tr + 32, tr + 48
    let tt = lid / 16u; // tokens tt, tt + 16
    var acc: array<array<f32, 2>, 4>;
    for (var k0 = 0u; k0 < p.cols; k0 += TK) {
        // 64 x 32 weights: 8 per thread, along a row.
        let wr = lid / 4u;
        let wk = (lid % 4u) * 8u;
        if (r0 + wr < p.rows && k0 + wk + 8u <= p.cols) {
            let w8 = weight8(r0 + wr, k0 + wk);
            for (var i = 0u; i < 4u; i++) {
                w_tile[wr][wk + i] = w8[0][i];
                w_tile[wr][wk + 4u + i] = w8[1][i];
            }
        } else {
            for (var i = 0u; i < 8u; i++) {
                var v = 0.0;
                if (r0 + wr < p.rows && k0 + wk + i < p.cols) {
                    v = weight_at(r0 + wr, k0 + wk + i);
                }
                w_tile[wr][wk + i] = v;
            }
        }
        // 32 tokens x 32 activations: a vec4 per thread.
        let xt = lid / 8u;
        let xk = (lid % 8u) * 4u;
        var xv = vec4<f32>(0.0);
        if (t0 + xt < range.y && k0 + xk < p.cols) {
            xv = x[((range.x + t0 + xt) * p.x_stride + k0 + xk) / 4u];
        }
        x_tile[xt][xk] = xv.x;
        x_tile[xt][xk + 1u] = xv.y;
        x_tile[xt][xk + 2u] = xv.z;
        x_tile[xt][xk + 3u] = xv.w;
        workgroupBarrier();
        for (var k = 0u; k < TK; k++) {
            let xa = x_tile[tt][k];
            let xb = x_tile[tt + 16u][k];
            for (var i = 0u; i < 4u; i++) {
                let w = w_tile[tr + 16u * i][k];
                acc[i][0] += w * xa;
                acc[i][1] += w * xb;
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let row = r0 + tr + 16u * i;
        for (var j = 0u; j < 2u; j++) {
            let t = t0 + tt + 16u * j;
            if (row < p.rows && t < range.y) {
                store(t, row, acc[i][j]);
            }
        }
    }
}

const FEW: u32 = 8u; // most tokens main_few takes
var<workgroup> few_partial: array<array<f32, 8>, 64>;

// GPUs, a few tokens (n candidates): the decode matvec's shape, 16 threads per row and 4 rows per
// workgroup, each thread dequantizing 8 weights at a time (adjacent threads on adjacent bytes) and
// applying them to every token; each weight is still read once for all of them.
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
            for (var j = 0u; j < nt; j++) {
                let at = xbase + j * stride4 + k / 4u;
                acc[j] += dot(w[0], x[at]) + dot(w[1], x[at + 1u]);
            }
        }
        if (t == 0u && cols8 < p.cols) {
            let w = vec4<f32>(weight_at(row, cols8), weight_at(row, cols8 + 1u), weight_at(row, cols8 + 2u), weight_at(row, cols8 + 3u));
            for (var j = 0u; j < nt; j++) {
                acc[j] += dot(w, x[xbase + j * stride4 + cols8 / 4u]);
            }
        }
    }
    for (var j = 0u; j < FEW; j++) {
        few_partial[lid][j] = acc[j];
    }
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if (t < s) {
            for (var j = 0u; j < FEW; j++) {
                few_partial[lid][j] += few_partial[lid + s][j];
            }
        }
        workgroupBarrier();
    }
    if (t == 0u && row < p.rows) {
        for (var j = 0u; j < nt; j++) {
            store(j, row, few_partial[lid][j]);
        }
    }
}
