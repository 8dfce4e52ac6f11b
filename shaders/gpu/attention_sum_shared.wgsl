//! attention.wgsl's sum of the scores over the D_SPLIT lanes that share a key, through workgroup
//! memory (adapters or layouts without subgroups; every lane ends with the sum). Called in uniform
//! control flow.

var<workgroup> lane_scores: array<f32, WG * ROWS>; // [WG lanes, ROWS query heads]

fn lane_sums(lid: u32) {
    for (var r = 0u; r < ROWS; r++) {
        lane_scores[lid * ROWS + r] = scores[r];
    }
    workgroupBarrier();
    let first = lid / D_SPLIT * D_SPLIT;
    for (var r = 0u; r < ROWS; r++) {
        var x = 0.0;
        for (var k = 0u; k < D_SPLIT; k++) {
            x += lane_scores[(first + k) * ROWS + r];
        }
        scores[r] = x;
    }
    workgroupBarrier();
}
