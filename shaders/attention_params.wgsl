//! attention's parameters and step, shared by gpu/attention_io.wgsl, attention_rowwise.wgsl and
//! attention_lanes.wgsl (composed before each; kernels::AttentionParams mirrors Params).

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,   // a multiple of 4, at most 256
    kv_dim: u32,     // n_kv_heads * head_dim: one cache row
    scale: f32,      // of q k^T: 1 / sqrt(head_dim) (times a RoPE attention factor squared)
    qkv_stride: u32, // elements per row of qkv: (n_heads + 2 n_kv_heads) * head_dim
    n_splits: u32,   // GPU family: the most splits of the KV length dispatched (partials' stride)
    branch_len: u32, // positions per branch cache
    window: u32,     // positions a query sees in a sliding-window layer, its own included; 0: all
    softcap: f32,    // Gemma 2's cap of the scaled scores, c * tanh(s / c); 0: none
    slots: u32,      // a sliding-window layer's ring: the cache's rows, position j in row j % slots; 0: row j
}

// A scaled score s soft-capped where the model caps them (tanh's argument kept to +-10, where it is
// +-1 in f32 already: some GPUs' tanh is NaN far past it).
fn soft_cap(s: f32) -> f32 {
    if (p.softcap > 0.0) {
        return p.softcap * tanh(clamp(s / p.softcap, -10.0, 10.0));
    }
    return s;
}

// The first position a query at position `pos` sees: pos + 1 - window in a sliding-window layer
// (where pos + 1 > window), else 0.
fn first_key(pos: u32) -> u32 {
    if (p.window == 0u || pos < p.window) {
        return 0u;
    }
    return pos + 1u - p.window;
}

// The cache row that holds position j: j itself, or j % slots in a sliding-window layer's ring (the
// ring keeps the last `slots` positions written, slots >= window + a prompt chunk's rows).
fn cache_row(j: u32) -> u32 {
    if (p.slots == 0u || j < p.slots) {
        return j;
    }
    return j % p.slots;
}
