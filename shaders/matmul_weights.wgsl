//! The weight loaders matmul kernels share (GPU and CPU families): elements of row `row` of the
//! matrix at p.w_row0, dequantized one or eight at a time. Composed after common.wgsl,
//! quant/<type>.wgsl and matmul_io.wgsl.

// The quant files' block_dot reads activations through act4; matmul reads them directly.
fn act4(i: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

// Element k of row `row`, dequantized.
fn weight_at(row: u32, k: u32) -> f32 {
    return dequant_at((p.w_row0 + row) * p.row_bytes + (k / BLOCK_ELEMS) * BLOCK_BYTES, k % BLOCK_ELEMS);
}

// Elements k .. k+7 of row `row` (k a multiple of 8, k + 8 <= cols), dequantized together.
fn weight8(row: u32, k: u32) -> array<vec4<f32>, 2> {
    return dequant8((p.w_row0 + row) * p.row_bytes + (k / BLOCK_ELEMS) * BLOCK_BYTES, k % BLOCK_ELEMS);
}
