//! moe_matvec: out[t, r] (+)= scale * dot(W_e[r], x[t]) for each batch row t, where e is the expert in
//! slot `slot` of t's route and W_e the rows of expert e in the stacked matrix (expert e's rows follow
//! expert e-1's); scale is the route's weight for the down projection, else 1. Only the chosen
//! experts' rows are read. A workgroup of 64 lanes per output row, the lanes striding over the row's
//! blocks, summed in workgroup memory (workgroup x: the row, flattened over x and z; y: the batch
//! row). Composed after common.wgsl and quant/<type>.wgsl.

struct Params {
    rows: u32,        // rows of one expert
    cols: u32,        // row length in elements
    row_bytes: u32,   // bytes from one row to the next
    x_stride: u32,    // elements per batch row of x
    out_stride: u32,  // elements per batch row of out
    slot: u32,        // which of the token's routed experts
    n_used: u32,      // routed experts per token
    weighted: u32,    // 1: out += weight * result (the down projection); 0: out = result
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;     // [n_experts * rows, row_bytes] raw blocks
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [batch rows, x_stride]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [batch rows, out_stride]
@group(0) @binding(4) var<storage, read> route: array<u32>;       // [batch rows, n_used, 2]: expert, bitcast weight

var<private> x_base: u32;

// The quant files' block_dot reads the batch row's activations.
fn act4(i: u32) -> vec4<f32> {
    return x[(x_base + i) >> 2u];
}

var<workgroup> red: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.z * nwg.x;
    let t = wid.y;
    let at = (t * p.n_used + p.slot) * 2u;
    let expert = route[at];
    x_base = t * p.x_stride;
    var acc = 0.0;
    if (row < p.rows) {
        acc = row_dot(expert * p.rows + row, lid, 64u, p.cols, p.row_bytes);
    }
    red[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < p.rows) {
        let o = t * p.out_stride + row;
        if (p.weighted == 1u) {
            out[o] += bitcast<f32>(route[at + 1u]) * red[0];
        } else {
            out[o] = red[0];
        }
    }
}
