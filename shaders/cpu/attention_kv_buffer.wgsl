//! attention_lanes' reads of the cache positions before this one, from the KV-cache buffers.

// Vector `col` (of kv_dim / 4) of position j's key and value.
fn cached_k(j: u32, col: u32) -> vec4<f32> {
    return k_cache[j * (p.kv_dim / 4u) + col];
}
fn cached_v(j: u32, col: u32) -> vec4<f32> {
    return v_cache[j * (p.kv_dim / 4u) + col];
}
