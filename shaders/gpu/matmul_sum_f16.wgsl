//! matmul_tiled.wgsl's products in f16 (tiles of f16; Layout::f16_products): a K step's BK
//! products per output are multiplied and summed in f16 as read from the tiles (no widening; two
//! values an instruction on GPUs with packed half FMAs, as llama.cpp's f16 accumulators), then
//! added into the thread's f32 sums, so f16 rounds only BK terms at a time, not a whole row's. A
//! step's sum is clamped to f16's finite range, as llama.cpp clamps its f16 sums.

alias prod1 = f16;

const F16_MAX: f16 = 65504.0h;

var<private> acc: array<vec4<f32>, TR * TG>; // the thread's sums, as `part`

// After a K step's products: into the f32 sums, and `part` cleared for the next step.
fn step_done() {
    for (var a = 0u; a < TR * TG; a++) {
        acc[a] += vec4<f32>(clamp(part[a], vec4<f16>(-F16_MAX), vec4<f16>(F16_MAX)));
        part[a] = vec4<f16>(0.0h);
    }
}

// The thread's sum for part[a].
fn sums(a: u32) -> vec4<f32> {
    return acc[a];
}
