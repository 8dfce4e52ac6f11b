//! qkv: the attention inputs of a layer in one dispatch. xb = rmsnorm(x) * norm_w (each workgroup
//! sums x's squares as it walks its rows), then the rows of the concatenated [Wq; Wk; Wv] (raw GGUF blocks) into one
//! output [q | k | v], biased where the model has biases and q and k rotated by RoPE (LLaMA's adjacent
//! pairs or NEOX's halves; attention stores k and v in the cache). Composed after common.wgsl, quant/<type>.wgsl, norm_fold.wgsl, a reduce_*.wgsl and
//! row_walk.wgsl.

struct Params {
    q_rows: u32,     // n_heads * head_dim
    kv_rows: u32,    // n_kv_heads * head_dim
    cols: u32,       // model width
    row_bytes: u32,
    head_dim: u32,
    n_rot: u32,
    freq_base: f32,
    freq_scale: f32,
    eps: f32,
    neox: u32,       // 1: RoPE pairs rows i and i + n_rot / 2 of a head (qwen2); 0: adjacent rows
    bias: u32,       // 1: q | k | v += bq | bk | bv before RoPE (qwen2)
    _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;          // [q_rows + 2 kv_rows, row_bytes]
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;          // [cols / 4] residual stream
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;     // [cols / 4] attn_norm
@group(0) @binding(5) var<storage, read_write> out: array<f32>;        // [q_rows + 2 kv_rows]: q | k | v
@group(0) @binding(6) var<storage, read> freq_factors: array<f32>;     // [n_rot / 2]
@group(0) @binding(7) var<storage, read> bq: array<f32>;               // [q_rows] (p.bias)
@group(0) @binding(8) var<storage, read> bk: array<f32>;               // [kv_rows] (p.bias)
@group(0) @binding(9) var<storage, read> bv: array<f32>;               // [kv_rows] (p.bias)

// The two rows workgroup w takes, which RoPE rotates together: adjacent rows (LLaMA's q and k, and
// v rows everywhere), or with p.neox, inside q and k, rows i and i + n_rot / 2 of a head (then
// adjacent rows past n_rot).
fn pair_rows(w: u32) -> vec2<u32> {
    let row = 2u * w;
    if (p.neox == 0u || row >= p.q_rows + p.kv_rows) {
        return vec2<u32>(row, row + 1u);
    }
    let base = select(p.q_rows, 0u, row < p.q_rows);
    let j = (row - base) / 2u; // the pair's index in q or k
    let head = base + (j / (p.head_dim / 2u)) * p.head_dim;
    let i = j % (p.head_dim / 2u);
    let half = p.n_rot / 2u;
    if (i < half) {
        return vec2<u32>(head + i, head + i + half);
    }
    let r = head + p.n_rot + 2u * (i - half);
    return vec2<u32>(r, r + 1u);
}

// Row r's bias (p.bias).
fn bias_of(r: u32) -> f32 {
    if (r < p.q_rows) {
        return bq[r];
    }
    if (r < p.q_rows + p.kv_rows) {
        return bk[r - p.q_rows];
    }
    return bv[r - p.q_rows - p.kv_rows];
}

// Rows `rows` (a pair_rows pair) with values a and b: biased, then rotated when they are q or k rows
// inside n_rot. (One output buffer: on CPU adapters, stores into several buffers make the whole
// kernel slow.)
fn store_pair(rows: vec2<u32>, a: f32, b: f32) {
    var v = vec2<f32>(a, b);
    if (p.bias != 0u) {
        v += vec2<f32>(bias_of(rows.x), bias_of(rows.y));
    }
    if (rows.x < p.q_rows + p.kv_rows) {
        let d = select(rows.x - p.q_rows, rows.x, rows.x < p.q_rows) % p.head_dim;
        let i = select(d / 2u, d, p.neox != 0u); // the pair's frequency
        if (2u * i < p.n_rot) {
            let theta = p.freq_scale * f32(step.pos) * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot)) / freq_factors[i];
            let c = cos(theta);
            let s = sin(theta);
            v = vec2<f32>(v.x * c - v.y * s, v.x * s + v.y * c);
        }
    }
    out[rows.x] = v.x;
    out[rows.y] = v.y;
}

// GPUs: a RoPE pair of rows per workgroup (row_walk.wgsl), the rmsnorm's scale applied to the dots.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let pairs = (p.q_rows + 2u * p.kv_rows) / 2u;
    let w = flat_workgroup(wid, nwg);
    let pair = pair_rows(min(w, pairs - 1u));
    let sums = reduce(lid, walk_rows(array<u32, ROWS>(pair.x * p.row_bytes, pair.y * p.row_bytes), lid, p.cols));
    if (lid == 0u && w < pairs) {
        let scale = norm_scale(sums[ROWS], p.cols, p.eps);
        store_pair(pair, scale * sums[0], scale * sums[1]);
    }
}
