//! matmul's and matmul_wide's parameters, bindings 0 to 4 and helpers (composed before either).

struct Params {
    rows: u32,       // rows in this weight part
    cols: u32,       // row length in elements
    row_bytes: u32,  // bytes from one row to the next (padded to 16 for matmul_wide)
    x_stride: u32,   // elements per token row of x (a multiple of 4)
    out_offset: u32, // element of out for (token 0, row 0)
    out_stride: u32, // elements per token row of out
    accumulate: u32, // 1: out += result (residual add); 0: out = result
    last_only: u32,  // 1: only the batch's last token, written as token row 0 (prompt logits)
    w_row0: u32,     // first weight row (a range of a concatenated matrix)
    _a: u32,
    _b: u32,
    _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> weights: array<u32>;   // [w_row0 + rows, row_bytes] raw blocks
@group(0) @binding(3) var<storage, read> x: array<vec4<f32>>;   // [tokens, x_stride / 4]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [tokens, out_stride] at out_offset

// The tokens this dispatch covers: [first, first + count).
fn token_range() -> vec2<u32> {
    if (p.last_only == 1u) {
        return vec2<u32>(step.n_rows - 1u, 1u);
    }
    return vec2<u32>(0u, step.n_rows);
}

fn store(t: u32, row: u32, v: f32) {
    let o = p.out_offset + t * p.out_stride + row;
    if (p.accumulate != 0u) {
        out[o] += v;
    } else {
        out[o] = v;
    }
}
