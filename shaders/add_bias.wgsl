//! add_bias (a llama file's Wo, gate, up and down biases): out[row, offset + i] += bias[i] in place,
//! for every batch row. One thread per value; grid row y is batch row y.

struct Params {
    len: u32,        // bias's length (the values added per row)
    row_stride: u32, // elements per batch row of out
    offset: u32,     // where in a row the biased values start
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // [rows, row_stride]
@group(0) @binding(2) var<storage, read> bias: array<f32>;      // [len]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.len) {
        return;
    }
    let j = gid.y * p.row_stride + p.offset + i;
    out[j] = out[j] + bias[i];
}
