//! swiglu_packed: gate = act(gate) * up in place, with up in the same buffer,
//! up_offset values after gate (the output of one matvec over [Wgate; Wup]). Composed after
//! swiglu.wgsl (its Params and bindings) and glu.wgsl.

@compute @workgroup_size(64)
fn main_packed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * nwg.x * 64u + gid.x;
    if (i >= p.n) {
        return;
    }
    gate[i] = act_mul(gate[i], gate[p.up_offset + i]);
}
