//! matvec_wide: out[r] (+)= dot(W[r], x) on CPU adapters, 4 consecutive rows per thread: each block's
//! activations loaded (block_acts) once for the 4 rows. On lavapipe loading and broadcasting a
//! block's activations costs about what decoding and dotting it does (BENCH.md: 4 rows against 1
//! and 2). A block here is WIDE_ELEMS (32) values: a GGUF block, or a part of a K-quant superblock.
//! A row's blocks are read 16 bytes per
//! load (vec4<u32>) in groups of GROUP_BLOCKS blocks (GROUP_VEC4 loads: load_group) that the quant
//! file dots block by block (group_block_<j>, the calls written out by gpu/compose.rs group_blocks at the
//! group_blocks marker), and any blocks after the last whole group with block_values_wide.
//! Needs rows padded to 16 bytes (`row_bytes` is the padded stride). Branches cost both sides on
//! lavapipe (lanes are masked, not skipped) while loops stop when every lane is done: tails are loops.
//! Composed after common.wgsl, quant/<type>.wgsl, cpu/quant/wide_<type>.wgsl, wide.wgsl, matvec_io.wgsl
//! and acts_plain.wgsl or acts_subgroup.wgsl (Layout::lanes_of_8), and wide_texture.wgsl or
//! wide_buffer.wgsl (where the weights are: load16), one of fold/act_*.wgsl (what the rows are
//! dotted with: x, silu(gate) * up, or rmsnorm(x) * norm_w: act_init, act4) and one of
//! fold/out_*.wgsl (finish4: store, and for a following act_norm leave partial sums of squares).

const ROWS_PER_THREAD: u32 = 4u;

@compute @workgroup_size(16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    acts_init(lid);
    act_init(lid);
    // Rows row0 .. row0 + 3. Rows past the last compute row p.rows - 1 again without storing it:
    // with subgroup activations every lane must take part.
    let row0 = (flat_workgroup(wid, nwg) * 16u + lid) * ROWS_PER_THREAD;
    let rows = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.rows - 1u));
    let base = rows * (p.row_bytes / 16u);
    // Whole groups, then the blocks after the last whole group one at a time (each from the 2 or 3
    // aligned loads around it).
    let n_blocks = p.cols / WIDE_ELEMS;
    let n_groups = n_blocks / GROUP_BLOCKS;
    var acc = vec4<f32>(0.0);
    for (var g = 0u; g < n_groups; g++) {
        let at = g * GROUP_VEC4;
        let g0 = load_group(base.x + at);
        let g1 = load_group(base.y + at);
        let g2 = load_group(base.z + at);
        let g3 = load_group(base.w + at);
        let xi = g * GROUP_BLOCKS * WIDE_ELEMS;
        var x: Vec4x8;
        //@group_blocks
    }
    for (var b = n_groups * GROUP_BLOCKS; b < n_blocks; b++) {
        let x = block_acts(b * WIDE_ELEMS);
        acc += vec4<f32>(dot8(block_values_wide(base.x, b), x), dot8(block_values_wide(base.y, b), x),
                         dot8(block_values_wide(base.z, b), x), dot8(block_values_wide(base.w, b), x));
    }
    finish4(row0, acc);
}
