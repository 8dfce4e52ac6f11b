//! matvec_rowwise (CPU family): out[r] (+)= dot(W[r], x) for a quantized [rows, cols] matrix in raw
//! GGUF blocks, a whole row per invocation (no barriers: on CPU adapters they cost more than they
//! give). For the types without a wide decoder (matvec_wide.wgsl). Composed after common.wgsl,
//! quant/<type>.wgsl and matvec_io.wgsl.

// The quant files' block_dot reads x as it is.
fn act4(i: u32) -> vec4<f32> {
    return x4(i);
}

// CPU adapters (lavapipe, SwiftShader), where barriers cost more than they give: a row per thread.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg) * 64u + lid;
    if (row < p.rows) {
        _ = store(row, row_dot(row, 0u, 1u, p.cols, p.row_bytes));
    }
}
