//! rmsnorm on CPU adapters with subgroups of at least 8 lanes (composed after rmsnorm.wgsl: its
//! params and bindings): a workgroup of 8 lanes per vector, its sum of squares added through the
//! subgroup. No workgroup barriers: on lavapipe the 256-thread kernel's 9 barriers cost more than
//! the sums (BENCH.md).

@compute @workgroup_size(8)
fn main_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let ss = subgroupAdd(sum_squares(p.x_offset + wid.y * p.n, lane, 8u));
    write_scaled(p.x_offset + wid.y * p.n, p.out_offset + wid.y * p.n, lane, 8u, 1.0 / sqrt(ss / f32(p.n) + p.eps));
}
