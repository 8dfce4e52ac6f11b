//! rmsnorm on CPU adapters with subgroups (composed after rmsnorm.wgsl: its params and bindings,
//! and after `const LANES: u32 = ...;`, Layout::act_lanes: 8, or 4 on SwiftShader's 4-lane
//! subgroups): a workgroup of LANES lanes per vector, one subgroup, its sum of squares added through
//! the subgroup. No workgroup barriers: on lavapipe the 256-thread kernel's 9 barriers cost more
//! than the sums, on SwiftShader 20 ms a prompt chunk's rmsnorm (BENCH.md).

@compute @workgroup_size(LANES)
fn main_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    if (wid.y >= step.n_rows) {
        return; // the whole workgroup
    }
    let ss = subgroupAdd(sum_squares(p.x_offset + wid.y * p.n, lane, LANES));
    write_scaled(p.x_offset + wid.y * p.n, p.out_offset + wid.y * p.n, lane, LANES, 1.0 / sqrt(ss / f32(p.n) + p.eps));
}
