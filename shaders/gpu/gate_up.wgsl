//! gate_up: the feed-forward's first half in one dispatch. xb = rmsnorm(x) * norm_w (each workgroup
//! sums x's squares as it walks its rows), then out[r] = act(Wgate[r] . xb) * (Wup[r] . xb) over the concatenated
//! [Wgate; Wup] (raw GGUF blocks; up row r is row ffn + r), act silu or gelu (glu.wgsl). Composed
//! after common.wgsl, quant/<type>.wgsl, norm_fold.wgsl, a reduce_*.wgsl and row_walk.wgsl.

struct Params {
    ffn: u32,       // rows of each of Wgate and Wup
    cols: u32,      // model width
    row_bytes: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;      // [2 ffn, row_bytes]
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;      // [cols / 4] residual stream
@group(0) @binding(3) var<storage, read> norm_w: array<vec4<f32>>; // [cols / 4] ffn_norm
@group(0) @binding(4) var<storage, read_write> out: array<f32>;    // [ffn]

// GPUs: one output per workgroup, its gate row and up row walked together (row_walk.wgsl), the
// rmsnorm's scale applied to the dots.
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = flat_workgroup(wid, nwg);
    let r = min(o, p.ffn - 1u);
    let rows = array<u32, ROWS>(r * p.row_bytes, (p.ffn + r) * p.row_bytes);
    let sums = reduce(lid, walk_rows(rows, lid, p.cols));
    if (lid == 0u && o < p.ffn) {
        let scale = norm_scale(sums[ROWS], p.cols, p.eps);
        out[o] = act_mul(scale * sums[0], scale * sums[1]);
    }
}
