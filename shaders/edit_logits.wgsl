//! A step's logit edits on the GPU, so that a request with a logit bias or repetition penalties
//! still chooses its tokens on the GPU (engine::sampler::Sampler::apply_penalties, llama.cpp's
//! order and formulas). Workgroups of 256 threads, SPAN tokens each, (x, y) = (span, choice): each
//! copies its span of logits row min(y, rows - 1) into row y of `edited` (the raw logits stay as
//! they are, for the log-probabilities and top_logits), adds each bias whose id is in its span,
//! then for each distinct token of the choice's window (the last penalty_last_n tokens) that is in
//! its span divides a positive logit by the repetition penalty (multiplies a negative one), and
//! subtracts count x frequency + presence. Every workgroup reads the whole window and bias list
//! (short), but a token is edited by its span's workgroup alone, so no workgroup waits for
//! another. The count of each token comes from atomic adds into `counts`; the first thread to take
//! a token's count back (an exchange with 0) applies that token's penalty, so a token repeated in
//! the window is penalized once, and the counts are left at 0.

struct Params {
    n: u32,      // logits per row (the vocabulary)
    rows: u32,   // rows of logits
    window: u32, // tokens a choice's window holds at most
    biases: u32, // (id, bias) pairs `edits` has room for
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;           // [rows, n]
@group(0) @binding(2) var<storage, read_write> edited: array<f32>;     // [choices, n]
// HEADER words: repetition, frequency, presence (f32 bits), biases used, 1 where each choice y's
// window ends with fed[y]; then [p.biases] (id, bias bits); then [choices, 1 + p.window] windows:
// each its length, then its tokens (oldest first).
@group(0) @binding(3) var<storage, read> edits: array<u32>;
@group(0) @binding(4) var<storage, read_write> counts: array<atomic<u32>>; // [choices, n]
@group(0) @binding(5) var<storage, read> fed: array<u32>;              // [choices]: a chained step's inputs

const HEADER: u32 = 8u;
const SPAN: u32 = 2048u; // tokens a workgroup edits: 8 a thread (EDIT_SPAN in kernels::choose)

// Window token j of choice y (`len` stored there, plus the fed token last where it applies).
fn token(y: u32, len: u32, j: u32) -> u32 {
    if (j == len) {
        return fed[y];
    }
    return edits[HEADER + 2u * p.biases + y * (1u + p.window) + 1u + j];
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let y = wid.y;
    let i = lid.x;
    let first = wid.x * SPAN;
    let end = min(first + SPAN, p.n);
    let src = min(y, p.rows - 1u) * p.n;
    let dst = y * p.n;
    let len = min(edits[HEADER + 2u * p.biases + y * (1u + p.window)], p.window);
    let with_fed = select(0u, 1u, edits[4] != 0u);
    let total = len + with_fed;
    // The span's copy: a thread's eight loads in flight before its first store.
    let last = end - 1u;
    var v: array<f32, 8>;
    for (var c = 0u; c < 8u; c++) {
        v[c] = logits[src + min(first + i + 256u * c, last)];
    }
    for (var c = 0u; c < 8u; c++) {
        let at = first + i + 256u * c;
        if (at < end) {
            edited[dst + at] = v[c];
        }
    }
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t >= first && t < end) {
            atomicStore(&counts[dst + t], 0u);
        }
    }
    storageBarrier();
    let biases = min(edits[3], p.biases);
    for (var j = i; j < biases; j += 256u) {
        let id = edits[HEADER + 2u * j];
        if (id >= first && id < end) {
            edited[dst + id] += bitcast<f32>(edits[HEADER + 2u * j + 1u]);
        }
    }
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t >= first && t < end) {
            atomicAdd(&counts[dst + t], 1u);
        }
    }
    storageBarrier();
    let repetition = bitcast<f32>(edits[0]);
    let frequency = bitcast<f32>(edits[1]);
    let presence = bitcast<f32>(edits[2]);
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t >= first && t < end) {
            let count = atomicExchange(&counts[dst + t], 0u);
            if (count > 0u) {
                var l = edited[dst + t];
                if (l > 0.0) {
                    l = l / repetition;
                } else {
                    l = l * repetition;
                }
                edited[dst + t] = l - (f32(count) * frequency + presence);
            }
        }
    }
}
