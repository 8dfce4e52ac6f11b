//! One function per shader: its params struct (mirroring the WGSL one), its bind group and its
//! workgroup count, returned as a Dispatch to record into a compute pass. Bind groups are made once
//! when the model is built and replayed for every token.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::quant::QuantType;
use bytemuck::{Pod, Zeroable};
use std::sync::Arc;

mod attention;
pub use attention::{attention, rope_rotations, runs_attention_lanes, AttentionBuffers, AttentionParams, AttentionRows};

/// A recorded kernel call: pipeline, bindings and grid.
pub struct Dispatch {
    pub name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Uniform buffers the bind group uses, kept alive with it.
    _uniforms: Vec<wgpu::Buffer>,
}

impl Dispatch {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
    }
}

/// Records `dispatches` into one compute pass of a new command buffer and submits it.
pub fn submit(gpu: &Gpu, dispatches: &[Dispatch]) {
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        dispatches.iter().for_each(|d| d.record(&mut pass));
    }
    gpu.queue.submit([enc.finish()]);
}

/// A grid of `n` workgroups, spilling into y past the 65535 per-dimension limit.
fn grid(n: u32) -> [u32; 3] {
    if n <= 65535 {
        [n.max(1), 1, 1]
    } else {
        [65535, n.div_ceil(65535), 1]
    }
}

fn build(
    gpu: &Gpu,
    name: &'static str,
    src: &'static str,
    quant: Option<QuantType>,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    build_with(gpu, name, gpu.pipeline(name, src, quant)?, params, buffers, workgroups)
}

fn build_with(
    gpu: &Gpu,
    name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: &[u8],
    buffers: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let numbered: Vec<(u32, &wgpu::Buffer)> = buffers.iter().enumerate().map(|(i, b)| (i as u32 + 1, *b)).collect();
    build_at(gpu, name, pipeline, params, &numbered, workgroups)
}

/// build_with for an entry point that uses only some of its module's bindings: (binding, buffer).
fn build_at(
    gpu: &Gpu,
    name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: &[u8],
    buffers: &[(u32, &wgpu::Buffer)],
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let resources: Vec<(u32, wgpu::BindingResource)> = buffers.iter().map(|(i, b)| (*i, b.as_entire_binding())).collect();
    build_bound(gpu, name, pipeline, params, resources, workgroups)
}

/// build_at with any resources (a texture among them): (binding, resource).
fn build_bound(
    gpu: &Gpu,
    name: &'static str,
    pipeline: Arc<wgpu::ComputePipeline>,
    params: &[u8],
    resources: Vec<(u32, wgpu::BindingResource)>,
    workgroups: [u32; 3],
) -> Result<Dispatch> {
    let uniform = gpu.buffer(&wgpu::BufferDescriptor {
        label: Some(name),
        size: params.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue.write_buffer(&uniform, 0, params);
    let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
    for (binding, resource) in resources {
        entries.push(wgpu::BindGroupEntry { binding, resource });
    }
    let bind_group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    gpu.take_error()?;
    Ok(Dispatch { name, pipeline, bind_group, workgroups, _uniforms: vec![uniform] })
}

/// The per-step uniform every position-dependent kernel reads. A step runs a batch of rows: one
/// token (decode), a chunk of a prompt (rows at pos, pos + 1, ...) or n candidates (every row at
/// pos, each with its own branch of the KV cache from prefix_len on).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct Step {
    /// Position of row 0.
    pub pos: u32,
    /// Positions in the KV cache including row 0's (pos + 1).
    pub kv_len: u32,
    /// Rows in the batch.
    pub n_rows: u32,
    /// 1: row r is at pos + r; 0: every row is at pos.
    pub pos_step: u32,
    /// 1: positions from prefix_len on come from each row's branch cache.
    pub branch: u32,
    pub prefix_len: u32,
    pub _pad: [u32; 2],
}

impl Step {
    /// One token at `pos`.
    pub fn single(pos: u32) -> Step {
        Step { pos, kv_len: pos + 1, n_rows: 1, pos_step: 1, ..Default::default() }
    }
    /// A prompt chunk of `n_rows` tokens from `pos` on.
    pub fn chunk(pos: u32, n_rows: u32) -> Step {
        Step { n_rows, ..Step::single(pos) }
    }
    /// `n_rows` candidates, each at `pos`, sharing positions below `prefix_len`.
    pub fn candidates(pos: u32, n_rows: u32, prefix_len: u32) -> Step {
        Step { n_rows, pos_step: 0, branch: 1, prefix_len, ..Step::single(pos) }
    }
}

/// Where a matrix's blocks are on the GPU.
#[derive(Clone, Copy)]
pub enum Blocks<'a> {
    /// A storage buffer: rows `row_stride` bytes apart.
    Buffer(&'a wgpu::Buffer),
    /// A texture of 16-byte texels (Rgba32Uint), TEXTURE_WIDTH per texture row, holding the rows
    /// padded to 16 bytes one after another: on CPU adapters, for types with a wide decoder, whose
    /// kernels alone read it (`uses_texture`).
    Texture(&'a wgpu::TextureView),
}

/// A quantized matrix (or one row-range part of one) in raw GGUF bytes on the GPU.
pub struct QuantMatrix<'a> {
    pub ty: QuantType,
    pub blocks: Blocks<'a>,
    pub rows: u32,
    pub cols: u32,
    /// Bytes from one row to the next: row_bytes(), or more where rows are padded.
    pub row_stride: u32,
}

impl<'a> QuantMatrix<'a> {
    /// Rows packed back to back in a buffer, as in the GGUF file.
    pub fn packed(ty: QuantType, buffer: &'a wgpu::Buffer, rows: u32, cols: u32) -> QuantMatrix<'a> {
        QuantMatrix { ty, blocks: Blocks::Buffer(buffer), rows, cols, row_stride: row_bytes(ty, cols) }
    }

    /// The buffer, for the kernels that read blocks from one (all but the wide ones).
    fn buffer(&self, kernel: &str) -> Result<&'a wgpu::Buffer> {
        match self.blocks {
            Blocks::Buffer(b) => Ok(b),
            Blocks::Texture(_) => Err(crate::Error::InvalidRequest(format!("{kernel}: a {} matrix in a texture has no {kernel} kernel", self.ty.name()))),
        }
    }

    fn resource(&self) -> wgpu::BindingResource<'a> {
        match self.blocks {
            Blocks::Buffer(b) => b.as_entire_binding(),
            Blocks::Texture(t) => wgpu::BindingResource::TextureView(t),
        }
    }
}

/// Bytes of a row of `cols` values of type `ty`.
pub fn row_bytes(ty: QuantType, cols: u32) -> u32 {
    (cols as u64 / ty.block_elems() * ty.block_bytes()) as u32
}

/// The row stride a matrix gets on this adapter: on CPU adapters rows of types with a matvec_wide
/// decoder are padded to 16 bytes (so that its 16-byte loads line up), elsewhere rows stay packed.
pub fn row_stride(gpu: &Gpu, ty: QuantType, cols: u32) -> u32 {
    let packed = row_bytes(ty, cols);
    if gpu.matvec_rowwise && ty.wide_matvec_wgsl().is_some() && packed % 4 == 0 {
        packed.next_multiple_of(16)
    } else {
        packed
    }
}

/// Whether the wide kernels (matvec_wide, matmul_wide, embed_wide) read a matrix of this type laid
/// out `row_stride` bytes per row on this adapter: a CPU adapter, a type with a wide decoder, rows
/// 16 bytes apart.
fn reads_wide(gpu: &Gpu, ty: QuantType, row_stride: u32) -> bool {
    gpu.matvec_rowwise && ty.wide_matvec_wgsl().is_some() && row_stride % 16 == 0
}

/// Texels per texture row of a matrix in a texture (Blocks::Texture): the least maximum width
/// WebGPU guarantees; wide_texture.wgsl has it as a shift and a mask.
pub const TEXTURE_WIDTH: u32 = 8192;

/// Whether a matrix of this type and row length lives in a texture on this adapter: where rows are
/// padded for the wide kernels and the adapter reads weights from textures (Gpu::weight_textures).
pub fn uses_texture(gpu: &Gpu, ty: QuantType, cols: u32) -> bool {
    gpu.weight_textures && reads_wide(gpu, ty, row_stride(gpu, ty, cols))
}

/// Most bytes of one matrix part in a texture (TEXTURE_WIDTH x the adapter's largest height).
pub fn max_texture_bytes(gpu: &Gpu) -> u64 {
    16 * TEXTURE_WIDTH as u64 * gpu.limits.max_texture_dimension_2d as u64
}

/// Copies the first `bytes` (a multiple of 16) of `buffer` into a new texture laid out as
/// Blocks::Texture describes (the buffer can be dropped once this is submitted).
pub fn texture_from_buffer(gpu: &Gpu, label: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<wgpu::TextureView> {
    let texels = bytes / 16;
    let (width, full_rows, rest) = (TEXTURE_WIDTH as u64, texels / TEXTURE_WIDTH as u64, texels % TEXTURE_WIDTH as u64);
    let height = texels.div_ceil(width).max(1);
    if bytes % 16 != 0 || height > gpu.limits.max_texture_dimension_2d as u64 {
        return Err(crate::Error::InvalidRequest(format!("{label}: {bytes} bytes do not fit a texture of {width} x {} texels", gpu.limits.max_texture_dimension_2d)));
    }
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size: wgpu::Extent3d { width: TEXTURE_WIDTH, height: height as u32, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        // Bound as a read-only storage texture (wide_texture.wgsl) or a sampled one
        // (wide_texture_sampled.wgsl): Gpu::texture_storage_loads.
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let mut enc = gpu.device.create_command_encoder(&Default::default());
    // Whole texture rows, then the texels of the last, partial one.
    let at = |row: u64| wgpu::TexelCopyTextureInfo { texture: &texture, mip_level: 0, origin: wgpu::Origin3d { x: 0, y: row as u32, z: 0 }, aspect: wgpu::TextureAspect::All };
    let from = |offset: u64, rows: u64| wgpu::TexelCopyBufferInfo {
        buffer,
        layout: wgpu::TexelCopyBufferLayout { offset, bytes_per_row: Some(16 * TEXTURE_WIDTH), rows_per_image: Some(rows as u32) },
    };
    if full_rows > 0 {
        enc.copy_buffer_to_texture(from(0, full_rows), at(0), wgpu::Extent3d { width: TEXTURE_WIDTH, height: full_rows as u32, depth_or_array_layers: 1 });
    }
    if rest > 0 {
        enc.copy_buffer_to_texture(from(full_rows * width * 16, 1), at(full_rows), wgpu::Extent3d { width: rest as u32, height: 1, depth_or_array_layers: 1 });
    }
    gpu.queue.submit([enc.finish()]);
    gpu.take_error()?;
    Ok(texture.create_view(&Default::default()))
}

/// The pipeline of a wide kernel (matvec_wide, matmul_wide, embed_wide) for `w`, where it applies: a
/// CPU adapter and rows of a type with a wide decoder laid out 16 bytes apart. Composed as the
/// type's quant/wide_<type>.wgsl, wide.wgsl, the kernel's io file, the activation loader (through
/// subgroups where the device has them with at least 8 lanes and `subgroup_acts`, else plain
/// loads), the weights' loader (a buffer, or a texture read through `binding` where
/// Gpu::texture_storage_loads allows the storage one), the `extra` (name, source) snippets and the
/// kernel (its group_blocks marker written out); named `base` plus what it was composed with.
#[allow(clippy::too_many_arguments)]
fn wide_pipeline(
    gpu: &Gpu,
    w: &QuantMatrix,
    io: &str,
    kernel: &str,
    base: &str,
    subgroup_acts: bool,
    binding: TextureBinding,
    extra: &[(&str, &str)],
) -> Result<Option<Arc<wgpu::ComputePipeline>>> {
    let Some(wide) = w.ty.wide_matvec_wgsl().filter(|_| reads_wide(gpu, w.ty, w.row_stride)) else {
        return Ok(None);
    };
    let mut name = base.to_string();
    let acts = if gpu.subgroup_acts && subgroup_acts {
        name += "+subgroup";
        include_str!("../shaders/acts_subgroup.wgsl")
    } else {
        include_str!("../shaders/acts_plain.wgsl")
    };
    let loader = match w.blocks {
        Blocks::Texture(_) if binding == TextureBinding::Sampled || !gpu.texture_storage_loads => {
            name += "+sampled";
            include_str!("../shaders/wide_texture_sampled.wgsl")
        }
        Blocks::Texture(_) => {
            name += "+texture";
            include_str!("../shaders/wide_texture.wgsl")
        }
        Blocks::Buffer(_) => include_str!("../shaders/wide_buffer.wgsl"),
    };
    let mut src = vec![wide, include_str!("../shaders/wide.wgsl"), io, acts, loader];
    for (tag, snippet) in extra {
        name += "+";
        name += tag;
        src.push(snippet);
    }
    let kernel = if kernel.contains(GROUP_BLOCKS_MARKER) { kernel.replace(GROUP_BLOCKS_MARKER, &group_blocks(wide)?) } else { kernel.to_string() };
    src.push(&kernel);
    gpu.pipeline_at(&name, &src.join("\n"), Some(w.ty), "main").map(Some)
}

/// How a wide kernel would read a weight texture: matvec_wide and embed_wide through the read-only
/// storage binding (wide_texture.wgsl), matmul_wide through the sampled one
/// (wide_texture_sampled.wgsl: lavapipe's prefill ran ~5% slower through the storage binding).
#[derive(Clone, Copy, PartialEq, Eq)]
enum TextureBinding {
    Storage,
    Sampled,
}

/// The line of matvec_wide.wgsl that group_blocks replaces.
const GROUP_BLOCKS_MARKER: &str = "//@group_blocks";

/// matvec_wide's walk over one group of blocks for its 4 rows (group g0 .. g3 loaded, activations
/// from element xi): block j's activations loaded once, then dotted with each row's block j by the
/// quant file's group_block_<j>; one statement per block, written out (a function per block rather
/// than an index: the group's words are fields). GROUP_BLOCKS comes from the quant file's source.
fn group_blocks(wide: &str) -> Result<String> {
    let n: u32 = wide
        .lines()
        .find_map(|l| l.strip_prefix("const GROUP_BLOCKS: u32 = ")?.strip_suffix("u;")?.parse().ok())
        .ok_or_else(|| crate::Error::InvalidRequest("a wide decoder without `const GROUP_BLOCKS: u32 = <n>u;`".into()))?;
    Ok((0..n)
        .map(|j| {
            format!(
                "x = block_acts(xi + {j}u * BLOCK_ELEMS);\n        acc += vec4<f32>(group_block_{j}(g0, x), group_block_{j}(g1, x), group_block_{j}(g2, x), group_block_{j}(g3, x));\n        "
            )
        })
        .collect())
}

/// What a matvec folds in beyond its dot products (matvec_wide on CPU adapters with subgroups of one
/// size: `can_fold`).
#[derive(Clone, Copy, Default)]
pub struct Fold<'a> {
    /// Rows dotted with silu(gate) * up, x = [gate | up] with up at this element of x: swiglu.
    pub swiglu_up: Option<u32>,
    /// Rows dotted with rmsnorm(x) * norm_w: (norm_w, the partial sums of squares of x a matvec
    /// with `partials_out` left, eps).
    pub norm: Option<(&'a wgpu::Buffer, &'a wgpu::Buffer, f32)>,
    /// Leaves partial sums of squares of what it stores here ([ceil(rows / (subgroup size * 4))]: one
    /// per subgroup of lanes with 4 rows each) for a following `norm` fold.
    pub partials_out: Option<&'a wgpu::Buffer>,
}

/// Whether matvec_fold can fold into a matvec over `w` on this device.
pub fn can_fold(gpu: &Gpu, w: &QuantMatrix) -> bool {
    gpu.subgroup_acts && gpu.info.subgroup_min_size == gpu.info.subgroup_max_size && reads_wide(gpu, w.ty, w.row_stride)
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatvecParams {
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub x_offset: u32,
    pub out_offset: u32,
    pub out_pos_stride: u32,
    pub accumulate: u32,
    /// Set by matvec_fold.
    pub up_offset: u32,
    pub eps: f32,
    pub subgroup_size: u32,
    pub _pad: [u32; 2],
}

/// matvec: out[out_offset + pos * out_pos_stride + r] (+)= dot(W[r], x[x_offset..]).
/// x is read four values at a time: x_offset and the row length must be multiples of 4.
pub fn matvec(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, out: &wgpu::Buffer, step: &wgpu::Buffer, p: MatvecParams) -> Result<Dispatch> {
    matvec_fold(gpu, w, x, out, step, p, Fold::default())
}

/// matvec with `fold` folded in (see Fold; an error where can_fold is false and `fold` asks for any).
#[allow(clippy::too_many_arguments)]
pub fn matvec_fold(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, out: &wgpu::Buffer, step: &wgpu::Buffer, p: MatvecParams, fold: Fold) -> Result<Dispatch> {
    if p.x_offset % 4 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("matvec: x offset {} and row length {} must be multiples of 4", p.x_offset, w.cols)));
    }
    let folds = fold.swiglu_up.is_some() || fold.norm.is_some() || fold.partials_out.is_some();
    if folds && !can_fold(gpu, w) {
        return Err(crate::Error::InvalidRequest(format!("matvec: nothing folds into a {} matvec on this adapter", w.ty.name())));
    }
    let subgroup_size = gpu.info.subgroup_min_size;
    let mut p = MatvecParams { rows: w.rows, cols: w.cols, row_bytes: w.row_stride, up_offset: fold.swiglu_up.unwrap_or(0), subgroup_size, ..p };
    let mut resources = vec![(1, step.as_entire_binding()), (3, x.as_entire_binding()), (4, out.as_entire_binding()), (5, w.resource())];
    let act = match (fold.swiglu_up, fold.norm) {
        (Some(_), Some(_)) => return Err(crate::Error::InvalidRequest("matvec: swiglu and rmsnorm do not fold into one matvec".into())),
        (Some(_), None) => ("swiglu", include_str!("../shaders/fold/act_swiglu.wgsl")),
        (None, Some((norm_w, partials, eps))) => {
            p.eps = eps;
            resources.extend([(6, norm_w.as_entire_binding()), (7, partials.as_entire_binding())]);
            ("norm", include_str!("../shaders/fold/act_norm.wgsl"))
        }
        (None, None) => ("x", include_str!("../shaders/fold/act_x.wgsl")),
    };
    let finish = match fold.partials_out {
        Some(partials) => {
            resources.push((8, partials.as_entire_binding()));
            ("norm_out", include_str!("../shaders/fold/out_norm.wgsl"))
        }
        None => ("store", include_str!("../shaders/fold/out_plain.wgsl")),
    };
    let (io, kernel) = (include_str!("../shaders/matvec_io.wgsl"), include_str!("../shaders/matvec_wide.wgsl"));
    if let Some(pipeline) = wide_pipeline(gpu, w, io, kernel, "matvec_wide", true, TextureBinding::Storage, &[act, finish])? {
        return build_bound(gpu, "matvec", pipeline, bytemuck::bytes_of(&p), resources, grid(w.rows.div_ceil(64)));
    }
    let (entry, rows_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 64) } else { ("main", 4) };
    let pipeline = gpu.pipeline_at("matvec", concat!(include_str!("../shaders/matvec_io.wgsl"), include_str!("../shaders/matvec.wgsl")), Some(w.ty), entry)?;
    build_with(gpu, "matvec", pipeline, bytemuck::bytes_of(&p), &[step, w.buffer("matvec")?, x, out], grid(w.rows.div_ceil(rows_per_wg)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct EmbedParams {
    pub dim: u32,
    pub row_bytes: u32,
    pub row_start: u32,
    pub n_rows: u32,
    pub token_index: u32,
    pub out_offset: u32,
    pub _pad: [u32; 2],
}

/// embed: out = dequantized row tokens[token_index] of the table part starting at `row_start`.
/// With `rows` > 1, tokens token_index.. go to rows of `out` one `table.cols` apart.
pub fn embed(gpu: &Gpu, table: &QuantMatrix, row_start: u32, tokens: &wgpu::Buffer, out: &wgpu::Buffer, token_index: u32, rows: u32) -> Result<Dispatch> {
    let p = EmbedParams { dim: table.cols, row_bytes: table.row_stride, row_start, n_rows: table.rows, token_index, ..Default::default() };
    if let Some(pipeline) = wide_pipeline(gpu, table, "", include_str!("../shaders/embed_wide.wgsl"), "embed_wide", false, TextureBinding::Storage, &[])? {
        let resources = vec![(2, tokens.as_entire_binding()), (3, out.as_entire_binding()), (5, table.resource())];
        let blocks = table.cols / table.ty.block_elems() as u32;
        return build_bound(gpu, "embed", pipeline, bytemuck::bytes_of(&p), resources, [blocks.div_ceil(64), rows, 1]);
    }
    let src = include_str!("../shaders/embed.wgsl");
    build(gpu, "embed", src, Some(table.ty), bytemuck::bytes_of(&p), &[table.buffer("embed")?, tokens, out], [table.cols.div_ceil(64), rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RmsnormParams {
    pub n: u32,
    pub eps: f32,
    pub x_offset: u32,
    pub out_offset: u32,
}

/// rmsnorm: out = x / sqrt(mean(x^2) + eps) * w, for `rows` vectors of n one after another.
pub fn rmsnorm(gpu: &Gpu, x: &wgpu::Buffer, w: &wgpu::Buffer, out: &wgpu::Buffer, n: u32, eps: f32, rows: u32) -> Result<Dispatch> {
    let p = RmsnormParams { n, eps, x_offset: 0, out_offset: 0 };
    if gpu.matvec_rowwise && gpu.subgroup_acts {
        let src = concat!(include_str!("../shaders/rmsnorm.wgsl"), include_str!("../shaders/rmsnorm_lanes.wgsl"));
        let pipeline = gpu.pipeline_at("rmsnorm_lanes", src, None, "main_lanes")?;
        return build_with(gpu, "rmsnorm", pipeline, bytemuck::bytes_of(&p), &[x, w, out], [1, rows, 1]);
    }
    build(gpu, "rmsnorm", include_str!("../shaders/rmsnorm.wgsl"), None, bytemuck::bytes_of(&p), &[x, w, out], [1, rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RopeParams {
    pub n_heads: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub offset: u32,
    pub pos_stride: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    /// Elements per batch row.
    pub row_stride: u32,
}

/// rope: rotates the heads at x[offset + pos * pos_stride ..] in place for position step.pos (and
/// for `rows` batch rows, row_stride apart, at their positions); `freq_factors` holds n_rot / 2
/// divisors of the angles (ones when the model has none).
pub fn rope(gpu: &Gpu, x: &wgpu::Buffer, freq_factors: &wgpu::Buffer, step: &wgpu::Buffer, p: RopeParams, rows: u32) -> Result<Dispatch> {
    let n = p.n_heads * p.n_rot / 2;
    build(gpu, "rope", include_str!("../shaders/rope.wgsl"), None, bytemuck::bytes_of(&p), &[step, x, freq_factors], [n.div_ceil(64), rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct CountParams {
    pub n: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SwigluParams {
    pub n: u32,
    /// main_packed: where up starts in the gate buffer.
    pub up_offset: u32,
    pub _pad: [u32; 2],
}

/// swiglu: gate = silu(gate) * up, in place.
pub fn swiglu(gpu: &Gpu, gate: &wgpu::Buffer, up: &wgpu::Buffer, n: u32) -> Result<Dispatch> {
    let p = SwigluParams { n, ..Default::default() };
    build(gpu, "swiglu", include_str!("../shaders/swiglu.wgsl"), None, bytemuck::bytes_of(&p), &[gate, up], grid(n.div_ceil(64)))
}

/// swiglu with up in the gate buffer: gate[i] = silu(gate[i]) * gate[up_offset + i], i < n.
pub fn swiglu_packed(gpu: &Gpu, gate_up: &wgpu::Buffer, n: u32, up_offset: u32) -> Result<Dispatch> {
    let p = SwigluParams { n, up_offset, ..Default::default() };
    let pipeline = gpu.pipeline_at("swiglu", include_str!("../shaders/swiglu.wgsl"), None, "main_packed")?;
    build_at(gpu, "swiglu", pipeline, bytemuck::bytes_of(&p), &[(1, gate_up)], grid(n.div_ceil(64)))
}

/// argmax: result[r] = index of the largest of the n logits of row r, for `rows` rows.
pub fn argmax(gpu: &Gpu, logits: &wgpu::Buffer, result: &wgpu::Buffer, n: u32, rows: u32) -> Result<Dispatch> {
    let p = CountParams { n, _pad: [0; 3] };
    build(gpu, "argmax", include_str!("../shaders/argmax.wgsl"), None, bytemuck::bytes_of(&p), &[logits, result], [1, rows, 1])
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct QkvParams {
    pub q_rows: u32,
    pub kv_rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub head_dim: u32,
    pub n_rot: u32,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub eps: f32,
    pub _pad: [u32; 3],
}

/// qkv: rmsnorm(x) * norm_w through the concatenated [Wq; Wk; Wv] (`w`, q_rows + 2 kv_rows rows)
/// into `out` = [q | k | v], q and k roped for position step.pos.
#[allow(clippy::too_many_arguments)]
pub fn qkv(
    gpu: &Gpu,
    w: &QuantMatrix,
    x: &wgpu::Buffer,
    norm_w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    freq_factors: &wgpu::Buffer,
    step: &wgpu::Buffer,
    p: QkvParams,
) -> Result<Dispatch> {
    let p = QkvParams { cols: w.cols, row_bytes: w.row_stride, ..p };
    if w.rows != p.q_rows + 2 * p.kv_rows || p.head_dim % 2 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("qkv: {} rows for q {} + 2 x kv {}, head {}", w.rows, p.q_rows, p.kv_rows, p.head_dim)));
    }
    let (entry, pairs_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 32) } else { ("main", 2) };
    let pipeline = gpu.pipeline_at("qkv", concat!(include_str!("../shaders/norm_fold.wgsl"), include_str!("../shaders/qkv.wgsl")), Some(w.ty), entry)?;
    let buffers = [step, w.buffer("qkv")?, x, norm_w, out, freq_factors];
    build_with(gpu, "qkv", pipeline, bytemuck::bytes_of(&p), &buffers, grid((w.rows / 2).div_ceil(pairs_per_wg)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct GateUpParams {
    pub ffn: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub eps: f32,
}

/// gate_up: out[r] = silu(Wgate[r] . xb) * (Wup[r] . xb), xb = rmsnorm(x) * norm_w, over the
/// concatenated [Wgate; Wup] (`w`, 2 ffn rows).
pub fn gate_up(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, norm_w: &wgpu::Buffer, out: &wgpu::Buffer, eps: f32) -> Result<Dispatch> {
    if w.rows % 2 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("gate_up: {} rows of {} are not two halves", w.rows, w.cols)));
    }
    let p = GateUpParams { ffn: w.rows / 2, cols: w.cols, row_bytes: w.row_stride, eps };
    let (entry, outs_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 32) } else { ("main", 2) };
    let pipeline = gpu.pipeline_at("gate_up", concat!(include_str!("../shaders/norm_fold.wgsl"), include_str!("../shaders/gate_up.wgsl")), Some(w.ty), entry)?;
    build_with(gpu, "gate_up", pipeline, bytemuck::bytes_of(&p), &[w.buffer("gate_up")?, x, norm_w, out], grid(p.ffn.div_ceil(outs_per_wg)))
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct MatmulParams {
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    /// Elements per token row of x.
    pub x_stride: u32,
    pub out_offset: u32,
    /// Elements per token row of out.
    pub out_stride: u32,
    /// 1: out += result (residual add).
    pub accumulate: u32,
    /// 1: only the batch's last token, into token row 0.
    pub last_only: u32,
    /// First weight row of `w` to use (rows w_row0 .. w_row0 + rows).
    pub w_row0: u32,
    pub _pad: [u32; 3],
}

/// Most tokens the `few` matmul (n candidates on GPUs) takes.
pub const MATMUL_FEW: u32 = 8;

/// matmul: out[t, r] (+)= dot(W[w_row0 + r], x[t]) for the step.n_rows tokens of a batch of at most
/// `max_tokens` (p.rows: how many weight rows; 0 means all of w's rows from w_row0 on). On GPUs,
/// max_tokens <= MATMUL_FEW takes the matvec-shaped kernel (candidates), more the tiled one.
pub fn matmul(gpu: &Gpu, w: &QuantMatrix, x: &wgpu::Buffer, out: &wgpu::Buffer, step: &wgpu::Buffer, p: MatmulParams, max_tokens: u32) -> Result<Dispatch> {
    if p.x_stride % 4 != 0 || w.cols % 4 != 0 {
        return Err(crate::Error::InvalidRequest(format!("matmul: x stride {} and row length {} must be multiples of 4", p.x_stride, w.cols)));
    }
    let rows = if p.rows == 0 { w.rows - p.w_row0 } else { p.rows };
    let p = MatmulParams { rows, cols: w.cols, row_bytes: w.row_stride, ..p };
    let (io, kernel) = (include_str!("../shaders/matmul_io.wgsl"), include_str!("../shaders/matmul_wide.wgsl"));
    // Tokens per thread (matmul_wide's RT, the length of its accumulator arrays): 32 for a prompt
    // chunk (on lavapipe 64-token chunks prefilled ~175 tok/s with 16, ~200 with 32, ~190 with 64);
    // the prompt's logits row alone, or a few candidates, as many as there are.
    let rt = if p.last_only == 1 { 1 } else { max_tokens.clamp(1, 32).next_power_of_two() };
    let rt_const = format!("const RT: u32 = {rt}u;");
    if let Some(pipeline) = wide_pipeline(gpu, w, io, kernel, "matmul_wide", true, TextureBinding::Sampled, &[(&format!("rt{rt}"), &rt_const)])? {
        let resources = vec![(1, step.as_entire_binding()), (3, x.as_entire_binding()), (4, out.as_entire_binding()), (5, w.resource())];
        return build_bound(gpu, "matmul", pipeline, bytemuck::bytes_of(&p), resources, [rows.div_ceil(64), max_tokens.div_ceil(rt), 1]);
    }
    let src = concat!(include_str!("../shaders/matmul_io.wgsl"), include_str!("../shaders/matmul.wgsl"));
    let buffers = [step, w.buffer("matmul")?, x, out];
    if !gpu.matvec_rowwise && max_tokens <= MATMUL_FEW {
        let pipeline = gpu.pipeline_at("matmul", src, Some(w.ty), "main_few")?;
        return build_with(gpu, "matmul", pipeline, bytemuck::bytes_of(&p), &buffers, grid(rows.div_ceil(4)));
    }
    let (entry, tokens_per_wg) = if gpu.matvec_rowwise { ("main_rowwise", 16) } else { ("main", 32) };
    let pipeline = gpu.pipeline_at("matmul", src, Some(w.ty), entry)?;
    let tiles = if p.last_only == 1 { 1 } else { max_tokens.div_ceil(tokens_per_wg) };
    build_with(gpu, "matmul", pipeline, bytemuck::bytes_of(&p), &buffers, [rows.div_ceil(64), tiles, 1])
}

