//! embed_wide: embed (see embed.wgsl) for a table in the wide kernels' layout (rows padded to 16
//! bytes, in a texture or a buffer: load16): an invocation per 32 values (WIDE_ELEMS) of the row, decoded by the
//! type's block_values_wide. Composed after common.wgsl, quant/<type>.wgsl, cpu/quant/wide_<type>.wgsl,
//! wide.wgsl, acts_plain.wgsl and wide_texture.wgsl or wide_buffer.wgsl.

struct Params {
    dim: u32,         // row length
    row_bytes: u32,   // bytes from one row to the next (padded to 16)
    row_start: u32,   // first vocabulary row in this part
    n_rows: u32,      // rows in this part
    token_index: u32, // which entry of `tokens` to look up
    out_offset: u32,  // first element of out (a multiple of 4)
    _a: u32,
    _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<u32>;         // unused (common.wgsl's byte readers name it)
@group(0) @binding(2) var<storage, read> tokens: array<u32>;          // token ids
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>; // [rows, dim / 4]
@group(0) @binding(4) var<uniform> step: Step;                        // rows from step.n_rows on: none

// The decoders' group_dot reads activations; the lookup has none.
fn act4(i: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = gid.x;
    if (gid.y >= step.n_rows) {
        return;
    }
    let tok = tokens[p.token_index + gid.y];
    if (b >= p.dim / WIDE_ELEMS || tok < p.row_start || tok >= p.row_start + p.n_rows) {
        return;
    }
    let v = block_values_wide((tok - p.row_start) * (p.row_bytes / 16u), b);
    let o = (p.out_offset + gid.y * p.dim + b * WIDE_ELEMS) / 4u;
    out[o] = v.a0;
    out[o + 1u] = v.a1;
    out[o + 2u] = v.a2;
    out[o + 3u] = v.a3;
    out[o + 4u] = v.a4;
    out[o + 5u] = v.a5;
    out[o + 6u] = v.a6;
    out[o + 7u] = v.a7;
}
