//! rmsnorm: out = x / sqrt(mean(x^2) + eps) * w (add_normed: out += that), one workgroup of 256 threads per vector
//! (workgroup y: batch row y, n elements further on in x and out). Rows from step.n_rows on (the
//! rest of a prompt chunk the grid covers) return at once.

struct Params {
    n: u32,          // vector length
    eps: f32,
    x_offset: u32,
    out_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [n]
@group(0) @binding(2) var<storage, read> w: array<f32>;         // [n]
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [n]
@group(0) @binding(4) var<uniform> step: Step;

// The sum of squares of x[xo + i] for i = first, first + step, ... below n.
fn sum_squares(xo: u32, first: u32, step: u32) -> f32 {
    var ss = 0.0;
    for (var i = first; i < p.n; i += step) {
        let v = x[xo + i];
        ss += v * v;
    }
    return ss;
}

// out[oo + i] = x[xo + i] * scale * w[i] for i = first, first + step, ... below n.
fn write_scaled(xo: u32, oo: u32, first: u32, step: u32, scale: f32) {
    for (var i = first; i < p.n; i += step) {
        out[oo + i] = x[xo + i] * scale * w[i];
    }
}

var<workgroup> red: array<f32, 256>;

// 1 / sqrt(mean(x^2) + eps) of the vector at xo, summed by the workgroup's 256 lanes (lid).
fn workgroup_scale(xo: u32, lid: u32) -> f32 {
    red[lid] = sum_squares(xo, lid, 256u);
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    return 1.0 / sqrt(red[0] / f32(p.n) + p.eps);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (wid.y >= step.n_rows) {
        return; // the whole workgroup
    }
    let xo = p.x_offset + wid.y * p.n;
    write_scaled(xo, p.out_offset + wid.y * p.n, lid, 256u, workgroup_scale(xo, lid));
}

// out += rmsnorm(x) * w, as main (Gemma's post-norms: a block's output normed into the residual).
@compute @workgroup_size(256)
fn add_normed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if (wid.y >= step.n_rows) {
        return; // the whole workgroup
    }
    let xo = p.x_offset + wid.y * p.n;
    let scale = workgroup_scale(xo, lid);
    let oo = p.out_offset + wid.y * p.n;
    for (var i = lid; i < p.n; i += 256u) {
        out[oo + i] += x[xo + i] * scale * w[i];
    }
}
