//! ModelBuilder: checks a GGUF header against the llama layout and the adapter's limits, then
//! takes the file's tensor bytes as they arrive (from a file, or streamed from the network) and
//! writes them straight into GPU buffers, laid out as the Layout asks; builds the Model at the end.
//! A GPU buffer is created only when the first byte meant for it arrives, so what a header declares
//! costs nothing until its bytes come: GPU memory stays within the bytes received and one binding.

use super::graph::Acts;
use super::kv_cache::KvCache;
use super::weight::{into_textures, write_rows, Stored, Weight};
use super::{Model, MAX_CANDIDATES};
use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::format::gguf::{Gguf, TensorInfo};
use crate::format::quant::QuantType;
use crate::format::weights::{self, TensorSource};
use crate::gpu::{Gpu, Layout};
use crate::kernels::{self, cpu};
use std::collections::HashMap;
use std::sync::Arc;

/// Receives the file's tensor bytes as they arrive, in file order and in chunks of any size (from a
/// file, or streamed from the network), writes them straight into GPU buffers, and builds the Model
/// when all are there. Only a chunk (and a few carried bytes) is ever held in memory.
pub struct ModelBuilder {
    pub(super) gpu: Arc<Gpu>,
    pub(super) layout: Layout,
    pub cfg: Config,
    pub(super) ctx: usize,
    /// Tensors the decoder reads, in file order, with their upload state.
    pub(super) pending: Vec<Pending>,
    /// Largest byte size of one weight part (the adapter's storage-binding limit by default).
    max_part_bytes: u64,
    /// Fused groups (weights::FUSED), planned at the first write: member name -> (group name, byte
    /// offset of the member in the group's buffer).
    members: Option<HashMap<String, (String, u64)>>,
    /// Each planned group's matrix (type, rows, row length, row stride), until its first byte.
    planned_groups: HashMap<String, (QuantType, u32, u32, u32)>,
    /// The groups' concatenated matrices, once their first byte has arrived.
    pub(super) groups: HashMap<String, Weight>,
    /// rope_freqs (or the Phi-3 factors chosen for the context), kept on the host too (the decode
    /// graph's rotations are computed there).
    pub(super) rope_factors: Option<Vec<f32>>,
    /// The KV cache and activations, where `reserve` made them before the weights.
    pub(super) reserved: Option<(KvCache, Acts)>,
}

/// One tensor on its way to the GPU.
pub(super) struct Pending {
    pub(super) info: TensorInfo,
    /// Bytes received so far.
    received: u64,
    /// Up to 3 received bytes not written yet (GPU writes go in multiples of 4).
    carry: Vec<u8>,
    pub(super) target: Option<Target>,
}

pub(super) enum Target {
    /// A norm weight: collected, then dequantized to f32.
    Vector(Vec<u8>),
    /// A matrix: raw blocks written into its parts as they come.
    Matrix(Weight),
    /// A matrix whose parts (first row, rows) are created one by one as their bytes begin: those
    /// in `w.parts` so far, then the rest of `plan`.
    Parts { w: Weight, plan: Vec<(u32, u32)> },
    /// A matrix inside a fused group's buffer, at this byte offset of the group's packed rows.
    Member(String, u64),
}

/// Default context when the caller gives none (the KV cache grows with it).
pub const DEFAULT_CTX: usize = 4096;

impl ModelBuilder {
    /// Validates the header against the llama layout and the adapter's limits before any upload;
    /// the weights will be laid out for `layout`; `ctx` positions of KV cache (None: the file's
    /// context length, at most DEFAULT_CTX and at most what one layer's cache binding can hold).
    pub fn new(gpu: Arc<Gpu>, layout: Layout, g: &Gguf, ctx: Option<usize>) -> Result<ModelBuilder> {
        let cfg = Config::from_gguf(g)?;
        weights::check(g, &cfg)?;
        let layout = layout.for_model(&cfg);
        if cfg.head_dim % 4 != 0 {
            return Err(Error::BadConfig(format!("head width {} is not a multiple of 4", cfg.head_dim)));
        }
        if cfg.head_dim > 256 {
            return Err(Error::BadConfig(format!(
                "head width {} is over the 256 the attention kernel supports",
                cfg.head_dim
            )));
        }
        // The GPU family's qkv binds the most storage buffers (8, WebGPU's default limit): weights,
        // x, the norm's weights, out, the RoPE divisors and the three biases; attention binds 7.
        const STORAGE_BINDINGS: u32 = 8;
        if gpu.limits.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS {
            return Err(Error::AdapterTooSmall {
                have: gpu.limits.max_storage_buffers_per_shader_stage,
                need: STORAGE_BINDINGS,
            });
        }
        let ctx = match ctx {
            Some(c) => {
                KvCache::check(&cfg, &layout, c.max(1), gpu.max_binding())?;
                c.max(1)
            }
            None => DEFAULT_CTX.min(cfg.ctx_len).min(KvCache::max_positions(&cfg, &layout, gpu.max_binding())).max(1),
        };
        Acts::check(&cfg, layout.batch_rows(), layout.attention_splits(ctx), gpu.max_binding())?;
        let items = (layout.batch_rows() as u64 * cfg.n_experts_used as u64).min(u32::MAX as u64) as u32;
        let moe_groups = kernels::moe_matmul_grid_y(cfg.n_experts as u32, items);
        if moe_groups > kernels::MAX_WORKGROUPS_PER_DIMENSION as u64 {
            // The layout's (its prompt chunk's rows), not the file's: another layout may run it.
            return Err(Error::InvalidRequest(format!(
                "{} experts with {} used a token make {moe_groups} workgroups of a {}-row prompt chunk's \
                 expert matmul in layout {layout}, over the 65,535 a dispatch allows",
                cfg.n_experts,
                cfg.n_experts_used,
                layout.batch_rows()
            )));
        }
        let mut pending: Vec<Pending> = weights::expected(&cfg)
            .iter()
            .filter_map(|(n, _)| g.tensor(n))
            .map(|t| Pending { info: t.clone(), received: 0, carry: vec![], target: None })
            .collect();
        pending.sort_by_key(|p| p.info.offset);
        let max_part_bytes = gpu.max_binding();
        Ok(ModelBuilder {
            gpu,
            layout,
            cfg,
            ctx,
            pending,
            max_part_bytes,
            members: None,
            planned_groups: HashMap::new(),
            groups: HashMap::new(),
            rope_factors: None,
            reserved: None,
        })
    }

    /// GPU memory the model will take, in bytes: (weights, KV cache, activations).
    pub fn memory_needed(&self) -> (u64, u64, u64) {
        let c = &self.cfg;
        let weights = self
            .pending
            .iter()
            .map(|p| match p.info.dims.len() {
                1 => p.info.dims[0] * 4,
                // Rows as laid out in this layout (padded in the CPU family for the wide kernels).
                _ => {
                    let (rows, cols) = p.info.rows_cols();
                    rows * kernels::row_stride(&self.layout, p.info.ty, cols as u32) as u64
                }
            })
            .sum();
        let kv = KvCache::bytes_for(c, &self.layout, self.ctx);
        // With the GPU sampler, a request with a logit bias or penalties adds each candidate's
        // edited row and its token counts.
        let edits = if self.layout.gpu_sampler { 8 * MAX_CANDIDATES as u64 * c.vocab_size as u64 } else { 0 };
        (weights, kv, Acts::bytes(c, self.layout.batch_rows(), self.layout.attention_splits(self.ctx)) + edits)
    }

    /// Makes the KV cache and the activations now, before any weight, and waits for the device's
    /// verdict (Gpu::checked): a GPU that cannot hold the model's context says so before the file
    /// downloads, not once gigabytes of weights have gone up (the browser's loader calls this).
    pub async fn reserve(&mut self) -> Result<()> {
        let gpu = self.gpu.clone();
        let made = gpu.checked(|| self.make_state()).await.and_then(|made| made).map_err(|e| self.explain(e))?;
        self.reserved = Some(made);
        Ok(())
    }

    /// The KV cache and the activations this model's context and layout need (made by `reserve`,
    /// or at the end of the build when nothing reserved them).
    pub(crate) fn make_state(&self) -> Result<(KvCache, Acts)> {
        let kv = KvCache::new(&self.gpu, &self.layout, &self.cfg, self.ctx)?;
        Ok((kv, Acts::new(&self.gpu, &self.cfg, self.layout.batch_rows(), self.layout.attention_splits(self.ctx))))
    }

    /// An out-of-memory error with what the model needs added.
    fn explain(&self, e: Error) -> Error {
        explain_oom(e, self.memory_needed(), self.ctx)
    }

    /// The layout the weights are laid out for.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// KV-cache positions the model will have.
    pub fn context_length(&self) -> usize {
        self.ctx
    }

    /// Splits weights into parts of at most `bytes` (below the adapter's limit; tests use it to
    /// exercise the split path on small models).
    pub fn with_max_part_bytes(mut self, bytes: u64) -> ModelBuilder {
        self.max_part_bytes = bytes.min(self.gpu.max_binding());
        self
    }

    /// The file range holding every tensor the decoder needs: feed these bytes.
    pub fn byte_range(&self) -> (u64, u64) {
        let start = self.pending.first().map_or(0, |p| p.info.offset);
        let end = self.pending.iter().map(|p| p.info.offset + p.info.n_bytes).max().unwrap_or(0);
        (start, end)
    }

    /// Takes the file bytes at `file_offset`; chunks must come in file order (gaps and bytes between
    /// tensors are fine).
    pub fn feed(&mut self, file_offset: u64, bytes: &[u8]) -> Result<()> {
        self.feed_inner(file_offset, bytes).map_err(|e| self.explain(e))
    }

    fn feed_inner(&mut self, file_offset: u64, bytes: &[u8]) -> Result<()> {
        let end = file_offset + bytes.len() as u64;
        for i in 0..self.pending.len() {
            let (t0, t1) = (self.pending[i].info.offset, self.pending[i].info.offset + self.pending[i].info.n_bytes);
            if t1 <= file_offset || t0 >= end {
                continue;
            }
            let (a, b) = (t0.max(file_offset), t1.min(end));
            self.write(i, a - t0, &bytes[(a - file_offset) as usize..(b - file_offset) as usize])?;
        }
        Ok(())
    }

    /// Decides which per-layer matrices share one buffer: those of a weights::FUSED group with one
    /// type and row length that fit one binding together.
    fn plan_groups(&mut self) {
        let mut members = HashMap::new();
        // The GPU family runs fused kernels over a group, the CPU family one matvec over it (fewer
        // dispatches); Layout::fuse off keeps every matrix apart.
        let fuse = self.layout.fuse;
        for l in 0..self.cfg.n_layers {
            for (group, suffixes) in weights::FUSED {
                let infos: Vec<&TensorInfo> = suffixes
                    .iter()
                    .filter_map(|s| self.pending.iter().find(|p| p.info.name == weights::layer(l, s)).map(|p| &p.info))
                    .collect();
                if !fuse || infos.len() != suffixes.len() {
                    continue;
                }
                let same = infos.iter().all(|t| {
                    t.ty == infos[0].ty && t.dims.len() == 2 && t.dims[0] == infos[0].dims[0] && t.n_bytes % 4 == 0
                });
                let (ty, cols) = (infos[0].ty, infos[0].dims[0] as u32);
                let rows: u64 = infos.iter().map(|t| t.dims[1]).sum();
                let stride = kernels::row_stride(&self.layout, ty, cols);
                if !same || rows * stride as u64 > self.part_bytes(ty, cols) || cols % 4 != 0 {
                    continue;
                }
                let name = weights::layer(l, group);
                let mut offset = 0;
                for t in &infos {
                    members.insert(t.name.clone(), (name.clone(), offset));
                    offset += t.n_bytes;
                }
                self.planned_groups.insert(name, (ty, rows as u32, cols, stride));
            }
        }
        self.members = Some(members);
    }

    /// Appends `data` at byte `rel` of tensor `i`.
    fn write(&mut self, i: usize, rel: u64, data: &[u8]) -> Result<()> {
        if self.members.is_none() {
            self.plan_groups();
        }
        if self.pending[i].target.is_none() {
            if let Some((group, offset)) = self.members.as_ref().and_then(|m| m.get(&self.pending[i].info.name)) {
                let (group, offset) = (group.clone(), *offset);
                if let Some((ty, rows, cols, row_stride)) = self.planned_groups.remove(&group) {
                    let buffer = Stored::Buffer(self.gpu.storage(&group, rows as u64 * row_stride as u64));
                    let w = Weight { ty, rows, cols, row_stride, parts: vec![(buffer, 0, rows)] };
                    self.groups.insert(group.clone(), w);
                }
                self.pending[i].target = Some(Target::Member(group, offset));
            }
        }
        if self.pending[i].target.is_none() {
            let target = self.allocate(&self.pending[i].info)?;
            self.pending[i].target = Some(target);
        }
        let gpu = self.gpu.clone();
        let layout = self.layout;
        let p = &mut self.pending[i];
        let name = p.info.name.clone();
        if rel != p.received {
            return Err(Error::BadTensor {
                tensor: p.info.name.clone(),
                msg: format!("bytes at {rel} arrived after only {} were received", p.received),
            });
        }
        let start = p.received - p.carry.len() as u64;
        p.received += data.len() as u64;
        let done = p.received == p.info.n_bytes;
        let mut buf = std::mem::take(&mut p.carry);
        buf.extend_from_slice(data);
        // Whole words reach the GPU; whole blocks where the GPU pads them (weight::pad_blocks).
        let unit =
            if kernels::block_pad(&self.layout, p.info.ty).is_some() { p.info.ty.block_bytes() as usize } else { 4 };
        let keep = if done { 0 } else { buf.len() % unit };
        p.carry = buf.split_off(buf.len() - keep);
        match p.target.as_mut().expect("allocated above") {
            Target::Member(group, offset) => {
                let group = group.clone();
                let w = &self.groups[group.as_str()];
                write_rows(
                    &gpu,
                    &layout,
                    &name,
                    w.ty,
                    &w.parts[0].0,
                    *offset + start,
                    &buf,
                    kernels::row_bytes(w.ty, w.cols) as u64,
                    w.row_stride as u64,
                )?;
                let members = self.members.as_ref().expect("planned above");
                let in_group = |p: &Pending| members.get(&p.info.name).is_some_and(|(g, _)| *g == group);
                if done && self.pending.iter().filter(|p| in_group(p)).all(|p| p.received == p.info.n_bytes) {
                    let w = self.groups.get_mut(group.as_str()).expect("planned");
                    into_textures(&gpu, &layout, &group, w)?;
                }
            }
            Target::Vector(v) => {
                v.extend_from_slice(&buf);
                if done {
                    let mut f = vec![0f32; p.info.dims[0] as usize];
                    p.info.ty.dequantize(v, &mut f)?;
                    if p.info.name == weights::OUTPUT_NORM && self.cfg.multipliers.logit_scale != 1.0 {
                        // Granite's logits / logit_scale, carried by the final norm's weights.
                        f.iter_mut().for_each(|w| *w /= self.cfg.multipliers.logit_scale);
                    }
                    if weights::graph_name(&self.cfg, self.ctx, &p.info.name) == weights::ROPE_FREQS {
                        self.rope_factors = Some(f.clone());
                    }
                    let b = gpu.storage_with(&p.info.name, bytemuck::cast_slice(&f));
                    let rows = 1;
                    let cols = f.len() as u32;
                    p.target = Some(Target::Matrix(Weight {
                        ty: QuantType::F32,
                        rows,
                        cols,
                        row_stride: 4 * cols,
                        parts: vec![(Stored::Buffer(b), 0, rows)],
                    }));
                }
            }
            Target::Parts { w, plan } => {
                let row_bytes = p.info.n_bytes / w.rows as u64;
                let (s0, s1) = (start, start + buf.len() as u64);
                // Parts whose first byte is in this chunk are created now (bytes come in order).
                while let Some(&(r0, n)) = plan.get(w.parts.len()) {
                    if r0 as u64 * row_bytes >= s1 {
                        break;
                    }
                    let label = format!("{}[{r0}..{}]", name, r0 + n);
                    let stored = Stored::Buffer(gpu.storage(&label, n as u64 * w.row_stride as u64));
                    w.parts.push((stored, r0, n));
                }
                for (stored, r0, n) in &w.parts {
                    let (p0, p1) = (*r0 as u64 * row_bytes, (*r0 + *n) as u64 * row_bytes);
                    let (a, b) = (s0.max(p0), s1.min(p1));
                    if a < b {
                        write_rows(
                            &gpu,
                            &layout,
                            &name,
                            w.ty,
                            stored,
                            a - p0,
                            &buf[(a - s0) as usize..(b - s0) as usize],
                            row_bytes,
                            w.row_stride as u64,
                        )?;
                    }
                }
                if done {
                    // Stacked experts stay in buffers: moe_matvec reads blocks.
                    if !weights::is_experts(&name) {
                        into_textures(&gpu, &layout, &name, w)?;
                    }
                    let w = std::mem::replace(w, Weight { ty: w.ty, rows: 0, cols: 0, row_stride: 0, parts: vec![] });
                    p.target = Some(Target::Matrix(w));
                }
            }
            Target::Matrix(_) => {
                return Err(Error::BadTensor {
                    tensor: name,
                    msg: "bytes arrived after the tensor was complete".into(),
                })
            }
        }
        gpu.take_error()
    }

    /// Largest bytes of one part of a matrix of this type and row length: one binding, and where
    /// it moves into a texture once uploaded, one texture.
    fn part_bytes(&self, ty: QuantType, cols: u32) -> u64 {
        if cpu::uses_texture(&self.layout, ty, cols) {
            self.max_part_bytes.min(cpu::max_texture_bytes(&self.gpu))
        } else {
            self.max_part_bytes
        }
    }

    /// The plan of a matrix's parts, split by rows so that each fits one binding (part sizes kept
    /// multiples of 4 bytes so that every write lands 4-aligned; buffers come with their bytes); a
    /// collector for a vector.
    fn allocate(&self, t: &TensorInfo) -> Result<Target> {
        if t.dims.len() == 1 {
            // Grown as its bytes come (a header's size is not reserved before they do).
            return Ok(Target::Vector(Vec::with_capacity(t.n_bytes.min(1 << 20) as usize)));
        }
        let (rows, cols) = t.rows_cols();
        if cols % 4 != 0 {
            return Err(Error::BadTensor {
                tensor: t.name.clone(),
                msg: format!("row length {cols} is not a multiple of 4"),
            });
        }
        let row_bytes = t.n_bytes / rows;
        let stride = kernels::row_stride(&self.layout, t.ty, cols as u32) as u64;
        let mut max_rows = (self.part_bytes(t.ty, cols as u32) / stride).min(rows);
        if max_rows < rows && max_rows >= 4 {
            max_rows -= max_rows % 4;
        }
        if max_rows == 0 || (max_rows < rows && !(max_rows * stride).is_multiple_of(4)) {
            // The adapter's limit, not the file's fault (a GPU with larger bindings runs it).
            return Err(Error::OutOfMemory(format!(
                "tensor {:?}: rows of {row_bytes} bytes cannot be split under the adapter's binding limit of {} bytes",
                t.name, self.max_part_bytes
            )));
        }
        // The moe kernels bind a stacked matrix of experts whole, the fused kernels a fused one.
        if max_rows < rows && (weights::is_experts(&t.name) || weights::stored_fused(&self.cfg, &t.name)) {
            return Err(Error::OutOfMemory(format!(
                "tensor {:?}: experts or fused matrices larger than one GPU binding ({} bytes) are not supported yet",
                t.name, self.max_part_bytes
            )));
        }
        let mut plan = vec![];
        let mut r0 = 0;
        while r0 < rows {
            let n = max_rows.min(rows - r0);
            plan.push((r0 as u32, n as u32));
            r0 += n;
        }
        let w = Weight { ty: t.ty, rows: rows as u32, cols: cols as u32, row_stride: stride as u32, parts: vec![] };
        Ok(Target::Parts { w, plan })
    }

    /// Uploads one whole tensor (the same path as streamed bytes).
    pub fn upload(&mut self, t: &TensorInfo, bytes: &[u8]) -> Result<()> {
        self.feed(t.offset, bytes)
    }

    /// Streams every tensor the decoder needs from `src`, in 4 MiB chunks.
    pub fn upload_all(&mut self, src: &mut dyn TensorSource) -> Result<()> {
        let (start, end) = self.byte_range();
        let mut at = start;
        while at < end {
            let n = (4u64 << 20).min(end - at);
            let chunk = src.read_at(at, n)?;
            self.feed(at, &chunk)?;
            at += n;
        }
        Ok(())
    }

    /// Builds the model once every tensor has arrived.
    pub fn finish(self) -> Result<Model> {
        if let Some(p) = self.pending.iter().find(|p| p.received < p.info.n_bytes) {
            return Err(Error::Truncated {
                what: format!("tensor {:?}", p.info.name),
                needed: p.info.offset + p.info.n_bytes,
                available: p.info.offset + p.received,
            });
        }
        let (needs, ctx) = (self.memory_needed(), self.ctx);
        Model::build(self).map_err(|e| explain_oom(e, needs, ctx))
    }

    /// finish, with the device's verdict on what it allocates and compiles awaited (Gpu::checked):
    /// in a browser the KV cache failing to fit, or a pipeline the browser's compiler refuses, is
    /// reported after finish returns, and the model would be ready only to fail its first request.
    pub async fn finish_checked(self) -> Result<Model> {
        let (gpu, needs, ctx) = (self.gpu.clone(), self.memory_needed(), self.ctx);
        // (finish explains its own errors; only the scopes' verdict needs it here.)
        gpu.checked(|| self.finish()).await.map_err(|e| explain_oom(e, needs, ctx))?
    }
}

/// Adds to an out-of-memory error what the model needs: `needs` is (weights, KV cache for `ctx`
/// positions, activations) in bytes, as ModelBuilder::memory_needed gives them.
pub(super) fn explain_oom(e: Error, (w, kv, a): (u64, u64, u64), ctx: usize) -> Error {
    match e {
        Error::OutOfMemory(m) => {
            let mb = |b: u64| b as f64 / 1e6;
            Error::OutOfMemory(format!(
                "{m} (the model needs {:.1} MB of weights, {:.1} MB of KV cache for {ctx} positions and {:.1} MB of activations; a shorter context needs less)",
                mb(w), mb(kv), mb(a)
            ))
        }
        e => e,
    }
}
