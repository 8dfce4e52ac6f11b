//! argmax: result[0] = index of the largest logit (the first on ties), one workgroup of 256 threads,
//! so that a token id, not the logits, comes back to the CPU. Workgroup y: row y of [rows, n] logits
//! into result[y].

struct Params {
    n: u32,
    _a: u32,
    _b: u32,
    _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // [n]
@group(0) @binding(2) var<storage, read_write> result: array<u32>; // [1]

var<workgroup> best_val: array<f32, 256>;
var<workgroup> best_idx: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.y * p.n;
    var bv = -3.4e38;
    var bi = 0xffffffffu;
    for (var i = lid; i < p.n; i += 256u) {
        let v = logits[base + i];
        if (v > bv || bi == 0xffffffffu) {
            bv = v;
            bi = i;
        }
    }
    best_val[lid] = bv;
    best_idx[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let v = best_val[lid + s];
            let i = best_idx[lid + s];
            if (v > best_val[lid] || (v == best_val[lid] && i < best_idx[lid])) {
                best_val[lid] = v;
                best_idx[lid] = i;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        result[wid.y] = best_idx[0];
    }
}
