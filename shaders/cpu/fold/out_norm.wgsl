//! matvec_wide's results stored, and for the rmsnorm a following matvec folds in (fold/act_norm.wgsl)
//! the sum of squares of each workgroup's stored values left in its slot: the workgroup's 16 lanes
//! hold 16 consecutive runs of ROWS_PER_THREAD rows, so the slot is its first row / 64. Summed in
//! workgroup memory, not through a subgroup: a subgroup may be narrower than the workgroup (lavapipe
//! with 8 lanes) or wider (32 lanes on NVIDIA, half of them idle), and the slot must not depend on
//! which. Needs uniform control flow (a barrier).

@group(0) @binding(8) var<storage, read_write> partials_out: array<f32>; // [ceil(rows / 64)]

var<workgroup> squares_of_lane: array<f32, 16>; // [lanes of the workgroup]

fn finish4(row0: u32, v: vec4<f32>) {
    var squares = 0.0;
    for (var k = 0u; k < 4u; k++) {
        if (row0 + k < p.rows) {
            let stored = store(row0 + k, v[k]);
            squares += stored * stored;
        }
    }
    let lane = (row0 / ROWS_PER_THREAD) % 16u;
    squares_of_lane[lane] = squares;
    workgroupBarrier();
    if (lane == 0u) {
        var sum = 0.0;
        for (var i = 0u; i < 16u; i++) {
            sum += squares_of_lane[i];
        }
        partials_out[row0 / (16u * ROWS_PER_THREAD)] = sum;
    }
}
