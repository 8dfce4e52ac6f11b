//! A sampled step's choice on the GPU, so that a sampled token stays on the GPU (the next step
//! reads it there) and only its id comes back. One workgroup of 256 threads per draw y: draw y
//! reads logits row min(y, rows - 1) (the prompt's one row serves every candidate's first draw)
//! and, where draws[y].masked, row y of a grammar's bitmask. It keeps the CPU sampler's semantics
//! (engine::sampler: candidates, then pick): the finite, allowed logits in order (larger first,
//! the lower id on ties); top-k; weights exp((l - max) / T); top-p over the top-k's weights; min-p;
//! then the first token whose running weight passes r times the kept weight (r = draws[y].r, a
//! uniform draw from the CPU's seeded generator).
//! Each cut is a position in that order, found without sorting: a search over the logits' keys
//! (f32 bits mapped to u32 in the same order) narrows a bucket of keys holding the position,
//! one pass over the row per quartering (three pivots, spaced by value), until at most CAP tokens
//! are in it; those are gathered and ranked in workgroup memory, and one thread walks them in
//! order. Where a single key holds more than CAP tokens (ties), the position's token is counted
//! out by id.

const NONE: u32 = 0xffffffffu;
const CAP: u32 = 512u; // tokens a bucket may hold when gathered

struct Params {
    n: u32,    // logits per row (the vocabulary)
    rows: u32, // rows of logits
    _a: u32,
    _b: u32,
}

// kernels::SampleDraw
struct Draw {
    r: f32,
    temperature: f32,
    top_p: f32,
    min_p: f32,
    top_k: u32,  // 0: all
    masked: u32, // 1: row y of `mask` applies
    _a: u32,
    _b: u32,
}

// A position in the order: its token's key and id, and the count and weight of the tokens up to
// and including it.
struct Found {
    key: u32,
    id: u32,
    count: f32,
    weight: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // [rows, n]
@group(0) @binding(2) var<storage, read_write> result: array<u32>; // [draws]: the chosen ids
@group(0) @binding(3) var<storage, read> mask: array<u32>;         // [draws, ceil(n / 32)]
@group(0) @binding(4) var<storage, read> draws: array<Draw>;       // [draws]

var<workgroup> red: array<vec4<f32>, 256>;
var<workgroup> red_lo: array<u32, 256>;
var<workgroup> red_hi: array<u32, 256>;
var<workgroup> total: vec4<f32>;
var<workgroup> extent_out: vec2<u32>;
var<workgroup> cand_k: array<u32, CAP>;
var<workgroup> cand_i: array<u32, CAP>;
var<workgroup> order: array<u32, CAP>; // order[rank] = the candidate at that rank
var<workgroup> n_cand: atomic<u32>;
var<workgroup> found: Found;

// The draw's row, mask and weights.
var<private> base: u32;
var<private> mask_at: u32;
var<private> masked: bool;
var<private> top: f32;
var<private> temp: f32;

/// The order-preserving key of a finite logit (never 0: 0 marks a token left out).
fn key_of(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn value_of(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

/// Token i's key, or 0 where it is left out (NaN, infinite, or not in the mask).
fn key_at(i: u32) -> u32 {
    let v = logits[base + i];
    var kept = v == v && abs(v) <= 3.4028234e38;
    if (masked) {
        kept = kept && ((mask[mask_at + i / 32u] >> (i % 32u)) & 1u) != 0u;
    }
    return select(0u, key_of(v), kept);
}

/// The keys of tokens i, i + 256, i + 512 and i + 768 (0 past the row), loaded together: a pass
/// over the row takes them a thread's four at a time, in the order of a loop by 256, so that
/// each thread has four loads in flight rather than one (a single workgroup walks the row).
fn keys4(i: u32) -> vec4<u32> {
    let last = p.n - 1u;
    let k = vec4<u32>(key_at(min(i, last)), key_at(min(i + 256u, last)), key_at(min(i + 512u, last)),
        key_at(min(i + 768u, last)));
    return select(vec4<u32>(0u), k, i + vec4<u32>(0u, 256u, 512u, 768u) < vec4<u32>(p.n));
}

/// A token's weight, as the CPU sampler computes it (the largest logit's is 1).
fn weight(k: u32) -> f32 {
    return exp((value_of(k) - top) / temp);
}

/// The workgroup's sum of each thread's v.
fn sum4(lid: u32, v: vec4<f32>) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        total = red[0];
    }
    return workgroupUniformLoad(&total);
}

/// The workgroup's smallest lo and largest hi.
fn extent(lid: u32, lo: u32, hi: u32) -> vec2<u32> {
    red_lo[lid] = lo;
    red_hi[lid] = hi;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red_lo[lid] = min(red_lo[lid], red_lo[lid + s]);
            red_hi[lid] = max(red_hi[lid], red_hi[lid + s]);
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        extent_out = vec2<u32>(red_lo[0], red_hi[0]);
    }
    return workgroupUniformLoad(&extent_out);
}

/// Whether a running (count, weight) reaches the goal: by weight or by count; past it (strict)
/// or at least at it.
fn meets(f: vec2<f32>, by_weight: bool, goal: f32, strict: bool) -> bool {
    let v = select(f.x, f.y, by_weight);
    return select(v >= goal, v > goal, strict);
}

/// Whether candidate a ranks before candidate b: a larger key, or the same with a lower id.
fn before(a: u32, b: u32) -> bool {
    return cand_k[a] > cand_k[b] || (cand_k[a] == cand_k[b] && cand_i[a] < cand_i[b]);
}

/// A key strictly between lo and hi: the one of the values' midpoint (logits cluster in a few
/// binades, where halving the keys would first walk the exponents), or the keys' own.
fn split(lo: u32, hi: u32) -> u32 {
    let by_value = key_of(0.5 * value_of(lo) + 0.5 * value_of(hi));
    let v = value_of(hi);
    if (v == v && abs(v) <= 3.4028234e38 && by_value > lo && by_value < hi) {
        return by_value;
    }
    return lo + (hi - lo) / 2u;
}

/// The first position whose running count or weight meets the goal (the last where none does,
/// the first where the empty start already does), among the allowed tokens with keys in
/// [lo, hi], whose count and weight are `all`.
fn find(lid: u32, by_weight_in: bool, target_in: f32, strict_in: bool, lo_in: u32, hi_in: u32, all: vec2<f32>) -> Found {
    var by_weight = by_weight_in;
    var goal = target_in;
    var strict = strict_in;
    if (meets(vec2<f32>(0.0), by_weight, goal, strict)) {
        by_weight = false;
        goal = 1.0;
        strict = false;
    } else if (!meets(all, by_weight, goal, strict)) {
        by_weight = false;
        goal = all.x;
        strict = false;
    }
    // The position's key is in [lo, hi): the tokens at or above lo meet the goal (f_lo), those at
    // or above hi do not (f_hi).
    var lo = lo_in;
    var hi = hi_in + 1u;
    var f_lo = all;
    var f_hi = vec2<f32>(0.0);
    loop {
        if (hi - lo <= 1u || f_lo.x - f_hi.x <= f32(CAP)) {
            break;
        }
        // Three pivots a pass (a quarter of the bucket kept), one where the bucket is too narrow.
        let m1 = split(lo, hi);
        var m0 = m1;
        var m2 = m1;
        if (m1 - lo >= 2u && hi - m1 >= 2u) {
            m0 = split(lo, m1);
            m2 = split(m1, hi);
        }
        var acc0 = vec4<f32>(0.0); // (count, weight) at or above m0, then m1
        var acc2 = vec2<f32>(0.0); // at or above m2
        for (var i4 = lid; i4 < p.n; i4 += 1024u) {
            let ks = keys4(i4);
            for (var j = 0u; j < 4u; j++) {
                let k = ks[j];
                if (k >= m0) {
                    let w = weight(k);
                    acc0 += vec4<f32>(1.0, w, select(0.0, 1.0, k >= m1), select(0.0, w, k >= m1));
                    if (k >= m2) {
                        acc2 += vec2<f32>(1.0, w);
                    }
                }
            }
        }
        let f01 = sum4(lid, acc0);
        let f2 = sum4(lid, vec4<f32>(acc2, 0.0, 0.0)).xy;
        // The highest pivot whose tokens meet the goal is the new lo; the pivot above it, hi.
        if (meets(f2, by_weight, goal, strict)) {
            lo = m2;
            f_lo = f2;
        } else if (meets(f01.zw, by_weight, goal, strict)) {
            lo = m1;
            f_lo = f01.zw;
            if (m2 > m1) {
                hi = m2;
                f_hi = f2;
            }
        } else if (meets(f01.xy, by_weight, goal, strict)) {
            lo = m0;
            f_lo = f01.xy;
            hi = m1;
            f_hi = f01.zw;
        } else {
            hi = m0;
            f_hi = f01.xy;
        }
    }
    let in_bucket = u32(f_lo.x - f_hi.x);
    if (in_bucket <= CAP) {
        // Gather the bucket, rank it, and walk it in order from the running totals above it.
        if (lid == 0u) {
            atomicStore(&n_cand, 0u);
        }
        workgroupBarrier();
        for (var i4 = lid; i4 < p.n; i4 += 1024u) {
            let ks = keys4(i4);
            for (var j = 0u; j < 4u; j++) {
                let k = ks[j];
                if (k >= lo && k < hi) {
                    let slot = atomicAdd(&n_cand, 1u);
                    if (slot < CAP) {
                        cand_k[slot] = k;
                        cand_i[slot] = i4 + 256u * j;
                    }
                }
            }
        }
        workgroupBarrier();
        for (var c = lid; c < in_bucket; c += 256u) {
            var rank = 0u;
            for (var j = 0u; j < in_bucket; j++) {
                rank += u32(before(j, c));
            }
            order[rank] = c;
        }
        workgroupBarrier();
        if (lid == 0u) {
            var f = f_hi;
            for (var r = 0u; r < in_bucket; r++) {
                let c = order[r];
                f += vec2<f32>(1.0, weight(cand_k[c]));
                if (meets(f, by_weight, goal, strict) || r + 1u == in_bucket) {
                    found = Found(cand_k[c], cand_i[c], f.x, f.y);
                    break;
                }
            }
        }
        return workgroupUniformLoad(&found);
    }
    // One key, more than CAP tokens: each weighs the same, so the position among them is counted,
    // and its token is that many into the key's tokens by id (a thread's contiguous ids, in turn).
    let w = weight(lo);
    var j: f32;
    if (by_weight) {
        j = clamp(ceil((goal - f_hi.y) / w), 1.0, f32(in_bucket));
        if (!meets(f_hi + vec2<f32>(j, j * w), true, goal, strict) && j < f32(in_bucket)) {
            j += 1.0;
        }
    } else {
        j = clamp(goal - f_hi.x, 1.0, f32(in_bucket));
    }
    let chunk = (p.n + 255u) / 256u;
    let start = lid * chunk;
    let end = min(p.n, start + chunk);
    var mine = 0u;
    for (var i = start; i < end; i++) {
        mine += u32(key_at(i) == lo);
    }
    red_lo[lid] = mine;
    workgroupBarrier();
    var before_me = 0u;
    for (var t = 0u; t < lid; t++) {
        before_me += red_lo[t];
    }
    let want = u32(j);
    if (before_me < want && want <= before_me + mine) {
        var seen = before_me;
        for (var i = start; i < end; i++) {
            if (key_at(i) == lo) {
                seen += 1u;
                if (seen == want) {
                    found = Found(lo, i, f_hi.x + j, f_hi.y + j * w);
                    break;
                }
            }
        }
    }
    return workgroupUniformLoad(&found);
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let y = wid.y;
    let d = draws[y];
    base = min(y, p.rows - 1u) * p.n;
    mask_at = y * ((p.n + 31u) / 32u);
    masked = d.masked != 0u;
    // Pass 1: the allowed keys' extent.
    var lo = NONE;
    var hi = 0u;
    for (var i4 = lid; i4 < p.n; i4 += 1024u) {
        let ks = keys4(i4);
        for (var j = 0u; j < 4u; j++) {
            let k = ks[j];
            if (k != 0u) {
                lo = min(lo, k);
                hi = max(hi, k);
            }
        }
    }
    let e = extent(lid, lo, hi);
    if (e.y == 0u) {
        // Nothing allowed: no id (the host names the error).
        if (lid == 0u) {
            result[y] = NONE;
        }
        return;
    }
    top = value_of(e.y);
    temp = max(d.temperature, 1e-6);
    // Pass 2: count and weight of all, and of those min-p keeps.
    var acc = vec4<f32>(0.0);
    for (var i4 = lid; i4 < p.n; i4 += 1024u) {
        let ks = keys4(i4);
        for (var j = 0u; j < 4u; j++) {
            let k = ks[j];
            if (k != 0u) {
                let w = weight(k);
                acc += vec4<f32>(1.0, w, select(0.0, 1.0, w >= d.min_p), select(0.0, w, w >= d.min_p));
            }
        }
    }
    let t = sum4(lid, acc);
    let all = t.xy;
    // Top-k: the count kept and their weight.
    var keep = all.x;
    var kept = all.y;
    if (d.top_k > 0u && f32(d.top_k) < all.x) {
        let at_k = find(lid, false, f32(d.top_k), false, e.x, e.y, all);
        keep = at_k.count;
        kept = at_k.weight;
    }
    // Top-p: the first position whose running weight reaches top_p of the top-k's.
    if (d.top_p < 1.0) {
        let at_p = find(lid, true, d.top_p * kept, false, e.x, e.y, all);
        if (at_p.count < keep) {
            keep = at_p.count;
            kept = at_p.weight;
        }
    }
    // Min-p: the tokens weighing at least min_p (a prefix of the order; the first always is).
    if (d.min_p > 0.0 && t.z < keep) {
        keep = t.z;
        kept = t.w;
    }
    // The draw: the first position whose running weight passes r of the kept weight.
    var pick = find(lid, true, d.r * kept, true, e.x, e.y, all);
    if (pick.count > keep) {
        pick = find(lid, false, keep, false, e.x, e.y, all);
    }
    if (lid == 0u) {
        result[y] = pick.id;
    }
}
