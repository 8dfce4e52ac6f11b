//! moe_route: each token's experts from its router logits: softmax over the n_experts logits, the
//! n_used largest (the lower index first on ties), their weights renormalized to sum 1. One thread
//! per batch row (n_experts is at most 256).

struct Params {
    n_experts: u32,
    n_used: u32,
    rows: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // [rows, n_experts]
@group(0) @binding(2) var<storage, read_write> route: array<u32>; // [rows, n_used, 2]: expert id, bitcast f32 weight

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let row = gid.x;
    if (row >= p.rows) {
        return;
    }
    let l0 = row * p.n_experts;
    var max_l = logits[l0];
    for (var e = 1u; e < p.n_experts; e++) {
        max_l = max(max_l, logits[l0 + e]);
    }
    // Selection by rank: slot j takes the largest logit not taken by slots 0..j-1 (softmax keeps the
    // order, and the renormalized weights need only exp(l - max)).
    var taken_l = 0.0;
    var taken_e = 0xffffffffu; // none taken yet: every logit ranks after it (+inf and > 3e38 too)
    var sum = 0.0;
    let r0 = row * p.n_used * 2u;
    for (var j = 0u; j < p.n_used; j++) {
        var best = 0xffffffffu;
        var best_l = 0.0;
        for (var e = 0u; e < p.n_experts; e++) {
            let l = logits[l0 + e];
            // Ranked after the last taken (by logit, then index), and before the best so far.
            let after = taken_e == 0xffffffffu || l < taken_l || (l == taken_l && e > taken_e);
            // NaN is passed over.
            if (not_nan(l) && after && (best == 0xffffffffu || l > best_l)) {
                best = e;
                best_l = l;
            }
        }
        // The best's weight before the sum (1 for the largest: exp(0), or where it is -inf).
        var w = select(exp(best_l - max_l), 1.0, best_l == max_l);
        if (best == 0xffffffffu) {
            // Nothing left to rank (NaN logits): the lowest expert not taken yet, weighted 0.
            for (var e = 0u; e < p.n_experts && best == 0xffffffffu; e++) {
                var taken = false;
                for (var k = 0u; k < j; k++) {
                    taken = taken || route[r0 + 2u * k] == e;
                }
                if (!taken) {
                    best = e;
                }
            }
            best_l = -3.4e38;
            w = 0.0;
        }
        taken_l = best_l;
        taken_e = best;
        sum += w;
        route[r0 + 2u * j] = best;
        route[r0 + 2u * j + 1u] = bitcast<u32>(w);
    }
    // (Every weight 0 where every logit is NaN: 0 / 1.)
    let total = select(sum, 1.0, sum == 0.0);
    for (var j = 0u; j < p.n_used; j++) {
        route[r0 + 2u * j + 1u] = bitcast<u32>(bitcast<f32>(route[r0 + 2u * j + 1u]) / total);
    }
}
