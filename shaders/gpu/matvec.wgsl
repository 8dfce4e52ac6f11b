//! matvec (GPU family): out[r] (+)= dot(W[r], x) for a quantized [rows, cols] matrix in raw GGUF
//! blocks, ROWS rows per workgroup walked as row_walk.wgsl says, its activations as an activations
//! part says (matvec_acts.wgsl: x as stored; matvec_combine.wgsl: attention's splits merged), which
//! defines act4, raw4, act_of and prepare_acts (run by every lane before the walk). Composed after
//! common.wgsl, quant/<type>.wgsl, matvec_io.wgsl, the activations part, a reduce_*.wgsl and
//! row_walk.wgsl.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    prepare_acts(lid);
    let r0 = flat_workgroup(wid, nwg) * ROWS;
    var rows: array<u32, ROWS>;
    for (var r = 0u; r < ROWS; r++) {
        rows[r] = min(r0 + r, p.rows - 1u) * p.row_bytes;
    }
    let sums = reduce(lid, walk_rows(rows, lid, p.cols));
    if (lid < ROWS && r0 + lid < p.rows) {
        _ = store(r0 + lid, sums[lid]);
    }
}
