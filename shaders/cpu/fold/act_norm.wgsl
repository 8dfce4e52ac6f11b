//! matvec_wide's rows dotted with rmsnorm(x) * norm_w: rmsnorm folded in. The sum of squares of x
//! comes from the partial sums the matvec that stored x left (fold/out_norm.wgsl: one per 64 rows),
//! a few loads (4 slots each) instead of all of x. Every lane sums them all itself: no subgroup or
//! workgroup size is assumed.

@group(0) @binding(6) var<storage, read> norm_w: array<vec4<f32>>;      // [cols / 4]
@group(0) @binding(7) var<storage, read> partials_in: array<vec4<f32>>; // [ceil(cols / 256)]: ceil(cols / 64) slots, zero-padded to 4

var<private> inv_rms: f32;

fn act_init(lid: u32) {
    let n4 = ((p.cols + 63u) / 64u + 3u) / 4u;
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < n4; i++) {
        s += partials_in[i];
    }
    inv_rms = 1.0 / sqrt((s.x + s.y + s.z + s.w) / f32(p.cols) + p.eps);
}

fn act4(i: u32) -> vec4<f32> {
    return x4(i) * inv_rms * norm_w[i >> 2u];
}
