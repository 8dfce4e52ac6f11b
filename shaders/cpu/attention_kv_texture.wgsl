//! attention_lanes' reads of the cache positions before this one, from the KV cache's copy in
//! textures (kernels::cpu::KvMirror, lavapipe): a texel load is a gather of the 8 lanes where a storage
//! load is a loop over them. The kernel still stores this position into the buffers; the host copies
//! new rows into the textures before the next step.

@group(0) @binding(9) var k_mirror: texture_storage_2d<rgba32float, read>;  // [ctx, kv_dim / 4]
@group(0) @binding(10) var v_mirror: texture_storage_2d<rgba32float, read>; // [ctx, kv_dim / 4]

// Vector `col` (of kv_dim / 4) of position j's key and value.
fn cached_k(j: u32, col: u32) -> vec4<f32> {
    return textureLoad(k_mirror, vec2<u32>(col, j));
}
fn cached_v(j: u32, col: u32) -> vec4<f32> {
    return textureLoad(v_mirror, vec2<u32>(col, j));
}
