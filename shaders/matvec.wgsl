//! matvec: out[r] (+)= dot(W[r], x) for a quantized [rows, cols] matrix in raw GGUF blocks.
//! Two entry points: `main` (GPUs) has 16 threads per row striding over the row's blocks and a
//! workgroup-memory reduction; `main_rowwise` (CPU adapters) gives each thread a whole row.
//! Composed after common.wgsl and quant/<type>.wgsl.

struct Params {
    rows: u32,           // rows in this weight part
    cols: u32,           // row length in elements
    row_bytes: u32,      // bytes per row
    x_offset: u32,       // first element of x
    out_offset: u32,     // element of out for row 0 (at position 0)
    out_pos_stride: u32, // added per step.pos (KV-cache rows); 0 for plain vectors
    accumulate: u32,     // 1: out += result (residual add in the epilogue); 0: out = result
    _pad: u32,
}

struct Step {
    pos: u32,    // position of the token being decoded
    kv_len: u32, // positions in the KV cache including this one
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;   // [rows, row_bytes] raw blocks
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;   // [cols / 4] at x_offset (a multiple of 4)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows] at out_offset + pos * out_pos_stride

const THREADS_PER_ROW: u32 = 16u;
const ROWS_PER_WG: u32 = 4u;
var<workgroup> partial: array<f32, 64>;

// Activations i .. i+3 (i a multiple of 4).
fn act4(i: u32) -> vec4<f32> {
    return x[(p.x_offset + i) >> 2u];
}

fn store(row: u32, v: f32) {
    let o = p.out_offset + step.pos * p.out_pos_stride + row;
    if (p.accumulate != 0u) {
        out[o] += v;
    } else {
        out[o] = v;
    }
}

// GPUs: 16 threads per row, 4 rows per workgroup, a workgroup-memory reduction.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = lid % THREADS_PER_ROW;
    let row = flat_workgroup(wid, nwg) * ROWS_PER_WG + lid / THREADS_PER_ROW;
    var acc = 0.0;
    if (row < p.rows) {
        acc = row_dot(row, t, THREADS_PER_ROW, p.cols, p.row_bytes);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = THREADS_PER_ROW / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (t == 0u && row < p.rows) {
        store(row, partial[lid]);
    }
}

// CPU adapters (lavapipe, SwiftShader), where barriers cost more than they give: a row per thread.
@compute @workgroup_size(64)
fn main_rowwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg) * 64u + lid;
    if (row < p.rows) {
        store(row, row_dot(row, 0u, 1u, p.cols, p.row_bytes));
    }
}
