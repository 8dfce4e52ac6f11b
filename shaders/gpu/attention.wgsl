//! attention for one token (the decode graph) or n candidates at one position (rows r, each with
//! its own branch), the GPU family, in the shape of llama.cpp's flash_attn.comp decode path. A
//! workgroup per (kv head x block of its query heads, row, split): it serves ROWS query heads of one
//! kv head's group, so each key and value is read once for all of them. Lanes: D_SPLIT across
//! head_dim (DPL vec4 each), COLS = WG / D_SPLIT keys at a time, each column of lanes keeping its own
//! online softmax (max m, sum l, weighted values o) per query head; the columns are merged at the
//! end through workgroup memory. The scores' sum over a column's lanes is lane_sums
//! (attention_sum_subgroup.wgsl or attention_sum_shared.wgsl).
//! Splits: up to p.n_splits workgroups along the positions the rows see (a sliding-window layer's
//! last p.window of them); their number (from step.kv_len) decides how many work (active_splits: SPLIT_LEN positions or more each), the rest exit at once. One active
//! split writes the output; more write partials that `combine` merges (or, in decode while the
//! context is short, Wo's activation loader: matvec_combine.wgsl). A split's partial is m, l, two unused
//! floats, then its o, head_dim + 4 floats, so that o's vec4 are aligned.
//! The first block of each kv head, in split 0, stores the row's key and value (f16) into the cache
//! or branch (nothing in this dispatch reads them there: the row's own position comes from qkv).
//! Composed after attention_params.wgsl, attention_io.wgsl, the lane_sums part, and the constants
//! HD4 (head_dim / 4), D_SPLIT, DPL (ceil(HD4 / D_SPLIT)), ROWS, BLOCKS (blocks of ROWS heads per kv
//! head), SPLIT_LEN, WG.

const COLS: u32 = WG / D_SPLIT;

var<private> scores: array<f32, ROWS>; // this lane's column's key against each query head
var<workgroup> col_ml: array<vec2<f32>, WG>; // per lane: (m, l) of its column, one query head at a time
var<workgroup> col_o: array<vec4<f32>, WG>; // per lane: one vec4 of its column's o

// The splits that work for a length of n positions.
fn active_splits(n: u32) -> u32 {
    return clamp((n + SPLIT_LEN - 1u) / SPLIT_LEN, 1u, p.n_splits);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let kvh = wid.x / BLOCKS;
    let r = wid.y;
    let split = wid.z;
    let n = step.kv_len; // positions up to row r's: the cache's (or prefix and branch) and its own
    let w0 = first_key(n - 1u); // the first one it sees (a sliding-window layer's window)
    let n_active = active_splits(n - w0);
    if (r >= step.n_rows || split >= n_active) {
        return; // the whole workgroup
    }
    let group = p.n_heads / p.n_kv_heads;
    let first_head = wid.x % BLOCKS * ROWS; // in the group
    let heads = min(ROWS, group - first_head);
    let h0 = kvh * group + first_head;
    let pos_r = step.pos + r * step.pos_step;
    let d_lane = lid % D_SPLIT;
    let col = lid / D_SPLIT;
    let stride4 = p.qkv_stride / 4u;

    if (split == 0u && first_head == 0u) {
        for (var i = lid; i < HD4; i += WG) {
            store_kv(r, pos_r, kvh, i);
        }
    }

    // The lane's share of each query head (scaled), and of its weighted values.
    var q: array<vec4<f32>, ROWS * DPL>;
    var o: array<vec4<f32>, ROWS * DPL>;
    var m: array<f32, ROWS>;
    var l: array<f32, ROWS>;
    for (var h = 0u; h < ROWS; h++) {
        let qa = r * stride4 + (h0 + min(h, heads - 1u)) * HD4; // heads past the block repeat its last
        for (var k = 0u; k < DPL; k++) {
            let i = d_lane + k * D_SPLIT;
            if (i < HD4) {
                q[h * DPL + k] = qkv[qa + i] * p.scale;
            }
        }
        m[h] = NEG_BIG;
    }

    // This split's positions.
    let len = (n - w0 + n_active - 1u) / n_active;
    let first = min(n, w0 + split * len);
    let end = min(n, first + len);
    for (var j0 = first; j0 < end; j0 += COLS) {
        let j = j0 + col;
        let live = j < end;
        for (var h = 0u; h < ROWS; h++) {
            scores[h] = 0.0;
        }
        if (live) {
            for (var k = 0u; k < DPL; k++) {
                let i = d_lane + k * D_SPLIT;
                if (i < HD4) {
                    let key = kv_vec(j, r, kvh, i, false);
                    for (var h = 0u; h < ROWS; h++) {
                        scores[h] += dot(q[h * DPL + k], key);
                    }
                }
            }
        }
        lane_sums(lid);
        if (live) {
            var v: array<vec4<f32>, DPL>;
            for (var k = 0u; k < DPL; k++) {
                let i = d_lane + k * D_SPLIT;
                if (i < HD4) {
                    v[k] = kv_vec(j, r, kvh, i, true);
                }
            }
            for (var h = 0u; h < ROWS; h++) {
                let s = soft_cap(scores[h]);
                let m_new = max(m[h], s);
                let corr = exp(m[h] - m_new);
                let w = exp(s - m_new);
                l[h] = l[h] * corr + w;
                m[h] = m_new;
                for (var k = 0u; k < DPL; k++) {
                    o[h * DPL + k] = o[h * DPL + k] * corr + w * v[k];
                }
            }
        }
    }

    // Merge the columns, one query head at a time.
    let q_dim4 = p.n_heads * HD4;
    for (var h = 0u; h < ROWS; h++) {
        col_ml[lid] = vec2<f32>(m[h], l[h]);
        workgroupBarrier();
        var big = NEG_BIG;
        for (var c = 0u; c < COLS; c++) {
            big = max(big, col_ml[c * D_SPLIT].x);
        }
        var total = 0.0;
        for (var c = 0u; c < COLS; c++) {
            let ml = col_ml[c * D_SPLIT];
            total += exp(ml.x - big) * ml.y;
        }
        let f = exp(m[h] - big);
        let head = h0 + h;
        let store = col == 0u && h < heads;
        let base = ((r * p.n_heads + head) * p.n_splits + split) * (p.head_dim + 4u);
        for (var k = 0u; k < DPL; k++) {
            col_o[lid] = o[h * DPL + k] * f;
            workgroupBarrier();
            let i = d_lane + k * D_SPLIT;
            if (store && i < HD4) {
                var a = vec4<f32>(0.0);
                for (var c = 0u; c < COLS; c++) {
                    a += col_o[c * D_SPLIT + d_lane];
                }
                if (n_active == 1u) {
                    out[r * q_dim4 + head * HD4 + i] = a / total;
                } else {
                    let at = base + 4u + 4u * i;
                    partial[at] = a.x;
                    partial[at + 1u] = a.y;
                    partial[at + 2u] = a.z;
                    partial[at + 3u] = a.w;
                }
            }
            workgroupBarrier();
        }
        if (store && d_lane == 0u && n_active > 1u) {
            partial[base] = big;
            partial[base + 1u] = total;
        }
    }
}

// Merges the active splits of (head, row): out = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s.
// Nothing to do with one active split (main wrote the output).
@compute @workgroup_size(64)
fn combine(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let r = wid.y;
    let n_active = active_splits(step.kv_len - first_key(step.kv_len - 1u));
    if (r >= step.n_rows || n_active == 1u) {
        return;
    }
    let stride = p.head_dim + 4u;
    let base = (r * p.n_heads + h) * p.n_splits * stride;
    var big = NEG_BIG;
    for (var s = 0u; s < n_active; s++) {
        big = max(big, partial[base + s * stride]);
    }
    var total = 0.0;
    for (var s = 0u; s < n_active; s++) {
        let at = base + s * stride;
        total += exp(partial[at] - big) * partial[at + 1u];
    }
    for (var i = lid; i < HD4; i += 64u) {
        var a = vec4<f32>(0.0);
        for (var s = 0u; s < n_active; s++) {
            let at = base + s * stride;
            let o = at + 4u + 4u * i;
            a += exp(partial[at] - big) * vec4<f32>(partial[o], partial[o + 1u], partial[o + 2u], partial[o + 3u]);
        }
        out[(r * p.n_heads + h) * HD4 + i] = a / total;
    }
}
