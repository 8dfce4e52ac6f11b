//! matvec (GPU family): out[r] (+)= dot(W[r], x) for a quantized [rows, cols] matrix in raw GGUF
//! blocks: 16 threads per row striding over the row's blocks, 4 rows per workgroup, a
//! workgroup-memory reduction. Composed after common.wgsl, quant/<type>.wgsl and matvec_io.wgsl.

// The quant files' block_dot reads x as it is.
fn act4(i: u32) -> vec4<f32> {
    return x4(i);
}

const THREADS_PER_ROW: u32 = 16u;
const ROWS_PER_WG: u32 = 4u;
var<workgroup> partial: array<f32, 64>;

// GPUs: 16 threads per row, 4 rows per workgroup, a workgroup-memory reduction.
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = lid % THREADS_PER_ROW;
    let row = flat_workgroup(wid, nwg) * ROWS_PER_WG + lid / THREADS_PER_ROW;
    var acc = 0.0;
    if (row < p.rows) {
        acc = row_dot(row, t, THREADS_PER_ROW, p.cols, p.row_bytes);
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var s = THREADS_PER_ROW / 2u; s > 0u; s >>= 1u) {
        if (t < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if (t == 0u && row < p.rows) {
        _ = store(row, partial[lid]);
    }
}
