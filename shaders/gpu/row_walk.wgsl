//! The GPU family's decode row walk (matvec, qkv, gate_up), in the shape of llama.cpp's Vulkan
//! mul_mat_vec: a workgroup of WG lanes takes ROWS rows, neighbouring lanes on neighbouring quant
//! words; each step's activations are loaded once for all ROWS rows and each run of 8 values'
//! scale and offset applied once to its quants' dot (q8_dot). walk_rows comes after this file:
//! row_walk_8.wgsl (8 consecutive values a lane and step) or, for the types whose quant words hold
//! two runs of values (quant16: both nibbles of a byte; Q2_K/Q3_K: bit pairs j and j + 2),
//! row_walk_pairs.wgsl (16 values from the same words). The sum of squares of the activations as
//! stored rides along, so an rmsnorm's scale can multiply the finished dots instead of delaying the
//! first weight load. Composed after common.wgsl, quant/<type>.wgsl and one of
//! reduce_subgroup.wgsl / reduce_shared.wgsl; the kernel defines raw4 (activations as stored) and
//! act_of (what the rows are dotted with).

const WG: u32 = 64u;  // lanes per workgroup
const ROWS: u32 = 2u; // rows per workgroup
const RED: u32 = 3u;  // values each workgroup reduces: ROWS dots and the sum of squares
