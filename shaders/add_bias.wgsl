//! add_bias (a llama file's Wo, gate, up and down biases): out[row, offset + i] += bias[i] in place;
//! scale_values (granite's embedding and residual multipliers): out[row, offset + i] *= scale;
//! soft_cap_values (Gemma 2's logits): out[row, offset + i] = scale * tanh(out / scale). For
//! the batch rows that hold tokens (step.n_rows: a short chunk leaves the graph's other rows as they
//! are); one thread per value; grid row y is batch row y.

struct Params {
    len: u32,        // values per row (the bias's length)
    row_stride: u32, // elements per batch row of out
    offset: u32,     // where in a row the values start
    scale: f32,      // scale_values' multiplier
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>; // [rows, row_stride]
@group(0) @binding(2) var<storage, read> bias: array<f32>;      // [len] (add_bias)
@group(0) @binding(3) var<uniform> step: Step;

// Where thread gid's value is: row gid.y's value gid.x of the span.
fn spot(gid: vec3<u32>) -> u32 {
    return gid.y * p.row_stride + p.offset + gid.x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.len && gid.y < step.n_rows) {
        out[spot(gid)] += bias[gid.x];
    }
}

@compute @workgroup_size(64)
fn scale_values(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.len && gid.y < step.n_rows) {
        out[spot(gid)] *= p.scale;
    }
}

// v = c * tanh(v / c), c = p.scale (Gemma 2's logits; tanh's argument kept to +-10, where it is +-1
// in f32 already: some GPUs' tanh is NaN far past it).
@compute @workgroup_size(64)
fn soft_cap_values(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (gid.x < p.len && gid.y < step.n_rows) {
        let at = spot(gid);
        out[at] = p.scale * tanh(clamp(out[at] / p.scale, -10.0, 10.0));
    }
}
