//! matvec_wide's results stored, and for the rmsnorm a following matvec folds in (fold/act_norm.wgsl)
//! the sum of squares of each subgroup's stored values left in its slot: its lanes hold consecutive
//! runs of ROWS_PER_THREAD rows, so the slot is its first row / (p.subgroup_size: the lanes of one
//! workgroup that share a subgroup, at most its 16 * ROWS_PER_THREAD). Needs subgroups and uniform
//! control flow.

@group(0) @binding(8) var<storage, read_write> partials_out: array<f32>; // [ceil(rows / (subgroup size * 4))]

fn finish4(row0: u32, v: vec4<f32>) {
    var squares = 0.0;
    for (var k = 0u; k < 4u; k++) {
        if (row0 + k < p.rows) {
            let stored = store(row0 + k, v[k]);
            squares += stored * stored;
        }
    }
    let sum = subgroupAdd(squares);
    let rows_per_slot = p.subgroup_size * ROWS_PER_THREAD;
    if (row0 % rows_per_slot == 0u) {
        partials_out[row0 / rows_per_slot] = sum;
    }
}
