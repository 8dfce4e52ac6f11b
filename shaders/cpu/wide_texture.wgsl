//! The wide kernels' weights in a texture (CPU adapters): the same padded rows as wide_buffer.wgsl,
//! as texels of 16 bytes, 8192 (kernels::cpu::TEXTURE_WIDTH) per texture row. lavapipe fetches a texel
//! for all SIMD lanes as one gather, where a storage-buffer load is a loop with a bounds check per
//! lane and word (BENCH.md). Bound as a read-only storage texture rather than a sampled one where
//! Layout::texture_storage_loads (lavapipe: its image loads skip the sampler's mip-level path);
//! else wide_texture_sampled.wgsl.

@group(0) @binding(5) var weights_tex: texture_storage_2d<rgba32uint, read>; // [ceil(texels / 8192), 8192] texels of rows padded to 16 bytes

fn load16(a: u32) -> vec4<u32> {
    return textureLoad(weights_tex, vec2<u32>(a & 8191u, a >> 13u));
}
