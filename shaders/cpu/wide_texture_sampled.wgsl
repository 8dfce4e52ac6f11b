//! wide_texture.wgsl's loader through the texture bound as a sampled one: matmul_wide's choice, and
//! every wide kernel's where Layout::texture_storage_loads is off (SwiftShader's sampled loads are
//! the faster; on lavapipe, matmul_wide's: BENCH.md).

@group(0) @binding(5) var weights_tex: texture_2d<u32>; // [ceil(texels / 8192), 8192] texels of rows padded to 16 bytes

fn load16(a: u32) -> vec4<u32> {
    return textureLoad(weights_tex, vec2<u32>(a & 8191u, a >> 13u), 0);
}
