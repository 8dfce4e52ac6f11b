//! embed: out = row tokens[token_index] of a quantized embedding table (one part of it: rows
//! row_start .. row_start + n_rows; parts not holding the token write nothing). Grid row y: token
//! token_index + y into out row y, for the step's rows only (a prompt chunk shorter than the
//! graph's rows looks up no stale ids past it). Composed after common.wgsl and quant/<type>.wgsl.

struct Params {
    dim: u32,         // row length
    row_bytes: u32,   // bytes per row
    row_start: u32,   // first vocabulary row in this part
    n_rows: u32,      // rows in this part
    token_index: u32, // which entry of `tokens` to look up
    out_offset: u32,  // first element of out
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;   // [n_rows, row_bytes] raw blocks
@group(0) @binding(2) var<storage, read> tokens: array<u32>;    // token ids
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [rows, dim]
@group(0) @binding(4) var<uniform> step: Step;                   // rows from step.n_rows on: none

// The quant files' block_dot reads activations; the lookup has none.
fn act4(i: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (gid.y >= step.n_rows) {
        return;
    }
    let tok = tokens[p.token_index + gid.y];
    if (i >= p.dim || tok < p.row_start || tok >= p.row_start + p.n_rows) {
        return;
    }
    let blk = (tok - p.row_start) * p.row_bytes + (i / BLOCK_ELEMS) * BLOCK_BYTES;
    out[p.out_offset + gid.y * p.dim + i] = dequant_at(blk, i % BLOCK_ELEMS);
}
