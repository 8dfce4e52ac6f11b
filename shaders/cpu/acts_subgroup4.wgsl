//! matvec_wide's activations through a subgroup of 4 lanes (SwiftShader's): lane i loads a block's
//! activation vectors i % 4 and i % 4 + 4, and the others take them by broadcast: 2 loads instead of
//! 8 per invocation (acts_subgroup.wgsl is the same for 8 lanes).
//! Needs uniform control flow (every lane active) wherever block_acts is called.

var<private> acts_lane: u32;

// At the entry point: the lane's index in its subgroup, modulo 4 (subgroups are runs of
// consecutive invocations).
fn acts_init(lid: u32) {
    acts_lane = lid % 4u;
}

// Activations xi .. xi+31 (through the kernel's act4).
fn block_acts(xi: u32) -> Vec4x8 {
    let lo = act4(xi + 4u * acts_lane);
    let hi = act4(xi + 16u + 4u * acts_lane);
    return Vec4x8(subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u),
                 subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u));
}
