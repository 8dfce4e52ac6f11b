//! attention for a prompt chunk (rows at consecutive positions step.pos + r), the GPU family, tiled
//! over the keys flash-attention style (llama.cpp's flash_attn.comp with staged tiles): a workgroup
//! per (block of T query rows, query head) walks positions 0 ..= its last row's in tiles of T keys.
//! Per tile: the keys are staged in workgroup memory (f32), the T x T scores written there, each
//! row's online softmax advanced (max, sum, the tile's weights), the values staged over the keys,
//! and every lane's share of the T x head_dim output rescaled and accumulated. Causal: a key past a
//! row's position gets weight 0, and in a sliding-window layer one before the row's window.
//! Positions before the chunk come from the cache (f16), the chunk's own from qkv. Workgroups of a kv head's first query head store their rows' keys and values (f16)
//! into the cache. Composed after attention_params.wgsl and attention_io.wgsl, and the constants
//! HD4 (head_dim / 4), T (rows and keys per tile), WG, OUT_PER_LANE (ceil(T * HD4 / WG)).

var<workgroup> q_tile: array<vec4<f32>, T * HD4>; // [T rows, HD4] queries, scaled
// A key's (or value's) row in kv_tile is HD4 + 1 vec4 long: the score loop's lanes read one vec4
// of T different keys, which at a stride of HD4 vec4 (a multiple of 32 words) would all fall in one
// memory bank; the padding spreads them over the banks.
const KV_STRIDE: u32 = HD4 + 1u;
var<workgroup> kv_tile: array<vec4<f32>, T * KV_STRIDE>; // [T keys, KV_STRIDE] the tile's keys, then its values
var<workgroup> s_tile: array<f32, T * T>; // [T rows, T keys] scores, then weights
var<workgroup> row_m: array<f32, T>; // per row: running max
var<workgroup> row_l: array<f32, T>; // per row: running sum of weights
var<workgroup> row_corr: array<f32, T>; // per row: this tile's rescaling of the old sums

@compute @workgroup_size(WG)
fn prompt(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r0 = wid.x * T;
    let h = wid.y;
    if (r0 >= step.n_rows) {
        return; // the whole workgroup
    }
    let rows = min(T, step.n_rows - r0);
    let group = p.n_heads / p.n_kv_heads;
    let kvh = h / group;
    let stride4 = p.qkv_stride / 4u;
    let n_keys = step.pos + r0 + rows; // the last row's position + 1

    for (var e = lid; e < T * HD4; e += WG) {
        let rr = min(e / HD4, rows - 1u); // rows past the chunk repeat its last, unstored
        let i = e % HD4;
        q_tile[e] = qkv[(r0 + rr) * stride4 + h * HD4 + i] * p.scale;
        if (h % group == 0u && e / HD4 < rows) {
            store_kv(r0 + rr, step.pos + r0 + rr, kvh, i);
        }
    }
    if (lid < T) {
        row_m[lid] = NEG_BIG;
        row_l[lid] = 0.0;
    }
    var o: array<vec4<f32>, OUT_PER_LANE>; // outputs lid, lid + WG, ... of [T rows, HD4]

    // The first tile holds the first row's first position (a sliding-window layer's).
    for (var t0 = first_key(step.pos + r0) / T * T; t0 < n_keys; t0 += T) {
        // Stage the keys.
        for (var e = lid; e < T * HD4; e += WG) {
            let j = t0 + e / HD4;
            var key = vec4<f32>(0.0);
            if (j < n_keys) {
                key = kv_vec(j, 0u, kvh, e % HD4, false);
            }
            kv_tile[e / HD4 * KV_STRIDE + e % HD4] = key;
        }
        workgroupBarrier();
        // Scores; keys past a row's position get NEG_BIG.
        for (var e = lid; e < T * T; e += WG) {
            let rr = e / T;
            let c = e % T;
            var s = NEG_BIG;
            let pos_rr = step.pos + r0 + rr;
            if (t0 + c <= pos_rr && t0 + c >= first_key(pos_rr)) {
                var d = 0.0;
                for (var i = 0u; i < HD4; i++) {
                    d += dot(q_tile[rr * HD4 + i], kv_tile[c * KV_STRIDE + i]);
                }
                s = soft_cap(d);
            }
            s_tile[e] = s;
        }
        workgroupBarrier();
        // Each row's online softmax over the tile; the values staged over the keys.
        if (lid < T) {
            var tile_max = NEG_BIG;
            for (var c = 0u; c < T; c++) {
                tile_max = max(tile_max, s_tile[lid * T + c]);
            }
            let m_old = row_m[lid];
            let m_new = max(m_old, tile_max);
            var sum = 0.0;
            for (var c = 0u; c < T; c++) {
                let s = s_tile[lid * T + c];
                let w = select(0.0, exp(s - m_new), s > NEG_BIG);
                s_tile[lid * T + c] = w;
                sum += w;
            }
            let corr = exp(m_old - m_new);
            row_corr[lid] = corr;
            row_l[lid] = row_l[lid] * corr + sum;
            row_m[lid] = m_new;
        }
        for (var e = lid; e < T * HD4; e += WG) {
            let j = t0 + e / HD4;
            var value = vec4<f32>(0.0);
            if (j < n_keys) {
                value = kv_vec(j, 0u, kvh, e % HD4, true);
            }
            kv_tile[e / HD4 * KV_STRIDE + e % HD4] = value;
        }
        workgroupBarrier();
        // o = o * corr + weights x values.
        for (var k = 0u; k < OUT_PER_LANE; k++) {
            let e = lid + k * WG;
            if (e < T * HD4) {
                let rr = e / HD4;
                let i = e % HD4;
                var a = o[k] * row_corr[rr];
                for (var c = 0u; c < T; c++) {
                    a += s_tile[rr * T + c] * kv_tile[c * KV_STRIDE + i];
                }
                o[k] = a;
            }
        }
        workgroupBarrier();
    }

    let q_dim4 = p.n_heads * HD4;
    for (var k = 0u; k < OUT_PER_LANE; k++) {
        let e = lid + k * WG;
        let rr = e / HD4;
        if (e < T * HD4 && rr < rows) {
            out[(r0 + rr) * q_dim4 + h * HD4 + e % HD4] = o[k] / row_l[rr];
        }
    }
}
