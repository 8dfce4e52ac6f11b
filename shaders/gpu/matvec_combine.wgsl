//! matvec.wgsl's activations for decode's Wo while the context is short (GPU family): attention's
//! output merged from its unmerged splits' partials here instead of by attention's combine
//! dispatch: att = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s per head. prepare_acts turns the
//! splits' (m, l) into one weight per head and split in workgroup memory; a step's activations are
//! then n_active loads instead of one. With one working split attention wrote att itself, and x
//! (att, from element 0) is read as stored. Needs the constants HEAD_DIM, N_HEADS, N_SPLITS (the
//! attention dispatch's most splits, the partials' stride) and SPLIT_LEN
//! (kernels::gpu::ATTENTION_SPLIT_LEN).

const HD4: u32 = HEAD_DIM / 4u;
const SPLIT4: u32 = HD4 + 1u; // vec4 per split's partial: (m, l, unused, unused), then o

@group(0) @binding(5) var<storage, read> partial: array<vec4<f32>>; // [N_HEADS, N_SPLITS, SPLIT4]

var<workgroup> split_w: array<f32, N_HEADS * N_SPLITS>; // [head, split]: e^(m_s - M) / sum_s e^(m_s - M) l_s
// The splits attention worked (its active_splits): uniform, from the step.
fn splits_worked() -> u32 {
    return clamp((step.kv_len + SPLIT_LEN - 1u) / SPLIT_LEN, 1u, N_SPLITS);
}

// att's values i .. i+3 (i a multiple of 4).
fn raw4(i: u32) -> vec4<f32> {
    let n_active = splits_worked();
    if (n_active == 1u) {
        return x4(i);
    }
    let h = i / HEAD_DIM;
    let at = h * N_SPLITS * SPLIT4 + 1u + (i % HEAD_DIM) / 4u;
    var a = vec4<f32>(0.0);
    for (var s = 0u; s < n_active; s++) {
        a += split_w[h * N_SPLITS + s] * partial[at + s * SPLIT4];
    }
    return a;
}
fn act4(i: u32) -> vec4<f32> {
    return raw4(i);
}
fn act_of(v: vec4<f32>, i: u32) -> vec4<f32> {
    return v;
}

// Every lane, before the walk: the splits' weights for each head (one barrier).
fn prepare_acts(lid: u32) {
    let n_active = splits_worked();
    if (n_active > 1u) {
        for (var h = lid; h < N_HEADS; h += WG) {
            let ml = h * N_SPLITS * SPLIT4;
            var big = partial[ml].x;
            for (var s = 1u; s < n_active; s++) {
                big = max(big, partial[ml + s * SPLIT4].x);
            }
            var total = 0.0;
            for (var s = 0u; s < n_active; s++) {
                let v = partial[ml + s * SPLIT4];
                total += exp(v.x - big) * v.y;
            }
            for (var s = 0u; s < n_active; s++) {
                split_w[h * N_SPLITS + s] = exp(partial[ml + s * SPLIT4].x - big) / total;
            }
        }
    }
    workgroupBarrier();
}
