//! matvec (GPU family): out[r] (+)= dot(W[r], x) for a quantized [rows, cols] matrix in raw GGUF
//! blocks, ROWS rows per workgroup walked as row_walk.wgsl says. Composed after common.wgsl,
//! quant/<type>.wgsl, matvec_io.wgsl, a reduce_*.wgsl and row_walk.wgsl.

// The quant files' block_dot reads x as it is.
fn act4(i: u32) -> vec4<f32> {
    return x4(i);
}
fn raw4(i: u32) -> vec4<f32> {
    return x4(i);
}
fn act_of(v: vec4<f32>, i: u32) -> vec4<f32> {
    return v;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
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
