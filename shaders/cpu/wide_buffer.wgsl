//! The wide kernels' weights in a storage buffer (rows padded to 16 bytes): load16(a) is the a-th
//! 16 bytes. On lavapipe a storage load is a loop over the SIMD lanes (see wide_texture.wgsl).

@group(0) @binding(5) var<storage, read> weights16: array<vec4<u32>>; // [rows, row_bytes / 16] blocks, rows padded

fn load16(a: u32) -> vec4<u32> {
    return weights16[a];
}
