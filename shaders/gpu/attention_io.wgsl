//! The GPU family's attention bindings and key/value access, composed after attention_params.wgsl
//! and before attention.wgsl (decode, candidates) or attention_prompt.wgsl (prompt chunks). The KV
//! cache and the candidates' branches hold f16: four elements of a row in a vec2<u32>
//! (pack2x16float: the lower element in the low half); everything is computed in f32. Position j's
//! key or value comes from qkv when the batch itself holds it (j >= step.pos; rounded to f16 too),
//! from the row's branch for candidates past the shared prefix, else from the cache (its row
//! cache_row(j): a sliding-window layer's cache is a ring).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> step: Step;
@group(0) @binding(2) var<storage, read> qkv: array<vec4<f32>>;              // [rows, qkv_stride / 4]
@group(0) @binding(3) var<storage, read_write> k_cache: array<vec2<u32>>;    // [ctx or slots, kv_dim / 4] f16 x 4
@group(0) @binding(4) var<storage, read_write> v_cache: array<vec2<u32>>;    // [ctx or slots, kv_dim / 4] f16 x 4
@group(0) @binding(5) var<storage, read_write> k_branch: array<vec2<u32>>;   // [branches, branch_len, kv_dim / 4] f16 x 4
@group(0) @binding(6) var<storage, read_write> v_branch: array<vec2<u32>>;   // [branches, branch_len, kv_dim / 4] f16 x 4
@group(0) @binding(7) var<storage, read_write> out: array<vec4<f32>>;        // [rows, n_heads * head_dim / 4]
@group(0) @binding(8) var<storage, read_write> partial: array<f32>;          // [rows, n_heads, n_splits, head_dim + 4]: m, l, two unused, then o

// A large negative standing in for -inf (exp of a difference with it is 0, never NaN).
const NEG_BIG: f32 = -3.0e38;

fn unpack4(w: vec2<u32>) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}

// Clamped to f16's finite range first: pack2x16float of a value past it is not defined by WGSL (an
// infinity on most GPUs, whose scores would then be inf - inf = NaN).
fn pack4(x: vec4<f32>) -> vec2<u32> {
    let c = clamp(x, vec4<f32>(-65504.0), vec4<f32>(65504.0));
    return vec2<u32>(pack2x16float(c.xy), pack2x16float(c.zw));
}

// Vector i (of head_dim / 4) of kv head kvh's key (is_v false) or value at position j, for batch
// row r.
fn kv_vec(j: u32, r: u32, kvh: u32, i: u32, is_v: bool) -> vec4<f32> {
    let hd4 = p.head_dim / 4u;
    let kv4 = p.kv_dim / 4u;
    let col = kvh * hd4 + i;
    if (j >= step.pos) {
        let row = select(r, j - step.pos, step.pos_step == 1u);
        // Rounded to f16 as the cache holds it: a position's key and value are the same whether
        // this batch reads them or a later one (batched and token-by-token prefill agree).
        return unpack4(pack4(qkv[row * (p.qkv_stride / 4u) + p.n_heads * hd4 + select(0u, kv4, is_v) + col]));
    }
    if (step.branch == 1u && j >= step.prefix_len) {
        let at = (r * p.branch_len + j - step.prefix_len) * kv4 + col;
        if (is_v) {
            return unpack4(v_branch[at]);
        }
        return unpack4(k_branch[at]);
    }
    if (is_v) {
        return unpack4(v_cache[cache_row(j) * kv4 + col]);
    }
    return unpack4(k_cache[cache_row(j) * kv4 + col]);
}

// Stores vector i of batch row r's key and value for kv head kvh (at position pos_r) where later
// batches read them: the cache, or for candidates the row's branch.
fn store_kv(r: u32, pos_r: u32, kvh: u32, i: u32) {
    let hd4 = p.head_dim / 4u;
    let kv4 = p.kv_dim / 4u;
    let col = kvh * hd4 + i;
    let src = r * (p.qkv_stride / 4u) + p.n_heads * hd4 + col;
    let k = pack4(qkv[src]);
    let v = pack4(qkv[src + kv4]);
    if (step.branch == 1u) {
        let dst = (r * p.branch_len + pos_r - step.prefix_len) * kv4 + col;
        k_branch[dst] = k;
        v_branch[dst] = v;
    } else {
        let dst = cache_row(pos_r) * kv4 + col;
        k_cache[dst] = k;
        v_cache[dst] = v;
    }
}
