//! matvec_wide's activations, plainly: every invocation loads a block's 8 activation vectors.

fn acts_init(lid: u32) {}

// Activations xi .. xi+31 (through the kernel's act4).
fn block_acts(xi: u32) -> Vec4x8 {
    return Vec4x8(act4(xi), act4(xi + 4u), act4(xi + 8u), act4(xi + 12u), act4(xi + 16u), act4(xi + 20u), act4(xi + 24u), act4(xi + 28u));
}
