//! moe_sum: x[t] += sum over t's routed slots j of weight_tj * y[t, j] (the experts' down
//! projections, weighted by the route). One thread per value; grid row y is token t.

struct Params {
    dim: u32,
    n_used: u32,
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;         // [tokens, n_used, dim]
@group(0) @binding(2) var<storage, read> route: array<u32>;     // [tokens, n_used, 2]: expert, bitcast weight
@group(0) @binding(3) var<storage, read_write> x: array<f32>;   // [tokens, dim]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    let t = gid.y;
    if (r >= p.dim) {
        return;
    }
    var acc = 0.0;
    for (var j = 0u; j < p.n_used; j++) {
        let i = t * p.n_used + j;
        acc += bitcast<f32>(route[2u * i + 1u]) * y[i * p.dim + r];
    }
    x[t * p.dim + r] += acc;
}
