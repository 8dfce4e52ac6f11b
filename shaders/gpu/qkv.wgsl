//! qkv: the attention inputs of a layer in one dispatch. xb = rmsnorm(x) * norm_w (each workgroup
//! sums x's squares as it walks its rows), then the rows of the concatenated [Wq; Wk; Wv] (raw GGUF blocks) into one
//! output [q | k | v], q and k rotated by RoPE in adjacent pairs (attention stores k and v in the
//! cache). Composed after common.wgsl, quant/<type>.wgsl, norm_fold.wgsl, a reduce_*.wgsl and
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
    _a: u32,
    _b: u32,
    _c: u32,
}

struct Step {
    pos: u32,
    kv_len: u32,
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;          // [q_rows + 2 kv_rows, row_bytes]
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;          // [cols / 4] residual stream
@group(0) @binding(4) var<storage, read> norm_w: array<vec4<f32>>;     // [cols / 4] attn_norm
@group(0) @binding(5) var<storage, read_write> out: array<f32>;        // [q_rows + 2 kv_rows]: q | k | v
@group(0) @binding(6) var<storage, read> freq_factors: array<f32>;     // [n_rot / 2]

// Rows `row` (even) and row + 1 with values a and b, rotated when they are q or k rows inside n_rot.
// (One output buffer: on CPU adapters, stores into several buffers make the whole kernel slow.)
fn store_pair(row: u32, a: f32, b: f32) {
    var v = vec2<f32>(a, b);
    let kv_end = p.q_rows + p.kv_rows;
    if (row < kv_end) {
        let r = select(row - p.q_rows, row, row < p.q_rows);
        let i = (r % p.head_dim) / 2u;
        if (2u * i < p.n_rot) {
            let theta = p.freq_scale * f32(step.pos) * pow(p.freq_base, -2.0 * f32(i) / f32(p.n_rot)) / freq_factors[i];
            let c = cos(theta);
            let s = sin(theta);
            v = vec2<f32>(a * c - b * s, a * s + b * c);
        }
    }
    out[row] = v.x;
    out[row + 1u] = v.y;
}

// GPUs: a RoPE pair of rows per workgroup (row_walk.wgsl), the rmsnorm's scale applied to the dots.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let n_rows = p.q_rows + 2u * p.kv_rows;
    let row = 2u * flat_workgroup(wid, nwg);
    let rows = array<u32, ROWS>(min(row, n_rows - 2u) * p.row_bytes, min(row + 1u, n_rows - 1u) * p.row_bytes);
    let sums = reduce(lid, walk_rows(rows, lid, p.cols));
    if (lid == 0u && row < n_rows) {
        let scale = norm_scale(sums[ROWS], p.cols, p.eps);
        store_pair(row, scale * sums[0], scale * sums[1]);
    }
}
