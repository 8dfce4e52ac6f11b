//! matmul, tiled (GPU family; the shape of llama.cpp's mul_mm): out[t, r] (+)= dot(W[r], x[t]) for
//! a tile of BM weight rows x BN tokens per workgroup of WG threads. Each K step of BK columns, the
//! weights are dequantized once (dequant8: 8 consecutive values of 4 rows a thread, neighbouring
//! threads along the rows) and the activations copied, both into workgroup memory k-major (4 rows
//! or 4 tokens a vec4 of tile1, each written whole by one thread: f16 where the device has
//! shader-f16, else f32); then each thread adds the outer products of its TR rows x TT tokens into
//! `part`, in registers: per column, TR / 4 + TT / 4 vec4 reads for TR * TT FMAs in prod1. matmul_sum_f32.wgsl makes prod1 f32 and `part`
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
// Staging chunks per K step: 4 rows x 8 columns of weights and 4 tokens x 4 columns of
// activations a thread, each written as whole vec4s; with COMPONENT_STAGING, 8 columns of one row
// and 4 of one token, written a component at a time (4 threads share a vec4: a race where a
// component write touches the whole vector, Metal and D3D12; Layout::component_staging).
const W_CHUNKS: u32 = select(BM * BK / 32u, BM * BK / 8u, COMPONENT_STAGING);
const X_CHUNKS: u32 = select(BN * BK / 16u, BN * BK / 4u, COMPONENT_STAGING);

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

// Elements k .. k+7 of tile row `row` (zeros past the matrix's rows and columns).
fn tile_weights8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    var w = array<vec4<f32>, 2>(vec4<f32>(0.0), vec4<f32>(0.0));
    if (row >= p.rows) {
        return w;
    }
    if (k + 8u <= p.cols) {
        return weight8(row, k);
    }
    // The last step of a row length that is not a multiple of BK (or of 8).
    for (var i = 0u; i < 8u; i++) {
        if (k + i < p.cols) {
            w[i / 4u][i % 4u] = weight_at(row, k + i);
        }
    }
    return w;
}

// One K step's tiles, each thread writing whole vec4s.
fn stage_whole(r0: u32, t0: u32, k0: u32, range: vec2<u32>, lid: u32) {
    // Weights: chunk c is 8 columns of 4 rows (4 weight8 calls), neighbouring chunks along the
    // rows. Each thread writes whole vec4s: a write to one component of a vector may write all of
    // it (WGSL's memory model; Metal and D3D12 do), so 4 threads writing the 4 rows of one vec4
    // would race.
    for (var c = lid; c < W_CHUNKS; c += WG) {
        let q = c / (BK / 8u); // rows 4q .. 4q+3 of the tile
        let k = (c % (BK / 8u)) * 8u;
        // [row 4q + j][columns k .. k+3, k+4 .. k+7]
        var w: array<array<vec4<f32>, 2>, 4>;
        for (var j = 0u; j < 4u; j++) {
            w[j] = tile_weights8(r0 + 4u * q + j, k0 + k);
        }
        let at = k * BM4 + q;
        for (var i = 0u; i < 4u; i++) {
            w_tile[at + i * BM4] = vec4<tile1>(in_tile(vec4<f32>(w[0][0][i], w[1][0][i], w[2][0][i], w[3][0][i])));
            w_tile[at + (i + 4u) * BM4] = vec4<tile1>(in_tile(vec4<f32>(w[0][1][i], w[1][1][i], w[2][1][i], w[3][1][i])));
        }
    }
    // Activations: chunk c is 4 columns of 4 tokens (4 vec4 loads, zeros past the batch and the
    // row), transposed in registers into whole vec4s of the tile's 4 tokens a column.
    for (var c = lid; c < X_CHUNKS; c += WG) {
        let q = c / (BK / 4u); // tokens 4q .. 4q+3 of the tile
        let k = (c % (BK / 4u)) * 4u;
        var v: array<vec4<f32>, 4>;
        for (var j = 0u; j < 4u; j++) {
            let tok = 4u * q + j;
            v[j] = vec4<f32>(0.0);
            if (t0 + tok < range.y && k0 + k < p.cols) {
                v[j] = in_tile(x[((range.x + t0 + tok) * p.x_stride + k0 + k) / 4u]);
            }
        }
        let at = k * BN4 + q;
        for (var i = 0u; i < 4u; i++) {
            x_tile[at + i * BN4] = vec4<tile1>(vec4<f32>(v[0][i], v[1][i], v[2][i], v[3][i]));
        }
    }
}

// One K step's tiles, a vector component a thread (COMPONENT_STAGING).
fn stage_by_component(r0: u32, t0: u32, k0: u32, range: vec2<u32>, lid: u32) {
    // Weights: chunk c is 8 columns of one row, neighbouring chunks along the row.
    for (var c = lid; c < W_CHUNKS; c += WG) {
        let row = c / (BK / 8u);
        let k = (c % (BK / 8u)) * 8u;
        let w = tile_weights8(r0 + row, k0 + k);
        let at = k * BM4 + row / 4u;
        let lane = row % 4u;
        for (var i = 0u; i < 4u; i++) {
            w_tile[at + i * BM4][lane] = tile1(in_tile(w[0])[i]);
            w_tile[at + (i + 4u) * BM4][lane] = tile1(in_tile(w[1])[i]);
        }
    }
    // Activations: chunk c is 4 columns of one token (zeros past the batch and the row).
    for (var c = lid; c < X_CHUNKS; c += WG) {
        let tok = c / (BK / 4u);
        let k = (c % (BK / 4u)) * 4u;
        var v = vec4<f32>(0.0);
        if (t0 + tok < range.y && k0 + k < p.cols) {
            v = in_tile(x[((range.x + t0 + tok) * p.x_stride + k0 + k) / 4u]);
        }
        let at = k * BN4 + tok / 4u;
        let lane = tok % 4u;
        for (var i = 0u; i < 4u; i++) {
            x_tile[at + i * BN4][lane] = tile1(v[i]);
        }
    }
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
        if (COMPONENT_STAGING) {
            stage_by_component(r0, t0, k0, range, lid);
        } else {
            stage_whole(r0, t0, k0, range, lid);
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
