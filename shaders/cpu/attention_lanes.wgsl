//! attention_lanes: one token's attention (the decode graph) on CPU adapters with subgroups of at
//! least 8 lanes, composed after attention_params.wgsl and attention_rowwise.wgsl (its bindings,
//! rotate4 and softmax_step; with ROPE true). A workgroup of 8 per kv head: lane i walks cache positions i, i + 8, ... for all the group's query
//! heads at once, so each key and value is loaded once for the group and the
//! 8 lanes' loads go out together; the lanes' online softmaxes are merged through the subgroup,
//! then this position (q | k | v from qkv, rotated here) is added and each lane stores its share
//! of the output and of k and v into the cache. Composed after `const GROUP: u32 = ...; const HD4:
//! u32 = ...;` (query heads per kv head, head_dim / 4). The walk over the cache positions replaces
//! the `//@positions` line: written out by gpu/compose.rs with a named value per query vector and
//! accumulator where group * head_dim / 4 <= 64 (a private array indexed at run time is memory on
//! lavapipe), else attention_lanes_loop.wgsl.

// Vector `col` (of kv_dim / 4) of cache position j's key and value.
fn cached_k(j: u32, col: u32) -> vec4<f32> {
    return k_cache[j * (p.kv_dim / 4u) + col];
}
fn cached_v(j: u32, col: u32) -> vec4<f32> {
    return v_cache[j * (p.kv_dim / 4u) + col];
}

@compute @workgroup_size(8)
fn decode_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let kvh = wid.x;
    let group = GROUP;
    let hd4 = HD4;
    let pos = step.pos;
    let kv_off4 = kvh * hd4;
    let own_k = p.n_heads * hd4 + kv_off4; // in vec4 of the qkv row
    let own_v = own_k + p.kv_dim / 4u;
    // The group's queries, rotated and scaled; their running max, sum and weighted values.
    var q: array<vec4<f32>, GROUP * HD4>;
    var acc: array<vec4<f32>, GROUP * HD4>;
    var m: array<f32, GROUP>;
    var l: array<f32, GROUP>;
    for (var h = 0u; h < group; h++) {
        let qa = (kvh * group + h) * hd4;
        for (var i = 0u; i < hd4; i++) {
            q[h * hd4 + i] = rotate4(qkv[qa + i], i) * p.scale;
        }
        m[h] = -3.4e38;
    }
    var k: array<vec4<f32>, HD4>; // a key
    //@positions
    // This position's key and value (rotated key), and the lanes' shares stored into the cache.
    for (var i = 0u; i < hd4; i++) {
        k[i] = rotate4(qkv[own_k + i], i);
    }
    let dst = pos * (p.kv_dim / 4u) + kv_off4;
    for (var i = lane; i < hd4; i += 8u) {
        k_cache[dst + i] = k[i];
        v_cache[dst + i] = qkv[own_v + i];
    }
    let out_row = kvh * group * hd4;
    for (var h = 0u; h < group; h++) {
        // Merge the lanes, then add this position.
        var m_all = subgroupMax(m[h]);
        let scale = exp(m[h] - m_all);
        var l_all = subgroupAdd(l[h] * scale);
        var s = 0.0;
        for (var i = 0u; i < hd4; i++) {
            s += dot(q[h * hd4 + i], k[i]);
        }
        let cp = softmax_step(&m_all, &l_all, s);
        let inv = 1.0 / l_all;
        for (var i = 0u; i < hd4; i++) {
            let merged = subgroupAdd(acc[h * hd4 + i] * scale);
            if (i % 8u == lane) {
                out[out_row + h * hd4 + i] = (merged * cp.x + cp.y * qkv[own_v + i]) * inv;
            }
        }
    }
}
