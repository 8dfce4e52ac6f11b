//! swiglu: gate = silu(gate) * up (or GeGLU's gelu: glu.wgsl, composed after), in place over the gate buffer (both families; the CPU family's
//! cpu/swiglu_packed.wgsl adds an entry point with up in the gate buffer). `main`: the first n
//! values; `rows`: a batch's, only its rows that hold tokens (step.n_rows rows of row_len values),
//! so a prompt chunk shorter than the graph's rows does not run the rest.

struct Params {
    n: u32,
    up_offset: u32, // cpu/swiglu_packed.wgsl only
    row_len: u32,   // rows: values a row
    _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>; // [n]
@group(0) @binding(2) var<storage, read> up: array<f32>;         // [n]
@group(0) @binding(3) var<uniform> step: Step;                   // rows only

fn silu_times_up(i: u32) {
    gate[i] = act_mul(gate[i], up[i]);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i < p.n) {
        silu_times_up(i);
    }
}

@compute @workgroup_size(64)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i < min(p.n, step.n_rows * p.row_len)) {
        silu_times_up(i);
    }
}
