//! moe_matmul: a batch's tokens grouped by expert. Item i (token t = i / n_used, its routed slot
//! i % n_used) runs expert e = route[i]: out[i, r] = dot(W_e[r], x_i), where x_i is x[t] (the gate
//! and up projections: slots share their token's input) or x[i] (the down projection: each slot has
//! its own). A workgroup holds one row r of one expert and 64 items, a lane per item: the lanes
//! whose item is routed to e compute its dot, all reading the same row, so each expert's row is
//! fetched once per 64 items and the experts no item chose are not read. Composed after
//! common.wgsl and quant/<type>.wgsl.

struct Params {
    rows: u32,        // rows of one expert
    cols: u32,        // row length in elements
    row_bytes: u32,   // bytes from one row to the next
    x_stride: u32,    // elements per input vector of x
    n_items: u32,     // batch rows * n_used
    n_used: u32,      // routed experts per token
    per_token: u32,   // 1: item i reads x[i / n_used]; 0: x[i]
    n_tiles: u32,     // tiles of 64 items (workgroup y = expert * n_tiles + tile)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;     // [n_experts * rows, row_bytes] raw blocks
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;     // [inputs, x_stride]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // [n_items, rows]
@group(0) @binding(4) var<storage, read> route: array<u32>;       // [n_items, 2]: expert, bitcast weight

var<private> x_base: u32;

// The quant files' block_dot reads the item's input.
fn act4(i: u32) -> vec4<f32> {
    return x[(x_base + i) >> 2u];
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.x + wid.z * nwg.x;
    let expert = wid.y / p.n_tiles;
    let item = (wid.y % p.n_tiles) * 64u + lid;
    if (row >= p.rows || item >= p.n_items || route[2u * item] != expert) {
        return;
    }
    var input = item;
    if (p.per_token == 1u) {
        input = item / p.n_used;
    }
    x_base = input * p.x_stride;
    out[item * p.rows + row] = row_dot(expert * p.rows + row, 0u, 1u, p.cols, p.row_bytes);
}
