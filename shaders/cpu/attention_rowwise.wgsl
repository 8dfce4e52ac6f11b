//! attention_rowwise: attention.wgsl's computation on CPU adapters (lavapipe, SwiftShader), where
//! workgroup barriers are dear and every storage load is a loop over the SIMD lanes: one invocation
//! per (row, head) walks all its positions (a sliding-window layer's last p.window) alone with an online softmax, no barriers, no splits,
//! and every load and store is a vec4 (head_dim, kv_dim and the qkv row a multiple of 4). Same
//! bindings as attention.wgsl, and the step's rotations at 8. Grid: n_rows * n_heads invocations,
//! 8 per workgroup. Composed after attention_params.wgsl and `const ROPE: bool = ...;`: with ROPE
//! (one token, the decode graph: its rope dispatch saved), q and the token's key arrive unrotated
//! and are rotated here by the step's rotations (kernels::cpu::rope_rotations, written by the host each
//! step), the key stored rotated; without, rope.wgsl has rotated them.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;            // [rows, qkv_stride / 4]
@group(0) @binding(3) var<storage, read_write> k_cache: array<vec4<f32>>;  // [ctx or slots, kv_dim / 4]
@group(0) @binding(4) var<storage, read_write> v_cache: array<vec4<f32>>;  // [ctx or slots, kv_dim / 4]
@group(0) @binding(5) var<storage, read_write> k_branch: array<vec4<f32>>; // [branches, branch_len, kv_dim / 4]
@group(0) @binding(6) var<storage, read_write> v_branch: array<vec4<f32>>; // [branches, branch_len, kv_dim / 4]
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;      // [rows, n_heads * head_dim / 4]
@group(0) @binding(8) var<storage, read> rotations: array<vec4<f32>>;      // [head_dim / 4] (with ROPE)

// Vector i of a head (dims 4i .. 4i + 3: pairs 2i and 2i + 1) rotated for the step's position, as
// rope.wgsl rotates it: rotations[i] = (cos, sin) of pair 2i, then of pair 2i + 1 ((1, 0) past
// n_rot / 2).
fn rotate4(v: vec4<f32>, i: u32) -> vec4<f32> {
    let cs = rotations[i];
    return vec4<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x, v.z * cs.z - v.w * cs.w, v.z * cs.w + v.w * cs.z);
}

// Vector i of the batch's own key (or query) at qkv vector `at`: rotated here with ROPE.
fn own_key4(at: u32, i: u32) -> vec4<f32> {
    if (ROPE) {
        return rotate4(qkv[at], i);
    }
    return qkv[at];
}

// Adds a position's score s to a running softmax (max m, sum l): returns the factor for what was
// summed so far and the position's weight.
fn softmax_step(m: ptr<function, f32>, l: ptr<function, f32>, s: f32) -> vec2<f32> {
    let m_new = max(*m, s);
    let corr = exp(*m - m_new);
    let weight = exp(s - m_new);
    *l = *l * corr + weight;
    *m = m_new;
    return vec2<f32>(corr, weight);
}

// Where position j's key (is_v = false) or value vectors start (in vec4), for batch row r: in qkv
// (the batch's own positions: kind 0), the row's branch (kind 1) or the cache (kind 2).
struct Src {
    kind: u32,
    at: u32,
}

fn source(j: u32, r: u32, kv_off: u32, is_v: bool) -> Src {
    let own = select(0u, p.kv_dim, is_v) + p.n_heads * p.head_dim + kv_off;
    if (j >= step.pos) {
        let row = select(r, j - step.pos, step.pos_step == 1u);
        return Src(0u, (row * p.qkv_stride + own) / 4u);
    }
    if (step.branch == 1u && j >= step.prefix_len) {
        return Src(1u, ((r * p.branch_len + j - step.prefix_len) * p.kv_dim + kv_off) / 4u);
    }
    return Src(2u, (cache_row(j) * p.kv_dim + kv_off) / 4u);
}

fn load4(kind: u32, at: u32, is_v: bool) -> vec4<f32> {
    if (kind == 2u) {
        if (is_v) {
            return v_cache[at];
        }
        return k_cache[at];
    }
    if (kind == 0u) {
        return qkv[at];
    }
    if (is_v) {
        return v_branch[at];
    }
    return k_branch[at];
}

// Stores batch row r's key and value head at kv_off where later batches read them: the cache at
// pos_r, or for candidates the row's branch.
fn store_kv(r: u32, pos_r: u32, kv_off: u32) {
    let kq = (r * p.qkv_stride + p.n_heads * p.head_dim + kv_off) / 4u;
    let hd4 = p.head_dim / 4u;
    let kv4 = p.kv_dim / 4u;
    if (step.branch == 1u) {
        let dst = ((r * p.branch_len + pos_r - step.prefix_len) * p.kv_dim + kv_off) / 4u;
        for (var d = 0u; d < hd4; d++) {
            k_branch[dst + d] = own_key4(kq + d, d);
            v_branch[dst + d] = qkv[kq + kv4 + d];
        }
    } else {
        let dst = (cache_row(pos_r) * p.kv_dim + kv_off) / 4u;
        for (var d = 0u; d < hd4; d++) {
            k_cache[dst + d] = own_key4(kq + d, d);
            v_cache[dst + d] = qkv[kq + kv4 + d];
        }
    }
}

@compute @workgroup_size(8)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x / p.n_heads;
    let h = gid.x % p.n_heads;
    if (r >= step.n_rows) {
        return;
    }
    let group = p.n_heads / p.n_kv_heads;
    let kv_off = (h / group) * p.head_dim;
    let pos_r = step.pos + r * step.pos_step;
    let hd4 = p.head_dim / 4u;
    if (h % group == 0u) {
        store_kv(r, pos_r, kv_off);
    }
    let qa = (r * p.qkv_stride + h * p.head_dim) / 4u;
    var q: array<vec4<f32>, 64>;
    for (var i = 0u; i < hd4; i++) {
        q[i] = own_key4(qa + i, i) * p.scale;
    }
    var acc: array<vec4<f32>, 64>;
    var m = -3.4e38;
    var l = 0.0;
    // Positions before the batch (cache or branch), then the batch's own (qkv): two loops, so that
    // the keys' rotation (with ROPE) runs for the own positions alone.
    let first = first_key(pos_r); // a sliding-window layer's first position
    for (var j = first; j < min(step.pos, pos_r + 1u); j++) {
        let ks = source(j, r, kv_off, false);
        let vs = source(j, r, kv_off, true);
        var s = 0.0;
        for (var i = 0u; i < hd4; i++) {
            s += dot(q[i], load4(ks.kind, ks.at + i, false));
        }
        let cp = softmax_step(&m, &l, soft_cap(s));
        for (var i = 0u; i < hd4; i++) {
            acc[i] = acc[i] * cp.x + cp.y * load4(vs.kind, vs.at + i, true);
        }
    }
    for (var j = max(first, min(step.pos, pos_r)); j <= pos_r; j++) {
        let ks = source(j, r, kv_off, false);
        let vs = source(j, r, kv_off, true);
        var s = 0.0;
        for (var i = 0u; i < hd4; i++) {
            s += dot(q[i], own_key4(ks.at + i, i));
        }
        let cp = softmax_step(&m, &l, soft_cap(s));
        for (var i = 0u; i < hd4; i++) {
            acc[i] = acc[i] * cp.x + cp.y * qkv[vs.at + i];
        }
    }
    let o = (r * p.n_heads * p.head_dim + h * p.head_dim) / 4u;
    for (var i = 0u; i < hd4; i++) {
        out[o + i] = acc[i] / l;
    }
}
