//! A step's logit edits on the GPU, so that a request with a logit bias or repetition penalties
//! still chooses its tokens on the GPU (engine::sampler::Sampler::apply_penalties, llama.cpp's
//! order and formulas). One workgroup of 256 threads per choice y: it copies logits row
//! min(y, rows - 1) into its row of `edited` (the raw logits stay as they are, for the
//! log-probabilities and top_logits), adds each bias, then for each distinct token of its window
//! (the last penalty_last_n tokens) divides a positive logit by the repetition penalty (multiplies
//! a negative one), and subtracts count x frequency + presence. The count of each token comes from
//! atomic adds into `counts`; the first thread to take a token's count back (an exchange with 0)
//! applies that token's penalty, so a token repeated in the window is penalized once, and the
//! counts are left at 0.

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
    let src = min(y, p.rows - 1u) * p.n;
    let dst = y * p.n;
    let len = min(edits[HEADER + 2u * p.biases + y * (1u + p.window)], p.window);
    let with_fed = select(0u, 1u, edits[4] != 0u);
    let total = len + with_fed;
    // Four loads in flight per thread (one workgroup copies the row), in the order of a loop by 256.
    let last = p.n - 1u;
    for (var j = i; j < p.n; j += 1024u) {
        let at = vec4<u32>(j, j + 256u, j + 512u, j + 768u);
        let v = vec4<f32>(logits[src + min(at.x, last)], logits[src + min(at.y, last)],
            logits[src + min(at.z, last)], logits[src + min(at.w, last)]);
        for (var c = 0u; c < 4u; c++) {
            if (at[c] < p.n) {
                edited[dst + at[c]] = v[c];
            }
        }
    }
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t < p.n) {
            atomicStore(&counts[dst + t], 0u);
        }
    }
    storageBarrier();
    let biases = min(edits[3], p.biases);
    for (var j = i; j < biases; j += 256u) {
        let id = edits[HEADER + 2u * j];
        if (id < p.n) {
            edited[dst + id] += bitcast<f32>(edits[HEADER + 2u * j + 1u]);
        }
    }
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t < p.n) {
            atomicAdd(&counts[dst + t], 1u);
        }
    }
    storageBarrier();
    let repetition = bitcast<f32>(edits[0]);
    let frequency = bitcast<f32>(edits[1]);
    let presence = bitcast<f32>(edits[2]);
    for (var j = i; j < total; j += 256u) {
        let t = token(y, len, j);
        if (t < p.n) {
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
