//! A step's choice from its logits, so that ids and a few pairs come back to the CPU, not the
//! logits; one workgroup of 256 threads per row (workgroup y: row y of [rows, n] logits).
//! `main`: result[y] = index of the largest logit (the first on ties). `masked`: the largest among
//! the tokens whose bit is set in row y of a grammar's bitmask (0xffffffff where none is).
//! `logprobs`: the log-softmax's K most likely tokens (most likely first, the lower id on ties) and
//! the chosen token's (result[y]: the argmax, or a draw of sample.wgsl), from logits row
//! min(y, rows - 1) (the prompt's one row serves each candidate's first draw). A first pass keeps
//! each thread's running max and sum of exponentials (online softmax) and its best token; the K-th
//! best of the threads' bests is a cut every top-K token ranks at or before; a second pass gathers
//! the tokens at or before the cut (a few) into workgroup memory, where each one's rank among them
//! places it. Both passes load eight logits a thread before using any (load8). Where ties at the
//! cut overflow that room, K rounds each take the best token after the previous one.
//! out row y: [0] log-sum-exp, [1] the chosen token's logprob, [2 + 2j] the j-th id, [3 + 2j] its
//! logprob (f32 bits); id 0xffffffff past the row's n.

const K: u32 = 20u;       // kernels::TOP_LOGPROBS
const STRIDE: u32 = 42u;  // 2 + 2 K: kernels::LOGPROBS_STRIDE
const NONE: u32 = 0xffffffffu;
const LOW: f32 = -3.4e38;

struct Params {
    n: u32,
    rows: u32, // rows of logits: the logprobs kernel's row y reads row min(y, rows - 1)
    _b: u32,
    _c: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // [rows, n]
@group(0) @binding(2) var<storage, read_write> result: array<u32>; // [rows]
@group(0) @binding(3) var<storage, read> mask: array<u32>;       // [rows, ceil(n / 32)]: bit i % 32 of word i / 32 allows token i
@group(0) @binding(4) var<storage, read_write> out: array<u32>;  // [rows, STRIDE] logprobs
@group(0) @binding(5) var<storage, read_write> spans: array<vec2<u32>>; // [rows, ceil(n / SPAN)] (f32 bits of the best, its id)

var<workgroup> best_val: array<f32, 256>;
var<workgroup> best_idx: array<u32, 256>;
const CAP: u32 = 512u; // candidates the logprobs kernel gathers
var<workgroup> red_s: array<f32, 256>; // logprobs: sums of exponentials
var<workgroup> cand_v: array<f32, CAP>; // logprobs: the tokens at or before the cut
var<workgroup> cand_i: array<u32, CAP>;
var<workgroup> n_cand: atomic<u32>;
var<workgroup> n_cand_all: u32;
var<workgroup> cut_v: f32;
var<workgroup> cut_i: u32;

/// The workgroup's best of each thread's (bv, bi), the lower index on ties, into best_val[0] and
/// best_idx[0].
fn reduce_best(lid: u32, bv: f32, bi: u32) {
    best_val[lid] = bv;
    best_idx[lid] = bi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let v = best_val[lid + s];
            let i = best_idx[lid + s];
            if (before(v, i, best_val[lid], best_idx[lid])) {
                best_val[lid] = v;
                best_idx[lid] = i;
            }
        }
        workgroupBarrier();
    }
}

/// reduce_best into result[row].
fn reduce(lid: u32, row: u32, bv: f32, bi: u32) {
    reduce_best(lid, bv, bi);
    if (lid == 0u) {
        result[row] = best_idx[0];
    }
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.y * p.n;
    var bv = LOW;
    var bi = NONE;
    for (var i = lid; i < p.n; i += 256u) {
        let v = logits[base + i];
        if (before(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    reduce(lid, wid.y, bv, bi);
}

@compute @workgroup_size(256)
fn masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = wid.y * p.n;
    let words = (p.n + 31u) / 32u;
    var bv = LOW;
    var bi = NONE;
    // Thread lid walks words lid, lid + 256, ...: its ids rise, so the first of its ties stays.
    for (var w = lid; w < words; w += 256u) {
        var bits = mask[wid.y * words + w];
        while (bits != 0u) {
            let b = firstTrailingBit(bits);
            bits &= bits - 1u;
            let i = w * 32u + b;
            if (i < p.n) {
                let v = logits[base + i];
                if (before(v, i, bv, bi)) {
                    bv = v;
                    bi = i;
                }
            }
        }
    }
    reduce(lid, wid.y, bv, bi);
}

// `spans_first` (or `spans_first_masked`) and `spans_final`: the argmax in two levels, for GPUs. One workgroup walking a row of
// 128k logits keeps one compute unit busy for a step's tail; SPAN logits per workgroup (8 loads a
// thread, all in flight) spread the row over ceil(n / SPAN) workgroups, and one more per row takes
// the best of their bests (the lower id on ties, as `main`).
const SPAN: u32 = 2048u; // kernels::ARGMAX_SPAN

@compute @workgroup_size(256)
fn spans_first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    span_best(wid, lid, array<u32, 8>(NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE));
}

/// spans_first among the tokens row y of the mask allows (spans_final then gives 0xffffffff where
/// none is): the grammar-constrained step's argmax on GPUs.
@compute @workgroup_size(256)
fn spans_first_masked(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let words = (p.n + 31u) / 32u;
    var bits: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        bits[k] = mask[wid.y * words + min(wid.x * SPAN + k * 256u + lid, p.n - 1u) / 32u];
    }
    span_best(wid, lid, bits);
}

/// The best of span wid.x of row wid.y into spans, among the tokens whose bit is set in their
/// word of `bits` (a thread's eight: tokens lid + 256 k of the span).
fn span_best(wid: vec3<u32>, lid: u32, bits: array<u32, 8>) {
    let base = wid.y * p.n;
    let start = wid.x * SPAN;
    var v: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        v[k] = logits[base + min(start + k * 256u + lid, p.n - 1u)];
    }
    var bv = LOW;
    var bi = NONE;
    for (var k = 0u; k < 8u; k++) {
        let i = start + k * 256u + lid;
        let allowed = ((bits[k] >> (i % 32u)) & 1u) != 0u;
        if (i < p.n && allowed && before(v[k], i, bv, bi)) {
            bv = v[k];
            bi = i;
        }
    }
    reduce_best(lid, bv, bi);
    if (lid == 0u) {
        spans[wid.y * ((p.n + SPAN - 1u) / SPAN) + wid.x] = vec2<u32>(bitcast<u32>(best_val[0]), best_idx[0]);
    }
}

@compute @workgroup_size(256)
fn spans_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n_spans = (p.n + SPAN - 1u) / SPAN;
    var bv = LOW;
    var bi = NONE;
    for (var s = lid; s < n_spans; s += 256u) {
        let e = spans[wid.y * n_spans + s];
        if (before(bitcast<f32>(e.x), e.y, bv, bi)) {
            bv = bitcast<f32>(e.x);
            bi = e.y;
        }
    }
    reduce(lid, wid.y, bv, bi);
}

/// Whether (v, i) ranks before (w, j): larger, or equal with the lower id; nothing before a real
/// one. A NaN ranks before nothing (kept, it would refuse every logit after it: nothing compares
/// larger than NaN).
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
    return i != NONE && not_nan(v) && (j == NONE || v > w || (v == w && i < j));
}


const WALK: u32 = 2048u; // logits a pass of `logprobs` takes a step: 8 a thread

/// Logits i + 256 k, k < 8, of the row at base (the row's last past its end), loaded together so
/// that a thread of the one workgroup walking a row has eight loads in flight, in the order of a
/// loop by 256 (sums come out as they did one load at a time).
fn load8(base: u32, i: u32) -> array<f32, 8> {
    var v: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        v[k] = logits[base + min(i + 256u * k, p.n - 1u)];
    }
    return v;
}

/// Pass 1 over logits first + lid + 256 k, k < 8 per WALK, up to `end`, of the row at base: this
/// thread's running max and sum of exponentials against it (online softmax) and its best token.
struct Walk1 {
    m: f32,
    s: f32,
    bv: f32,
    bi: u32,
}

fn walk1(base: u32, first: u32, end: u32, lid: u32) -> Walk1 {
    var w = Walk1(LOW, 0.0, LOW, NONE);
    for (var i8 = first + lid; i8 < end; i8 += WALK) {
        let vs = load8(base, i8);
        for (var k = 0u; k < 8u; k++) {
            let i = i8 + 256u * k;
            let v = vs[k];
            if (i >= end || !finite(v)) {
                continue;
            }
            if (v > w.m) {
                w.s = w.s * exp(w.m - v) + 1.0;
                w.m = v;
            } else {
                w.s += exp(v - w.m);
            }
            if (before(v, i, w.bv, w.bi)) {
                w.bv = v;
                w.bi = i;
            }
        }
    }
    return w;
}

/// The workgroup's (max, sum of exponentials against it) from each thread's (m, s): pairs merged
/// down the tree. Also readies the cut and the candidate count for kth_cut and gather_rank.
fn reduce_exp(lid: u32, m: f32, s: f32) -> vec2<f32> {
    if (lid == 0u) {
        atomicStore(&n_cand, 0u);
        cut_v = LOW;
        cut_i = NONE;
    }
    best_val[lid] = m;
    red_s[lid] = s;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if (lid < h) {
            let m2 = max(best_val[lid], best_val[lid + h]);
            red_s[lid] = red_s[lid] * exp(best_val[lid] - m2) + red_s[lid + h] * exp(best_val[lid + h] - m2);
            best_val[lid] = m2;
        }
        workgroupBarrier();
    }
    let r = vec2<f32>(best_val[0], red_s[0]);
    workgroupBarrier();
    return r;
}

/// Into cut_v, cut_i: the K-th best of the threads' (bv, bi) (left as none where fewer than K
/// threads have one). Every thread's best is a distinct token, so K tokens rank at or before it.
fn kth_cut(lid: u32, bv: f32, bi: u32) {
    best_val[lid] = bv;
    best_idx[lid] = bi;
    workgroupBarrier();
    if (bi != NONE) {
        var rank = 0u;
        for (var j = 0u; j < 256u; j++) {
            rank += u32(before(best_val[j], best_idx[j], bv, bi));
        }
        if (rank == K - 1u) {
            cut_v = bv;
            cut_i = bi;
        }
    }
    workgroupBarrier();
}

/// out row `row` ([0], [1]): the log-sum-exp and the chosen token's logprob.
fn write_lse(row: u32, base: u32, lse: f32) {
    let at = row * STRIDE;
    out[at] = bitcast<u32>(lse);
    let c = result[row];
    var lp = LOW; // the chosen id is past the row
    if (c < p.n) {
        lp = logits[base + c] - lse;
    }
    out[at + 1u] = bitcast<u32>(lp);
}

@compute @workgroup_size(256)
fn logprobs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y;
    let base = min(row, p.rows - 1u) * p.n;
    let w = walk1(base, 0u, p.n, lid);
    let ms = reduce_exp(lid, w.m, w.s);
    let lse = ms.x + log(ms.y);
    if (lid == 0u) {
        write_lse(row, base, lse);
    }
    kth_cut(lid, w.bv, w.bi);
    gather_rank(row, base, lid, lse, cut_v, cut_i);
}

// `logprobs_spans` then `logprobs_final`: logprobs with its first pass spread over workgroups of
// SPAN logits, for GPUs. Span x of choice y writes its (max, sum of exponentials against it) and
// its cut to spans; the final workgroup combines them: the log-sum-exp, and the best of the
// spans' cuts as the row's (K tokens rank at or before each span's).

@compute @workgroup_size(256)
fn logprobs_spans(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let base = min(wid.y, p.rows - 1u) * p.n;
    let first = wid.x * SPAN;
    let w = walk1(base, first, min(first + SPAN, p.n), lid);
    let ms = reduce_exp(lid, w.m, w.s);
    kth_cut(lid, w.bv, w.bi);
    if (lid == 0u) {
        let at = 2u * (wid.y * ((p.n + SPAN - 1u) / SPAN) + wid.x);
        spans[at] = bitcast<vec2<u32>>(ms);
        spans[at + 1u] = vec2<u32>(bitcast<u32>(cut_v), cut_i);
    }
}

@compute @workgroup_size(256)
fn logprobs_final(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y;
    let base = min(row, p.rows - 1u) * p.n;
    let n_spans = (p.n + SPAN - 1u) / SPAN;
    var m = LOW;
    var s = 0.0;
    var cv = LOW;
    var ci = NONE;
    for (var x = lid; x < n_spans; x += 256u) {
        let at = 2u * (row * n_spans + x);
        let ms = bitcast<vec2<f32>>(spans[at]);
        if (ms.y > 0.0) {
            let top = max(m, ms.x);
            s = s * exp(m - top) + ms.y * exp(ms.x - top);
            m = top;
        }
        let c = spans[at + 1u];
        if (before(bitcast<f32>(c.x), c.y, cv, ci)) {
            cv = bitcast<f32>(c.x);
            ci = c.y;
        }
    }
    let ms = reduce_exp(lid, m, s);
    let lse = ms.x + log(ms.y);
    if (lid == 0u) {
        write_lse(row, base, lse);
    }
    reduce_best(lid, cv, ci);
    let cut_value = best_val[0];
    let cut_id = best_idx[0];
    workgroupBarrier();
    gather_rank(row, base, lid, lse, cut_value, cut_id);
}

/// Logprobs' second pass for row `row` (its logits at base), given the log-sum-exp and a cut (cv,
/// ci) every top-K token ranks at or before (none: every token): the tokens at or before it
/// gathered and ranked into out[row][2 ..].
fn gather_rank(row: u32, base: u32, lid: u32, lse: f32, cv: f32, ci: u32) {
    let at = row * STRIDE;
    // Pass 2: gather the tokens at or before the cut.
    for (var i8 = lid; i8 < p.n; i8 += WALK) {
        let vs = load8(base, i8);
        for (var k = 0u; k < 8u; k++) {
            let i = i8 + 256u * k;
            let v = vs[k];
            if (i < p.n && finite(v) && (ci == NONE || !before(cv, ci, v, i))) {
                let slot = atomicAdd(&n_cand, 1u);
                if (slot < CAP) {
                    cand_v[slot] = v;
                    cand_i[slot] = i;
                }
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        n_cand_all = atomicLoad(&n_cand);
    }
    let count = workgroupUniformLoad(&n_cand_all);
    if (count <= CAP) {
        // Each candidate's rank among them (distinct: ties go by id) places the first K.
        for (var c = lid; c < count; c += 256u) {
            var rank = 0u;
            for (var j = 0u; j < count; j++) {
                rank += u32(before(cand_v[j], cand_i[j], cand_v[c], cand_i[c]));
            }
            if (rank < K) {
                out[at + 2u + 2u * rank] = cand_i[c];
                out[at + 3u + 2u * rank] = bitcast<u32>(cand_v[c] - lse);
            }
        }
        for (var r = count + lid; r < K; r += 256u) {
            out[at + 2u + 2u * r] = NONE;
            out[at + 3u + 2u * r] = bitcast<u32>(LOW);
        }
        return;
    }
    // Ties at the cut past CAP: K rounds, each the best token after the previous round's.
    var pv = LOW;
    var pi = NONE;
    for (var r = 0u; r < K; r++) {
        var rv = LOW;
        var ri = NONE;
        for (var i = lid; i < p.n; i += 256u) {
            let v = logits[base + i];
            if (finite(v) && (r == 0u || before(pv, pi, v, i)) && before(v, i, rv, ri)) {
                rv = v;
                ri = i;
            }
        }
        reduce_best(lid, rv, ri);
        pv = best_val[0];
        pi = best_idx[0];
        if (lid == 0u) {
            out[at + 2u + 2u * r] = pi;
            out[at + 3u + 2u * r] = bitcast<u32>(pv - lse);
        }
        workgroupBarrier();
    }
}
