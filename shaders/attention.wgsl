//! attention: one query position against kv_len positions, grouped-query heads. The current
//! position's q, k and v come from the qkv output [q | k | v]; earlier positions' k and v from the
//! cache, into which the first query head of each group stores the current ones.
//! One workgroup of 64 threads per query head; positions are walked in chunks of 64 with an online
//! softmax (running max and sum), so no score buffer of context length is needed.

struct Params {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32, // at most 256
    kv_dim: u32,   // n_kv_heads * head_dim: one cache row
    scale: f32,    // 1 / sqrt(head_dim)
    _a: u32,
    _b: u32,
    _c: u32,
}

struct Step {
    pos: u32,
    kv_len: u32,
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;            // [q | k | v] of this position
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;  // [ctx, kv_dim]
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;  // [ctx, kv_dim]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;      // [n_heads, head_dim]

const WG: u32 = 64u;
const MAX_DIMS_PER_THREAD: u32 = 4u; // head_dim <= WG * 4
var<workgroup> q_head: array<f32, 256>;
var<workgroup> k_cur: array<f32, 256>;
var<workgroup> v_cur: array<f32, 256>;
var<workgroup> probs: array<f32, 64>;
var<workgroup> red: array<f32, 64>;

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let group = p.n_heads / p.n_kv_heads;
    let kv_off = (h / group) * p.head_dim;
    let q_rows = p.n_heads * p.head_dim;
    let pos = step.kv_len - 1u;
    for (var d = lid; d < p.head_dim; d += WG) {
        q_head[d] = qkv[h * p.head_dim + d];
        k_cur[d] = qkv[q_rows + kv_off + d];
        v_cur[d] = qkv[q_rows + p.kv_dim + kv_off + d];
        if (h % group == 0u) {
            k_cache[pos * p.kv_dim + kv_off + d] = k_cur[d];
            v_cache[pos * p.kv_dim + kv_off + d] = v_cur[d];
        }
    }
    workgroupBarrier();
    let n = step.kv_len;
    var m = -3.4e38;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS_PER_THREAD>;
    for (var c0 = 0u; c0 < n; c0 += WG) {
        let j = c0 + lid;
        var s = -3.4e38;
        if (j < n) {
            var dot = 0.0;
            if (j == pos) {
                for (var d = 0u; d < p.head_dim; d++) {
                    dot += q_head[d] * k_cur[d];
                }
            } else {
                let row = j * p.kv_dim + kv_off;
                for (var d = 0u; d < p.head_dim; d++) {
                    dot += q_head[d] * k_cache[row + d];
                }
            }
            s = dot * p.scale;
        }
        let m_new = max(m, reduce_max(lid, s));
        let corr = exp(m - m_new);
        let pj = select(0.0, exp(s - m_new), j < n);
        probs[lid] = pj;
        l = l * corr + reduce_sum(lid, pj);
        let count = min(WG, n - c0);
        for (var k = 0u; k < MAX_DIMS_PER_THREAD; k++) {
            let d = lid + k * WG;
            if (d < p.head_dim) {
                var a = acc[k] * corr;
                for (var jj = 0u; jj < count; jj++) {
                    let j = c0 + jj;
                    let vj = select(v_cache[j * p.kv_dim + kv_off + d], v_cur[d], j == pos);
                    a += probs[jj] * vj;
                }
                acc[k] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    for (var k = 0u; k < MAX_DIMS_PER_THREAD; k++) {
        let d = lid + k * WG;
        if (d < p.head_dim) {
            out[h * p.head_dim + d] = acc[k] / l;
        }
    }
}
