//! attention: softmax(q k^T * scale) v for the rows of a batch, grouped-query heads, causal.
//! Row r sits at position pos + r * pos_step (a prompt chunk: pos_step 1; n candidates decoding side
//! by side: pos_step 0) and sees positions 0 ..= its own. Keys and values of the batch's own
//! positions come from `qkv` = [rows, q | k | v]; earlier ones from the cache, or, for candidates
//! (branch = 1), positions from prefix_len on from the row's own branch cache. The first query head
//! of each group stores the row's k and v (split 0 only), where the next batch will read them.
//! Workgroup (head, row, split): positions are cut into n_splits ranges (flash-decoding: more
//! workgroups on a long context); each walks its range in chunks of 64 with an online softmax.
//! With one split it writes the output; with more, `combine` merges the splits' partial results.
//! Composed after attention_params.wgsl. CPU adapters run attention_rowwise.wgsl instead.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<f32>;             // [rows, qkv_stride]
@group(0) @binding(3) var<storage, read_write> k_cache: array<f32>;   // [ctx, kv_dim]
@group(0) @binding(4) var<storage, read_write> v_cache: array<f32>;   // [ctx, kv_dim]
@group(0) @binding(5) var<storage, read_write> k_branch: array<f32>;  // [branches, branch_len, kv_dim]
@group(0) @binding(6) var<storage, read_write> v_branch: array<f32>;  // [branches, branch_len, kv_dim]
@group(0) @binding(7) var<storage, read_write> out: array<f32>;       // [rows, n_heads * head_dim]
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;   // [rows, n_heads, n_splits, head_dim + 2]

const WG: u32 = 64u;
const MAX_DIMS_PER_THREAD: u32 = 4u; // head_dim <= WG * 4
var<workgroup> q_head: array<f32, 256>;
var<workgroup> probs: array<f32, 64>;
var<workgroup> v_rows: array<u32, 64>; // per position of the chunk: its value row (kind << 30 | start)
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

// Where position j's key (is_v = false) or value row starts, for batch row r at position pos_r:
// in qkv (the batch's own positions; returned with bit 31 clear, kind 0), the branch (kind 1) or
// the cache (kind 2).
struct Src {
    kind: u32,
    at: u32,
}

fn source(j: u32, r: u32, kv_off: u32, is_v: bool) -> Src {
    let own = select(0u, p.kv_dim, is_v) + p.n_heads * p.head_dim + kv_off;
    if (j >= step.pos) {
        let row = select(r, j - step.pos, step.pos_step == 1u);
        return Src(0u, row * p.qkv_stride + own);
    }
    if (step.branch == 1u && j >= step.prefix_len) {
        return Src(1u, (r * p.branch_len + j - step.prefix_len) * p.kv_dim + kv_off);
    }
    return Src(2u, j * p.kv_dim + kv_off);
}

// q . k for the key row at s (one branch per row, not per element).
fn score(s: Src) -> f32 {
    var dot = 0.0;
    if (s.kind == 2u) {
        for (var d = 0u; d < p.head_dim; d++) {
            dot += q_head[d] * k_cache[s.at + d];
        }
    } else if (s.kind == 1u) {
        for (var d = 0u; d < p.head_dim; d++) {
            dot += q_head[d] * k_branch[s.at + d];
        }
    } else {
        for (var d = 0u; d < p.head_dim; d++) {
            dot += q_head[d] * qkv[s.at + d];
        }
    }
    return dot;
}

// Element d of the value row packed as kind << 30 | start.
fn load_v(packed: u32, d: u32) -> f32 {
    let at = (packed & 0x3fffffffu) + d;
    let kind = packed >> 30u;
    if (kind == 2u) {
        return v_cache[at];
    }
    if (kind == 1u) {
        return v_branch[at];
    }
    return qkv[at];
}

// Stores batch row r's key and value head at kv_off (elements first, first + stride, ...) where
// later batches read them: the cache at pos_r, or for candidates the row's branch.
fn store_kv(r: u32, pos_r: u32, kv_off: u32, first: u32, stride: u32) {
    let kq = r * p.qkv_stride + p.n_heads * p.head_dim + kv_off;
    if (step.branch == 1u) {
        let dst = (r * p.branch_len + pos_r - step.prefix_len) * p.kv_dim + kv_off;
        for (var d = first; d < p.head_dim; d += stride) {
            k_branch[dst + d] = qkv[kq + d];
            v_branch[dst + d] = qkv[kq + p.kv_dim + d];
        }
    } else {
        let dst = pos_r * p.kv_dim + kv_off;
        for (var d = first; d < p.head_dim; d += stride) {
            k_cache[dst + d] = qkv[kq + d];
            v_cache[dst + d] = qkv[kq + p.kv_dim + d];
        }
    }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let r = wid.y;
    let split = wid.z;
    if (r >= step.n_rows) {
        return;
    }
    let group = p.n_heads / p.n_kv_heads;
    let kv_off = (h / group) * p.head_dim;
    let pos_r = step.pos + r * step.pos_step;
    let n = pos_r + 1u;
    for (var d = lid; d < p.head_dim; d += WG) {
        q_head[d] = qkv[r * p.qkv_stride + h * p.head_dim + d];
    }
    if (split == 0u && h % group == 0u) {
        // Store this row's k and v for later batches (nothing in this dispatch reads them there).
        store_kv(r, pos_r, kv_off, lid, WG);
    }
    workgroupBarrier();
    // This split's positions: ranges of at least 64.
    let len = max(WG, (n + p.n_splits - 1u) / p.n_splits);
    let first = min(n, split * len);
    let end = min(n, first + len);
    var m = -3.4e38;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS_PER_THREAD>;
    for (var c0 = first; c0 < end; c0 += WG) {
        let j = c0 + lid;
        var s = -3.4e38;
        if (j < end) {
            s = score(source(j, r, kv_off, false)) * p.scale;
            let vs = source(j, r, kv_off, true);
            v_rows[lid] = (vs.kind << 30u) | vs.at;
        }
        let m_new = max(m, reduce_max(lid, s));
        let corr = exp(m - m_new);
        let pj = select(0.0, exp(s - m_new), j < end);
        probs[lid] = pj;
        l = l * corr + reduce_sum(lid, pj);
        let count = min(WG, end - c0);
        for (var k = 0u; k < MAX_DIMS_PER_THREAD; k++) {
            let d = lid + k * WG;
            if (d < p.head_dim) {
                var a = acc[k] * corr;
                for (var jj = 0u; jj < count; jj++) {
                    a += probs[jj] * load_v(v_rows[jj], d);
                }
                acc[k] = a;
            }
        }
        m = m_new;
        workgroupBarrier();
    }
    let q_dim = p.n_heads * p.head_dim;
    if (p.n_splits == 1u) {
        for (var k = 0u; k < MAX_DIMS_PER_THREAD; k++) {
            let d = lid + k * WG;
            if (d < p.head_dim) {
                out[r * q_dim + h * p.head_dim + d] = acc[k] / l;
            }
        }
        return;
    }
    let base = ((r * p.n_heads + h) * p.n_splits + split) * (p.head_dim + 2u);
    for (var k = 0u; k < MAX_DIMS_PER_THREAD; k++) {
        let d = lid + k * WG;
        if (d < p.head_dim) {
            partial[base + 2u + d] = acc[k];
        }
    }
    if (lid == 0u) {
        partial[base] = m;
        partial[base + 1u] = l;
    }
}

// Merges the splits of (head, row): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s.
@compute @workgroup_size(64)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let r = wid.y;
    if (r >= step.n_rows) {
        return;
    }
    let stride = p.head_dim + 2u;
    let base = (r * p.n_heads + h) * p.n_splits * stride;
    var big = -3.4e38;
    for (var s = 0u; s < p.n_splits; s++) {
        big = max(big, partial[base + s * stride]);
    }
    var total = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        let at = base + s * stride;
        total += exp(partial[at] - big) * partial[at + 1u];
    }
    let q_dim = p.n_heads * p.head_dim;
    for (var d = lid; d < p.head_dim; d += WG) {
        var a = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            let at = base + s * stride;
            a += exp(partial[at] - big) * partial[at + 2u + d];
        }
        out[r * q_dim + h * p.head_dim + d] = a / total;
    }
}
