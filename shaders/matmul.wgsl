//! matmul: out[t, r] (+)= dot(W[r], x[t]) for the tokens t of a batch (a prompt chunk, or n
//! candidates) and a quantized [rows, cols] matrix in raw GGUF blocks: each weight is read and
//! dequantized once per tile of tokens instead of once per token.
//! `main` (GPUs): a 64-row x 32-token tile per workgroup of 256 threads, weights dequantized into
//! workgroup memory 32 columns at a time, 4 x 2 outputs per thread.
//! `main_rowwise` (CPU adapters): a weight row per thread against 16 tokens held in registers.
//! Weights come 8 at a time from the quant file's dequant8.
//! Composed after common.wgsl, quant/<type>.wgsl and matmul_io.wgsl.

// The quant files' block_dot reads activations through act4; matmul reads them directly.
fn act4(i: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

// Element k of row `row`, dequantized.
fn weight_at(row: u32, k: u32) -> f32 {
    return dequant_at((p.w_row0 + row) * p.row_bytes + (k / BLOCK_ELEMS) * BLOCK_BYTES, k % BLOCK_ELEMS);
}

// Elements k .. k+7 of row `row` (k a multiple of 8, k + 8 <= cols), dequantized together.
fn weight8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    return dequant8((p.w_row0 + row) * p.row_bytes + (k / BLOCK_ELEMS) * BLOCK_BYTES, k % BLOCK_ELEMS);
}

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

const RT: u32 = 16u; // tokens per thread on CPU adapters

// CPU adapters: a row per thread, 16 tokens per pass, each weight dequantized once per pass.
@compute @workgroup_size(64)
fn main_rowwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
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
