//! matvec's and matvec_wide's parameters, bindings 0 to 4 and helpers (composed before either).

struct Params {
    rows: u32,           // rows in this weight part
    cols: u32,           // row length in elements
    row_bytes: u32,      // bytes from one row to the next (padded to 16 for matvec_wide)
    x_offset: u32,       // first element of x
    out_offset: u32,     // element of out for row 0 (at position 0)
    out_pos_stride: u32, // added per step.pos (KV-cache rows); 0 for plain vectors
    accumulate: u32,     // 1: out += result (residual add in the epilogue); 0: out = result
    up_offset: u32,      // matvec_wide with act_swiglu: where up starts in x (after gate)
    eps: f32,            // matvec_wide with act_norm: the rmsnorm epsilon
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;   // [rows, row_bytes] raw blocks (matvec_wide: unused)
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;   // [cols / 4] at x_offset (a multiple of 4)
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows] at out_offset + pos * out_pos_stride

// x's values i .. i+3 (i a multiple of 4), as stored.
fn x4(i: u32) -> vec4<f32> {
    return x[(p.x_offset + i) >> 2u];
}

// Stores row's result (or adds it); returns the value now in out.
fn store(row: u32, v: f32) -> f32 {
    let o = p.out_offset + step.pos * p.out_pos_stride + row;
    var stored = v;
    if (p.accumulate != 0u) {
        stored += out[o];
    }
    out[o] = stored;
    return stored;
}
