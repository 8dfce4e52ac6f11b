//! matvec_wide's rows dotted with rmsnorm(x) * norm_w: rmsnorm folded in. The sum of squares of x
//! comes from the partial sums the matvec that stored x left (fold/out_norm.wgsl: one per subgroup
//! of its rows, ROWS_PER_THREAD rows per lane), summed through a subgroup: a few loads instead of
//! all of x. Needs subgroups (of one size on the device; p.subgroup_size: the lanes of one workgroup
//! that share a subgroup) and uniform control flow at act_init.

@group(0) @binding(6) var<storage, read> norm_w: array<vec4<f32>>;      // [cols / 4]
@group(0) @binding(7) var<storage, read> partials_in: array<vec4<f32>>; // [ceil(cols / (subgroup size * 4))], zero-padded to 4

var<private> inv_rms: f32;

fn act_init(lid: u32) {
    let size = p.subgroup_size;
    let lane = lid % size; // subgroups are runs of consecutive invocations
    let rows_per_slot = size * ROWS_PER_THREAD;
    let n4 = ((p.cols + rows_per_slot - 1u) / rows_per_slot + 3u) / 4u;
    var s = vec4<f32>(0.0);
    for (var i = lane; i < n4; i += size) {
        s += partials_in[i];
    }
    let total = subgroupAdd(s.x + s.y + s.z + s.w);
    inv_rms = 1.0 / sqrt(total / f32(p.cols) + p.eps);
}

fn act4(i: u32) -> vec4<f32> {
    return x4(i) * inv_rms * norm_w[i >> 2u];
}
