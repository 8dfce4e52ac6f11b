//! The workgroup's sums of each lane's RED values, through subgroupAdd: a sum per subgroup, then
//! the subgroups' sums added from workgroup memory (one barrier). Lanes of a subgroup are numbered
//! consecutively in the workgroup's one dimension. Composed with row_walk.wgsl (WG, RED).

const MIN_SUBGROUP: u32 = 4u;
var<workgroup> subgroup_sums: array<array<f32, RED>, WG / MIN_SUBGROUP>; // [subgroups][RED]

// Every lane gets the workgroup's sums.
fn reduce(lid: u32, v: array<f32, RED>) -> array<f32, RED> {
    let size = subgroupAdd(1u);
    let lane = subgroupExclusiveAdd(1u);
    var s: array<f32, RED>;
    for (var j = 0u; j < RED; j++) {
        s[j] = subgroupAdd(v[j]);
    }
    if (lane == 0u) {
        subgroup_sums[lid / size] = s;
    }
    workgroupBarrier();
    var total: array<f32, RED>;
    for (var g = 0u; g < WG / size; g++) {
        for (var j = 0u; j < RED; j++) {
            total[j] += subgroup_sums[g][j];
        }
    }
    return total;
}
