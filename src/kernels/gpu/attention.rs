//! attention in the GPU family, shaped like llama.cpp's Vulkan flash attention: one token or n
//! candidates through gpu/attention.wgsl (a workgroup per kv head and block of its query heads, lanes
//! across head_dim, split over the KV length by the current length, then a combine dispatch, or in
//! decode while the context is short, the splits' partials left for Wo's loader to merge); a
//! prompt chunk through gpu/attention_prompt.wgsl (tiles of query rows walking tiles of keys staged
//! in workgroup memory). The KV cache is f16 (kv_cache::elem_bytes).

use crate::error::{Error, Result};
use crate::gpu::compose::{wgsl, Module};
use crate::gpu::Layout;
use crate::kernels::{at, bind, numbered, AttentionBuffers, AttentionParams, AttentionRows, Dispatch, Target};

/// Most splits of the KV length a decode dispatch has (enough workgroups for 100+ compute units
/// with a few kv heads); p.n_splits of a dispatch is at most this.
pub const ATTENTION_MAX_SPLITS: u32 = 32;
/// Fewest positions per working split: a length of n positions works ceil(n / this) splits (at most
/// p.n_splits), the others exit at once. A split walks its positions COLS at a time, each step a key
/// load, a reduction and a value load in sequence: short splits keep that chain short where a few kv
/// heads give few workgroups (SmolLM2: 3 per split), for one combine dispatch more.
pub const ATTENTION_SPLIT_LEN: u32 = 64;
/// Most splits a decode attention dispatch leaves unmerged for Wo's activation loader
/// (kernels::attention_unmerged, matvec_combine): each of Wo's workgroups reads the attention output
/// once per working split, so the decode graph takes this path only while the context is short
/// (Layout::combine_in_wo; up to gpu::combine_in_wo_splits of ATTENTION_SPLIT_LEN positions).
pub const COMBINE_IN_WO_SPLITS: u32 = 4;

/// Bytes of attention's split partials for `rows` rows: [rows, n_heads, n_splits, head_dim + 4]
/// f32, each split's (m, l, 0, 0) then its weighted values o (vec4-aligned).
pub fn attention_partial_bytes(rows: u32, n_heads: u32, n_splits: u32, head_dim: u32) -> u64 {
    4 * rows as u64 * n_heads as u64 * n_splits as u64 * (head_dim as u64 + 4)
}

/// Invocations per decode workgroup.
const DECODE_WG: u32 = 128;
/// Most lanes across head_dim in decode (a power of two; fewer for narrow heads or small subgroups):
/// 8 lanes a key, so a workgroup of 128 walks 16 keys a step, each lane with DPL loads in flight.
const DECODE_MAX_D_SPLIT: u32 = 8;
/// Most query heads one decode workgroup serves.
const DECODE_MAX_ROWS: u32 = 8;
/// Most vec4 of queries (and as many of outputs) a decode lane holds: ROWS * DPL.
const DECODE_MAX_LANE_VEC4: u32 = 16;
/// Invocations per prompt workgroup.
const PROMPT_WG: u32 = 64;
/// Most query rows (and keys) per prompt tile.
const PROMPT_MAX_T: u32 = 16;
/// Workgroup bytes the prompt kernel's query and key/value tiles may take together (under WebGPU's
/// default 16384, leaving room for the score tile and the per-row sums).
const PROMPT_TILE_BYTES: u32 = 14336;

/// The decode kernel's shape for heads of `hd4` vec4 and `group` query heads per kv head.
struct DecodeShape {
    d_split: u32,
    dpl: u32,
    rows: u32,
    blocks: u32,
    subgroups: bool,
}

impl DecodeShape {
    fn new(layout: &Layout, hd4: u32, group: u32) -> DecodeShape {
        // Lanes across head_dim: a power of two, at most hd4, and within the smallest subgroup.
        let subgroups = layout.subgroups && layout.subgroup_sizes.0 >= 2;
        let mut d_split = DECODE_MAX_D_SPLIT.min(1 << hd4.ilog2());
        if subgroups {
            d_split = d_split.min(1 << layout.subgroup_sizes.0.ilog2());
        }
        let dpl = hd4.div_ceil(d_split);
        let max_rows = (DECODE_MAX_LANE_VEC4 / dpl).clamp(1, DECODE_MAX_ROWS);
        let blocks = group.div_ceil(max_rows);
        DecodeShape { d_split, dpl, rows: group.div_ceil(blocks), blocks, subgroups }
    }
}

/// attention for the `which` rows: a prompt chunk in one dispatch; one token or candidates in one
/// dispatch plus, where `combine` and more than one split is dispatched (p.n_splits > 1), a combine
/// dispatch (without it, more than one working split leaves its partials in b.partial for
/// matvec_combine to merge; one writes b.out itself).
pub fn attention(
    t: Target,
    b: &AttentionBuffers,
    step: &wgpu::Buffer,
    p: AttentionParams,
    which: AttentionRows,
    combine: bool,
) -> Result<Vec<Dispatch>> {
    if b.rotations.is_some() {
        return Err(Error::InvalidRequest("attention: RoPE in the kernel is the CPU family's".into()));
    }
    if !p.head_dim.is_multiple_of(4) || p.head_dim > 256 || p.n_kv_heads == 0 || !p.n_heads.is_multiple_of(p.n_kv_heads)
    {
        return Err(Error::InvalidRequest(format!(
            "attention: {} heads over {} kv heads of width {} (a multiple of 4 up to 256)",
            p.n_heads, p.n_kv_heads, p.head_dim
        )));
    }
    let p = AttentionParams { n_splits: p.n_splits.min(ATTENTION_MAX_SPLITS), ..p };
    let hd4 = p.head_dim / 4;
    let rows = which.count();
    let params = bytemuck::bytes_of(&p);
    let buffers = [step, b.qkv, b.k_cache, b.v_cache, b.k_branch, b.v_branch, b.out, b.partial];
    if let AttentionRows::Prompt(_) = which {
        // The query tile and the key/value tile (its rows padded by a vec4: attention_prompt.wgsl).
        let tile = (PROMPT_TILE_BYTES / (16 * (2 * hd4 + 1))).min(PROMPT_MAX_T);
        let module = Module::new(
            &format!("attention_prompt/{}", p.head_dim),
            &[wgsl::ATTENTION_PARAMS, wgsl::gpu::ATTENTION_IO, wgsl::gpu::ATTENTION_PROMPT],
        )
        .prepend(format!(
            "const HD4: u32 = {hd4}u;\nconst T: u32 = {tile}u;\nconst WG: u32 = {PROMPT_WG}u;\nconst OUT_PER_LANE: u32 = {}u;\n",
            (tile * hd4).div_ceil(PROMPT_WG)
        ));
        let grid = [rows.div_ceil(tile), p.n_heads, 1];
        // (No partials: binding 8 is not in the prompt kernel's layout.)
        let resources = numbered(&buffers[..7]);
        return Ok(vec![bind(t.gpu, "attention", t.pipeline(&module, "prompt")?, params, resources, grid)?]);
    }
    let group = p.n_heads / p.n_kv_heads;
    let s = DecodeShape::new(t.layout, hd4, group);
    let sums = if s.subgroups { wgsl::gpu::ATTENTION_SUM_SUBGROUP } else { wgsl::gpu::ATTENTION_SUM_SHARED };
    let module = Module::new(
        &format!("attention/{group}x{}/{}", p.head_dim, if s.subgroups { "subgroups" } else { "shared" }),
        &[wgsl::ATTENTION_PARAMS, wgsl::gpu::ATTENTION_IO, sums, wgsl::gpu::ATTENTION],
    )
    .prepend(format!(
        "const HD4: u32 = {hd4}u;\nconst D_SPLIT: u32 = {}u;\nconst DPL: u32 = {}u;\nconst ROWS: u32 = {}u;\n\
         const BLOCKS: u32 = {}u;\nconst SPLIT_LEN: u32 = {ATTENTION_SPLIT_LEN}u;\nconst WG: u32 = {DECODE_WG}u;\n",
        s.d_split, s.dpl, s.rows, s.blocks
    ));
    let mut out = vec![bind(
        t.gpu,
        "attention",
        t.pipeline(&module, "main")?,
        params,
        numbered(&buffers),
        [p.n_kv_heads * s.blocks, rows, p.n_splits],
    )?];
    if combine && p.n_splits > 1 {
        out.push(bind(
            t.gpu,
            "attention",
            t.pipeline(&module, "combine")?,
            params,
            at(&[(1, step), (7, b.out), (8, b.partial)]),
            [p.n_heads, rows, 1],
        )?);
    }
    Ok(out)
}
