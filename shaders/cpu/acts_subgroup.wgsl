//! matvec_wide's activations through a subgroup (of at least 8 lanes): lane i loads a block's
//! activation vector i % 8 and the others take it by broadcast. Every invocation needs the same
//! 32 values, so this is 1 load instead of 8 per invocation: on lavapipe each storage load is a
//! loop over the SIMD lanes.
//! Needs uniform control flow (every lane active) wherever block_acts is called.

var<private> acts_lane: u32;

// At the entry point: the lane's index in its subgroup, modulo 8, from the invocation's index in
// its workgroup (`lid`): subgroups are runs of consecutive invocations (lavapipe, GPUs), and a
// subgroup operation to ask costs as much as a storage load on lavapipe.
fn acts_init(lid: u32) {
    acts_lane = lid % 8u;
}

// Activations xi .. xi+31 (through the kernel's act4).
fn block_acts(xi: u32) -> Vec4x8 {
    let mine = act4(xi + 4u * acts_lane);
    return Vec4x8(subgroupBroadcast(mine, 0u), subgroupBroadcast(mine, 1u), subgroupBroadcast(mine, 2u), subgroupBroadcast(mine, 3u),
                 subgroupBroadcast(mine, 4u), subgroupBroadcast(mine, 5u), subgroupBroadcast(mine, 6u), subgroupBroadcast(mine, 7u));
}
