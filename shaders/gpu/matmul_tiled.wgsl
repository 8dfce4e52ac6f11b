//! matmul, tiled (GPU family; the shape of llama.cpp's mul_mm): out[t, r] (+)= dot(W[r], x[t]) for
//! a tile of BM weight rows x BN tokens per workgroup of WG threads. Each K step of BK columns, the
//! weights are dequantized once (dequant8: 8 consecutive values a thread, neighbouring threads on
//! neighbouring bytes) and the activations copied, both into workgroup memory k-major (4 rows or 4
//! tokens a vec4 of tile1: f16 where the device has shader-f16, else f32); then each thread adds
//! the outer products of its TR rows x TT tokens into `part`, in registers: per column, TR / 4 +
//! TT / 4 vec4 reads for TR * TT FMAs in prod1. matmul_sum_f32.wgsl makes prod1 f32 and `part`
//! the sums themselves; matmul_sum_f16.wgsl makes it f16 and adds each step's into f32 sums.
//! The tile (BM, BN, BK, WG, TR, TT), tile1 and TILE_MAX are put first by kernels::gpu::matmul,
//! chosen by the matrix's shape and the layout. Composed after common.wgsl, quant/<type>.wgsl,
//! matmul_io.wgsl, matmul_weights.wgsl and one of the two sum files.

const NR: u32 = BM / TR;  // threads along the rows (the rest, NT, along the tokens)
const NT: u32 = BN / TT;  // threads along the tokens
const RG: u32 = TR / 4u;  // groups of 4 rows per thread: rows g * BM / RG + 4 * tr + 0..3
const TG: u32 = TT / 4u;  // groups of 4 tokens per thread: tokens h * BN / TG + 4 * tt + 0..3
const BM4: u32 = BM / 4u; // vec4s per column of w_tile
const BN4: u32 = BN / 4u; // vec4s per column of x_tile
const W_CHUNKS: u32 = BM * BK / 8u; // dequant8 calls per K step
const X_CHUNKS: u32 = BN * BK / 4u; // vec4 activation loads per K step

var<workgroup> w_tile: array<vec4<tile1>, BK * BM4>; // [BK][BM / 4]: column k, rows 4i .. 4i+3
var<workgroup> x_tile: array<vec4<tile1>, BK * BN4>; // [BK][BN / 4]: column k, tokens 4i .. 4i+3
// This thread's products so far, in registers: [TR rows][TG groups of 4 tokens].
var<private> part: array<vec4<prod1>, TR * TG>;

// Values as the tiles can hold them: with f16 tiles, clamped to f16's finite range (TILE_MAX), so
// that an activation past 65504 (a large SwiGLU output into the down projection) costs its token
// that term's excess, not an inf that turns the token's every sum into NaN (llama.cpp's f16 tiles
// convert unclamped).
fn in_tile(v: vec4<f32>) -> vec4<f32> {
    return clamp(v, vec4<f32>(-TILE_MAX), vec4<f32>(TILE_MAX));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let range = token_range();
    let t0 = wid.y * BN;
    if (t0 >= range.y) {
        return;
    }
    let r0 = wid.x * BM;
    let tr = lid % NR; // rows g * BM / RG + 4 * tr + 0..3 of the tile
    let tt = lid / NR; // tokens h * BN / TG + 4 * tt + 0..3 of the tile
    // A thread whose first token is past the chunk (in a short prompt's partial tile) has none: it
    // loads its share of the tiles and meets the barriers, but skips the products.
    let idle = t0 + 4u * tt >= range.y;
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
            w = array<vec4<f32>, 2>(in_tile(w[0]), in_tile(w[1]));
            for (var i = 0u; i < 4u; i++) {
                w_tile[at + i * BM4][lane] = tile1(w[0][i]);
                w_tile[at + (i + 4u) * BM4][lane] = tile1(w[1][i]);
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
            v = in_tile(v);
            for (var i = 0u; i < 4u; i++) {
                x_tile[at + i * BN4][lane] = tile1(v[i]);
            }
        }
        workgroupBarrier();
        if (!idle) {
            for (var k = 0u; k < BK; k++) {
                var xv: array<vec4<prod1>, TG>;
                for (var h = 0u; h < TG; h++) {
                    xv[h] = vec4<prod1>(x_tile[k * BN4 + h * NT + tt]);
                }
                for (var g = 0u; g < RG; g++) {
                    let wv = vec4<prod1>(w_tile[k * BM4 + g * NR + tr]);
                    for (var h = 0u; h < TG; h++) {
                        let a = 4u * g * TG + h;
                        part[a] = fma(vec4<prod1>(wv.x), xv[h], part[a]);
                        part[a + TG] = fma(vec4<prod1>(wv.y), xv[h], part[a + TG]);
                        part[a + 2u * TG] = fma(vec4<prod1>(wv.z), xv[h], part[a + 2u * TG]);
                        part[a + 3u * TG] = fma(vec4<prod1>(wv.w), xv[h], part[a + 3u * TG]);
                    }
                }
            }
            step_done();
        }
        workgroupBarrier();
    }
    for (var g = 0u; g < RG; g++) {
        for (var i = 0u; i < 4u; i++) {
            let row = r0 + g * (BM / RG) + 4u * tr + i;
            for (var h = 0u; h < TG; h++) {
                for (var j = 0u; j < 4u; j++) {
                    let t = t0 + h * (BN / TG) + 4u * tt + j;
                    if (row < p.rows && t < range.y) {
                        store(t, row, sums((4u * g + i) * TG + h)[j]);
                    }
                }
            }
        }
    }
}
