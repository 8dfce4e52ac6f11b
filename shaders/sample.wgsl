//! A sampled step's choice on the GPU, so that a sampled token stays on the GPU (the next step
//! reads it there) and only its id comes back. `main`: one workgroup of 256 threads per draw y: draw y
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
//! Where the kept tokens lie among the order's first CAP (the allowed tokens are that few, or
//! min-p's, or top-k is at most CAP), that prefix is gathered once instead: ranked and summed (a
//! scan) in workgroup memory, where top-k, top-p, min-p and the draw are cut without another pass
//! over the row. Passes over the row load eight logits a thread before using any.
//! The first pass is spread over workgroups of SPAN tokens (spans_first, dispatched before main):
//! each span's allowed keys' extent, count and weight against its own largest logit, which main
//! combines (rescaled to the largest of all); where min-p is off, that is all the totals it needs,
//! and where it is set, spans_min_p spreads the totals pass (min-p's count and weight) likewise.

const NONE: u32 = 0xffffffffu;
const CAP: u32 = 512u; // tokens a bucket may hold when gathered
const SPAN: u32 = 2048u; // tokens a pass over the row takes a step: 8 a thread

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
// [2, draws, ceil(n / SPAN)]: spans_first's, each span's allowed keys' lowest and highest (0 where
// it has none), their count and their weight against its highest logit (f32 bits); then, where
// min-p is set, spans_min_p's, each span's count and weight, and those of the tokens min-p keeps.
@group(0) @binding(5) var<storage, read_write> spans: array<vec4<u32>>;

var<workgroup> red: array<vec4<f32>, 256>;
var<workgroup> red_lo: array<u32, 256>;
var<workgroup> red_hi: array<u32, 256>;
var<workgroup> total: vec4<f32>;
var<workgroup> extent_out: vec2<u32>;
var<workgroup> cand_k: array<u32, CAP>;
var<workgroup> cand_i: array<u32, CAP>;
var<workgroup> order: array<u32, CAP>; // order[rank] = the candidate at that rank
var<workgroup> wsum: array<f32, CAP>;  // a gathered prefix's running weight, by rank
var<workgroup> n_cand: atomic<u32>;
var<workgroup> gathered: u32;
var<workgroup> found: Found;

// A bucket of keys [lo, hi): the (count, weight) of the tokens at or above lo, and above hi.
struct Bucket {
    lo: u32,
    hi: u32,
    f_lo: vec2<f32>,
    f_hi: vec2<f32>,
}

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
    var kept = finite(v);
    if (masked) {
        kept = kept && ((mask[mask_at + i / 32u] >> (i % 32u)) & 1u) != 0u;
    }
    return select(0u, key_of(v), kept);
}

/// The keys of tokens i + 256 j, j < 8 (0 past the row), loaded together: a pass over the row takes
/// them a thread's eight at a time, in the order of a loop by 256, so that each thread has eight
/// loads in flight rather than one (a single workgroup walks the row).
fn keys8(i: u32) -> array<u32, 8> {
    let last = p.n - 1u;
    var k: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        k[j] = key_at(min(i + 256u * j, last));
    }
    for (var j = 0u; j < 8u; j++) {
        k[j] = select(0u, k[j], i + 256u * j < p.n);
    }
    return k;
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
    if (finite(v) && by_value > lo && by_value < hi) {
        return by_value;
    }
    return lo + (hi - lo) / 2u;
}

/// Narrows the bucket [lo, hi) that holds the first position whose running count or weight meets
/// the goal (the tokens at or above lo meet it, those at or above hi do not), among the allowed
/// tokens with keys in [lo_in, hi_in], whose count and weight are `all`, until it holds at most
/// CAP tokens (or, where `prefix`, until the tokens at or above lo are at most CAP), or one key.
fn narrow(lid: u32, by_weight: bool, goal: f32, strict: bool, lo_in: u32, hi_in: u32, all: vec2<f32>, prefix: bool) -> Bucket {
    var b = Bucket(lo_in, hi_in + 1u, all, vec2<f32>(0.0));
    loop {
        let holds = select(b.f_lo.x - b.f_hi.x, b.f_lo.x, prefix);
        if (b.hi - b.lo <= 1u || holds <= f32(CAP)) {
            break;
        }
        // Three pivots a pass (a quarter of the bucket kept), one where the bucket is too narrow.
        let m1 = split(b.lo, b.hi);
        var m0 = m1;
        var m2 = m1;
        if (m1 - b.lo >= 2u && b.hi - m1 >= 2u) {
            m0 = split(b.lo, m1);
            m2 = split(m1, b.hi);
        }
        var acc0 = vec4<f32>(0.0); // (count, weight) at or above m0, then m1
        var acc2 = vec2<f32>(0.0); // at or above m2
        for (var i8 = lid; i8 < p.n; i8 += SPAN) {
            let ks = keys8(i8);
            for (var j = 0u; j < 8u; j++) {
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
            b.lo = m2;
            b.f_lo = f2;
        } else if (meets(f01.zw, by_weight, goal, strict)) {
            b.lo = m1;
            b.f_lo = f01.zw;
            if (m2 > m1) {
                b.hi = m2;
                b.f_hi = f2;
            }
        } else if (meets(f01.xy, by_weight, goal, strict)) {
            b.lo = m0;
            b.f_lo = f01.xy;
            b.hi = m1;
            b.f_hi = f01.zw;
        } else {
            b.hi = m0;
            b.f_hi = f01.xy;
        }
    }
    return b;
}

/// Gathers into cand_k and cand_i the allowed tokens with keys in [lo, hi) that weigh at least
/// min_w (any weight where min_w <= 0), CAP at most; returns how many there are, uncapped.
fn gather(lid: u32, lo: u32, hi: u32, min_w: f32) -> u32 {
    if (lid == 0u) {
        atomicStore(&n_cand, 0u);
    }
    workgroupBarrier();
    for (var i8 = lid; i8 < p.n; i8 += SPAN) {
        let ks = keys8(i8);
        for (var j = 0u; j < 8u; j++) {
            let k = ks[j];
            if (k != 0u && k >= lo && k < hi && (min_w <= 0.0 || weight(k) >= min_w)) {
                let slot = atomicAdd(&n_cand, 1u);
                if (slot < CAP) {
                    cand_k[slot] = k;
                    cand_i[slot] = i8 + 256u * j;
                }
            }
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        gathered = atomicLoad(&n_cand);
    }
    return workgroupUniformLoad(&gathered);
}

/// Ranks the first m gathered candidates: order[rank] = the candidate at that rank.
fn rank(lid: u32, m: u32) {
    for (var c = lid; c < m; c += 256u) {
        var r = 0u;
        for (var j = 0u; j < m; j++) {
            r += u32(before(j, c));
        }
        order[r] = c;
    }
    workgroupBarrier();
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
    let b = narrow(lid, by_weight, goal, strict, lo_in, hi_in, all, false);
    let lo = b.lo;
    let hi = b.hi;
    let f_hi = b.f_hi;
    let in_bucket = u32(b.f_lo.x - f_hi.x);
    if (in_bucket <= CAP) {
        // Gather the bucket, rank it, and walk it in order from the running totals above it.
        gather(lid, lo, hi, 0.0);
        rank(lid, in_bucket);
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

/// How many of the first `limit` ranks of a gathered prefix have a running weight below the goal
/// (at or below it where `strict`): the 0-based rank where the running weight first meets it.
fn ranks_below(lid: u32, limit: u32, goal: f32, strict: bool) -> u32 {
    var c = 0.0;
    for (var r = lid; r < limit; r += 256u) {
        c += select(0.0, 1.0, select(wsum[r] < goal, wsum[r] <= goal, strict));
    }
    return u32(sum4(lid, vec4<f32>(c, 0.0, 0.0, 0.0)).x);
}

/// The draw among a gathered prefix of the order, its m (<= CAP) tokens in cand_k and cand_i, that
/// holds every token the cuts keep: ranked, its running weights scanned, then top-k, top-p (of the
/// top-k's weight, kept_k where top-k cuts past the prefix), min-p (`t.z` tokens) and the draw cut
/// there, as main's passes over the row would.
fn in_prefix(lid: u32, d: Draw, m: u32, all: vec2<f32>, t: vec4<f32>, top_k_cuts: bool, kept_k: f32) -> u32 {
    rank(lid, m);
    for (var r = lid; r < CAP; r += 256u) {
        var w = 0.0;
        if (r < m) {
            w = weight(cand_k[order[r]]);
        }
        wsum[r] = w;
    }
    workgroupBarrier();
    // An inclusive scan (Hillis and Steele): wsum[r] = the weight of ranks 0..=r.
    for (var off = 1u; off < CAP; off <<= 1u) {
        var v = vec2<f32>(0.0);
        for (var k = 0u; k < 2u; k++) {
            let r = lid + 256u * k;
            v[k] = wsum[r] + select(0.0, wsum[r - min(off, r)], r >= off);
        }
        workgroupBarrier();
        wsum[lid] = v[0];
        wsum[lid + 256u] = v[1];
        workgroupBarrier();
    }
    // Counts kept (the order's first `keep`), cut as main cuts them.
    var keep = u32(all.x);
    var of_top_k = all.y;
    if (top_k_cuts) {
        keep = d.top_k;
        of_top_k = kept_k;
        if (d.top_k <= m) {
            of_top_k = wsum[d.top_k - 1u];
        }
    }
    if (d.top_p < 1.0) {
        keep = min(keep, 1u + ranks_below(lid, m, d.top_p * of_top_k, false));
    }
    if (d.min_p > 0.0) {
        keep = min(keep, u32(t.z));
    }
    keep = clamp(keep, 1u, m);
    let at = min(ranks_below(lid, keep, d.r * wsum[keep - 1u], true), keep - 1u);
    return cand_i[order[at]];
}

/// (count, weight) a against its largest key ka, plus b against kb, against the larger key (a key
/// 0: nothing there yet).
fn add_weighed(a: vec2<f32>, ka: u32, b: vec2<f32>, kb: u32) -> vec2<f32> {
    if (ka == 0u) {
        return b;
    }
    if (kb > ka) {
        return vec2<f32>(a.x + b.x, a.y * exp((value_of(ka) - value_of(kb)) / temp) + b.y);
    }
    return vec2<f32>(a.x + b.x, a.y + b.y * exp((value_of(kb) - value_of(ka)) / temp));
}

/// Draw y's settings, its row, mask and temperature set for key_at and weight.
fn start_draw(y: u32) -> Draw {
    let d = draws[y];
    base = min(y, p.rows - 1u) * p.n;
    mask_at = y * ((p.n + 31u) / 32u);
    masked = d.masked != 0u;
    temp = max(d.temperature, 1e-6);
    return d;
}

/// The first pass over the row, spread over workgroups of SPAN tokens (x: the span, y: the draw):
/// each span's allowed keys' extent, count and weight against its own largest logit, into spans.
@compute @workgroup_size(256)
fn spans_first(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let y = wid.y;
    _ = start_draw(y);
    let ks = keys8(wid.x * SPAN + lid);
    var lo = NONE;
    var hi = 0u;
    var mine = vec2<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let k = ks[j];
        if (k != 0u) {
            lo = min(lo, k);
            mine = add_weighed(mine, hi, vec2<f32>(1.0, 1.0), k);
            hi = max(hi, k);
        }
    }
    let e = extent(lid, lo, hi);
    var rescaled = vec2<f32>(0.0);
    if (hi != 0u) {
        rescaled = vec2<f32>(mine.x, mine.y * exp((value_of(hi) - value_of(e.y)) / temp));
    }
    let t = sum4(lid, vec4<f32>(rescaled, 0.0, 0.0));
    if (lid == 0u) {
        spans[y * ((p.n + SPAN - 1u) / SPAN) + wid.x] = vec4<u32>(e.x, e.y, bitcast<u32>(t.x), bitcast<u32>(t.y));
    }
}

/// Where draw y sets min-p, the totals pass over workgroups of SPAN tokens (after spans_first):
/// each span's count and weight against the row's largest logit (from spans_first's partials),
/// and those of the tokens min-p keeps, into the second half of spans.
@compute @workgroup_size(256)
fn spans_min_p(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let y = wid.y;
    let d = start_draw(y);
    if (d.min_p <= 0.0) {
        return;
    }
    let n_spans = (p.n + SPAN - 1u) / SPAN;
    var hi = 0u;
    for (var s = lid; s < n_spans; s += 256u) {
        hi = max(hi, spans[y * n_spans + s].y);
    }
    let e = extent(lid, NONE, hi);
    top = value_of(e.y);
    let ks = keys8(wid.x * SPAN + lid);
    var acc = vec4<f32>(0.0);
    for (var j = 0u; j < 8u; j++) {
        let k = ks[j];
        if (k != 0u) {
            let w = weight(k);
            acc += vec4<f32>(1.0, w, select(0.0, 1.0, w >= d.min_p), select(0.0, w, w >= d.min_p));
        }
    }
    let t = sum4(lid, acc);
    if (lid == 0u) {
        spans[(groups.y + y) * n_spans + wid.x] = bitcast<vec4<u32>>(t);
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let y = wid.y;
    let d = start_draw(y);
    // Pass 1 (spans_first's partials, one per span of the row): the allowed keys' extent; where
    // min-p is off, their count and weight too (each thread's against its own largest logit,
    // rescaled to the largest of all below).
    let one_pass = d.min_p <= 0.0;
    var lo = NONE;
    var hi = 0u;
    var mine = vec2<f32>(0.0);
    let n_spans = (p.n + SPAN - 1u) / SPAN;
    for (var s = lid; s < n_spans; s += 256u) {
        let q = spans[y * n_spans + s];
        if (q.y != 0u) {
            lo = min(lo, q.x);
            let part = vec2<f32>(bitcast<f32>(q.z), bitcast<f32>(q.w));
            mine = add_weighed(mine, hi, part, q.y);
            hi = max(hi, q.y);
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
    var t: vec4<f32>;
    if (one_pass) {
        mine.y *= select(0.0, exp((value_of(hi) - top) / temp), hi != 0u);
        t = sum4(lid, vec4<f32>(mine, 0.0, 0.0));
    } else {
        // Pass 2 (spans_min_p's partials): count and weight of all, and of those min-p keeps.
        var acc = vec4<f32>(0.0);
        for (var s = lid; s < n_spans; s += 256u) {
            acc += bitcast<vec4<f32>>(spans[(groups.y + y) * n_spans + s]);
        }
        t = sum4(lid, acc);
    }
    let all = t.xy;
    // Where the kept tokens lie among the order's first CAP, gather those once and cut there: all
    // the allowed tokens, or min-p's, or the top-k's (the tokens at or above a key found for them).
    let top_k_cuts = d.top_k > 0u && f32(d.top_k) < all.x;
    var in_reach = all.x <= f32(CAP);
    var from_key = 1u;
    var min_w = 0.0;
    var kept_k = 0.0;
    if (!in_reach && d.min_p > 0.0 && t.z <= f32(CAP)) {
        in_reach = true;
        min_w = d.min_p;
        if (top_k_cuts && f32(d.top_k) >= t.z && d.top_p < 1.0) {
            kept_k = find(lid, false, f32(d.top_k), false, e.x, e.y, all).weight;
        }
    } else if (!in_reach && top_k_cuts && d.top_k <= CAP) {
        let b = narrow(lid, false, f32(d.top_k), false, e.x, e.y, all, true);
        in_reach = b.f_lo.x <= f32(CAP);
        from_key = b.lo;
    }
    if (in_reach) {
        let m = gather(lid, from_key, NONE, min_w);
        if (m > 0u && m <= CAP) {
            let id = in_prefix(lid, d, m, all, t, top_k_cuts, kept_k);
            if (lid == 0u) {
                result[y] = id;
            }
            return;
        }
    }
    // Top-k: the count kept and their weight.
    var keep = all.x;
    var kept = all.y;
    if (top_k_cuts) {
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
