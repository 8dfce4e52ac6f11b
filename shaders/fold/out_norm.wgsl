//! matvec_wide's results stored, and for the rmsnorm a following matvec folds in (fold/act_norm.wgsl)
//! the sum of squares of each subgroup's stored values left in its slot: its lanes are consecutive
//! rows, so the slot is its first row / subgroup size (p.subgroup_size). Needs subgroups and uniform
//! control flow.

@group(0) @binding(8) var<storage, read_write> partials_out: array<f32>; // [ceil(rows / subgroup size)]

fn finish(row: u32, v: f32) {
    var stored = 0.0;
    if (row < p.rows) {
        stored = store(row, v);
    }
    let sum = subgroupAdd(stored * stored);
    if (row % p.subgroup_size == 0u) {
        partials_out[row / p.subgroup_size] = sum;
    }
}
