//! matvec_wide: out[r] (+)= dot(W[r], x) on CPU adapters, a row per thread, the row's blocks read
//! 16 bytes per load (vec4<u32>) in groups of GROUP_BLOCKS blocks (GROUP_VEC4 loads) that the quant
//! file decodes with group_dot, and any blocks after the last whole group with block_dot_wide.
//! Needs rows padded to 16 bytes (`row_bytes` is the padded stride). Branches cost both sides on
//! lavapipe (lanes are masked, not skipped) while loops stop when every lane is done: tails are loops.
//! On lavapipe every storage load runs a loop over the SIMD lanes, so bytes per load is what counts.
//! Composed after common.wgsl, quant/<type>.wgsl, quant/wide_<type>.wgsl and matvec_io.wgsl.

@group(0) @binding(5) var<storage, read> weights16: array<vec4<u32>>; // [rows, row_bytes / 16] blocks, rows padded

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = flat_workgroup(wid, nwg) * 64u + lid;
    if (row >= p.rows) {
        return;
    }
    // Whole groups, then the blocks after the last whole group one at a time (each from the 2 or 3
    // aligned loads around it).
    let n_blocks = p.cols / BLOCK_ELEMS;
    let n_groups = n_blocks / GROUP_BLOCKS;
    let base16 = row * (p.row_bytes / 16u);
    var acc = 0.0;
    for (var g = 0u; g < n_groups; g++) {
        acc += group_dot(base16 + g * GROUP_VEC4, g * GROUP_BLOCKS * BLOCK_ELEMS);
    }
    for (var b = n_groups * GROUP_BLOCKS; b < n_blocks; b++) {
        acc += block_dot_wide(base16, b, b * BLOCK_ELEMS);
    }
    store(row, acc);
}

// Words w .. w+3 of the 8 words a, b (w in 0..3).
fn words_at(a: vec4<u32>, b: vec4<u32>, w: u32) -> vec4<u32> {
    let lo = select(a, vec4<u32>(a.yzw, b.x), w == 1u);
    let hi = select(vec4<u32>(a.zw, b.xy), vec4<u32>(a.w, b.xyz), w == 3u);
    return select(lo, hi, w >= 2u);
}
