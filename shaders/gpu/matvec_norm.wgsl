//! matvec with the rmsnorm before it folded in (GPU family; the logits): out[r] (+)=
//! dot(W[r], rmsnorm(x) * norm_w), ROWS rows per workgroup walked as row_walk.wgsl says, x's sum
//! of squares summed on the walk (norm_fold.wgsl). Composed after common.wgsl, quant/<type>.wgsl,
//! matvec_io.wgsl (x is read from element 0: x_offset must be 0), norm_fold.wgsl, a reduce_*.wgsl
//! and row_walk.wgsl.

@group(0) @binding(6) var<storage, read> norm_w: array<vec4<f32>>; // [cols / 4]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r0 = flat_workgroup(wid, nwg) * ROWS;
    var rows: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        rows[r] = min(r0 + r, p.rows - 1u) * p.row_bytes;
    }
    let sums = reduce(lid, walk_rows(rows, lid, p.cols));
    let scale = norm_scale(sums[ROWS], p.cols, p.eps);
    if (lid < ROWS && r0 + lid < p.rows) {
        _ = store(r0 + lid, sums[lid] * scale);
    }
}
