//! gate_up: the feed-forward's first half in one dispatch. xb = rmsnorm(x) * norm_w (each workgroup
//! recomputes the scale), then out[r] = silu(Wgate[r] . xb) * (Wup[r] . xb) over the concatenated
//! [Wgate; Wup] (raw GGUF blocks; up row r is row ffn + r). Composed after common.wgsl and
//! quant/<type>.wgsl and norm_fold.wgsl.

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

var<workgroup> partial: array<f32, 64>;

fn silu_mul(g: f32, u: f32) -> f32 {
    return g / (1.0 + exp(-g)) * u;
}

// GPUs: 2 outputs per workgroup; 16 threads on each of gate row, up row, gate row, up row.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let scale = norm_scale(lid, p.cols, p.eps);
    let t = lid % 16u;
    let g = lid / 16u; // 0: gate of output 0, 1: up of output 0, 2: gate of output 1, 3: up of output 1
    let o = flat_workgroup(wid, nwg) * 2u + g / 2u;
    var acc = 0.0;
    if (o < p.ffn) {
        acc = row_dot(o + (g % 2u) * p.ffn, t, 16u, p.cols, p.row_bytes);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = 8u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (t == 0u && g % 2u == 0u && o < p.ffn) {
        out[o] = silu_mul(scale * partial[lid], scale * partial[lid + 16u]);
    }
}
