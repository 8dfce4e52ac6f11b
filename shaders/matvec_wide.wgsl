//! matvec_wide: out[r] (+)= dot(W[r], x) on CPU adapters, a row per thread, the row's blocks read
//! 16 bytes per load (vec4<u32>) in groups of GROUP_BLOCKS blocks (GROUP_VEC4 loads) that the quant
//! file decodes with group_dot, and any blocks after the last whole group with block_values_wide.
//! Needs rows padded to 16 bytes (`row_bytes` is the padded stride). Branches cost both sides on
//! lavapipe (lanes are masked, not skipped) while loops stop when every lane is done: tails are loops.
//! On lavapipe every storage load runs a loop over the SIMD lanes, so bytes per load is what counts.
//! Composed after common.wgsl, quant/<type>.wgsl, quant/wide_<type>.wgsl, wide.wgsl, matvec_io.wgsl
//! and acts_plain.wgsl or acts_subgroup.wgsl (Gpu::subgroup_acts), and wide_texture.wgsl or
//! wide_buffer.wgsl (where the weights are: load16), one of fold/act_*.wgsl (what the rows are
//! dotted with: x, silu(gate) * up, or rmsnorm(x) * norm_w: act_init, act4) and one of
//! fold/out_*.wgsl (finish: store, and for a following act_norm leave partial sums of squares).

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    acts_init(lid);
    act_init(lid);
    // Invocations past the last row compute row p.rows - 1 again without storing it: with
    // subgroup activations every lane must take part.
    let row = flat_workgroup(wid, nwg) * 64u + lid;
    let r = min(row, p.rows - 1u);
    // Whole groups, then the blocks after the last whole group one at a time (each from the 2 or 3
    // aligned loads around it).
    let n_blocks = p.cols / BLOCK_ELEMS;
    let n_groups = n_blocks / GROUP_BLOCKS;
    let base16 = r * (p.row_bytes / 16u);
    var acc = 0.0;
    for (var g = 0u; g < n_groups; g++) {
        acc += group_dot(base16 + g * GROUP_VEC4, g * GROUP_BLOCKS * BLOCK_ELEMS);
    }
    for (var b = n_groups * GROUP_BLOCKS; b < n_blocks; b++) {
        acc += dot8(block_values_wide(base16, b), block_acts(b * BLOCK_ELEMS));
    }
    finish(row, acc);
}

