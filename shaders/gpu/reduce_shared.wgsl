//! The workgroup's sums of each lane's RED values without subgroups: a tree in workgroup memory.
//! Composed with row_walk.wgsl (WG, RED).

var<workgroup> lane_sums: array<array<f32, RED>, WG>; // [WG][RED]

// Every lane gets the workgroup's sums.
fn reduce(lid: u32, v: array<f32, RED>) -> array<f32, RED> {
    lane_sums[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            for (var j = 0u; j < RED; j++) {
                lane_sums[lid][j] += lane_sums[lid + s][j];
            }
        }
        workgroupBarrier();
    }
    return lane_sums[0];
}
