//! matmul_tiled.wgsl's products in f32: each tile value widened to f32 as it is read, every product
//! added straight into the thread's sums (`part` is them). Tiles of f32, or of f16 where the layout
//! keeps products in f32 (Layout::f16_products off).

alias prod1 = f32;

// After a K step's products: nothing to add.
fn step_done() {
}

// The thread's sum for part[a].
fn sums(a: u32) -> vec4<f32> {
    return part[a];
}
