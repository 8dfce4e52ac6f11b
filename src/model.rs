//! Model: the weights on the GPU (streamed in by ModelBuilder), the activations, the KV cache, and
//! the decoder recorded once (graph.rs) and replayed: one submit per decoded token, one per prompt
//! chunk, one per step of n candidates.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo};
use crate::gpu::Gpu;
use crate::graph::{self, Acts, Batch, BatchGraph, MAX_CANDIDATES};
pub use crate::graph::{Stored, Weight};
use crate::kernels::{self, Dispatch, Step};
use crate::kv_cache::{Branches, KvCache};
use crate::quant::QuantType;
use crate::weights::{self, TensorSource};
use std::collections::HashMap;
use std::sync::Arc;

/// Receives the file's tensor bytes as they arrive, in file order and in chunks of any size (from a
/// file, or streamed from the network), writes them straight into GPU buffers, and builds the Model
/// when all are there. Only a chunk (and a few carried bytes) is ever held in memory.
pub struct ModelBuilder {
    gpu: Arc<Gpu>,
    pub cfg: Config,
    ctx: usize,
    /// Tensors the decoder reads, in file order, with their upload state.
    pending: Vec<Pending>,
    /// Largest byte size of one weight part (the adapter's storage-binding limit by default).
    max_part_bytes: u64,
    /// Fused groups (weights::FUSED), planned at the first write: member name -> (group name, byte
    /// offset of the member in the group's buffer).
    members: Option<HashMap<String, (String, u64)>>,
    /// The groups' concatenated matrices.
    groups: HashMap<String, Weight>,
    /// rope_freqs, kept on the host too (the decode graph's rotations are computed there).
    rope_factors: Option<Vec<f32>>,
}

/// One tensor on its way to the GPU.
struct Pending {
    info: TensorInfo,
    /// Bytes received so far.
    received: u64,
    /// Up to 3 received bytes not written yet (GPU writes go in multiples of 4).
    carry: Vec<u8>,
    target: Option<Target>,
}

enum Target {
    /// A norm weight: collected, then dequantized to f32.
    Vector(Vec<u8>),
    /// A matrix: raw blocks written into its parts as they come.
    Matrix(Weight),
    /// A matrix inside a fused group's buffer, at this byte offset of the group's packed rows.
    Member(String, u64),
}

/// Default context when the caller gives none (the KV cache grows with it).
pub const DEFAULT_CTX: usize = 4096;

impl ModelBuilder {
    /// Validates the header against the llama layout and the adapter's limits before any upload;
    /// `ctx` positions of KV cache (None: the file's context length, at most DEFAULT_CTX and at most
    /// what one layer's cache binding can hold).
    pub fn new(gpu: Arc<Gpu>, g: &Gguf, ctx: Option<usize>) -> Result<ModelBuilder> {
        let cfg = Config::from_gguf(g)?;
        weights::check(g, &cfg)?;
        if cfg.head_dim % 4 != 0 {
            return Err(Error::BadConfig(format!("head width {} is not a multiple of 4", cfg.head_dim)));
        }
        if cfg.head_dim > 256 {
            return Err(Error::BadConfig(format!("head width {} is over the 256 the attention kernel supports", cfg.head_dim)));
        }
        // Attention binds the most storage buffers: qkv, k and v cache, k and v branch, out, partials.
        const STORAGE_BINDINGS: u32 = 7;
        if gpu.limits.max_storage_buffers_per_shader_stage < STORAGE_BINDINGS {
            return Err(Error::AdapterTooSmall { have: gpu.limits.max_storage_buffers_per_shader_stage, need: STORAGE_BINDINGS });
        }
        let ctx = match ctx {
            Some(c) => {
                KvCache::check(&cfg, c.max(1), gpu.max_binding())?;
                c.max(1)
            }
            None => DEFAULT_CTX.min(cfg.ctx_len).min(KvCache::max_positions(&cfg, gpu.max_binding())).max(1),
        };
        let mut pending: Vec<Pending> = weights::expected(&cfg)
            .iter()
            .filter_map(|(n, _)| g.tensor(n))
            .map(|t| Pending { info: t.clone(), received: 0, carry: vec![], target: None })
            .collect();
        pending.sort_by_key(|p| p.info.offset);
        let max_part_bytes = gpu.max_binding();
        Ok(ModelBuilder { gpu, cfg, ctx, pending, max_part_bytes, members: None, groups: HashMap::new(), rope_factors: None })
    }

    /// GPU memory the model will take, in bytes: (weights, KV cache, activations).
    pub fn memory_needed(&self) -> (u64, u64, u64) {
        let c = &self.cfg;
        let weights = self
            .pending
            .iter()
            .map(|p| match p.info.dims.len() {
                1 => p.info.dims[0] * 4,
                // Rows as laid out on this adapter (padded on CPU adapters for the wide kernels).
                _ => {
                    let (rows, cols) = p.info.rows_cols();
                    rows * kernels::row_stride(&self.gpu, p.info.ty, cols as u32) as u64
                }
            })
            .sum();
        let kv = KvCache::bytes_for(c, self.ctx);
        (weights, kv, Acts::bytes(c, batch_rows(&self.gpu)))
    }

    /// An out-of-memory error with what the model needs added.
    fn explain(&self, e: Error) -> Error {
        explain_oom(e, self.memory_needed(), self.ctx)
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
        // GPUs run fused kernels over a group; CPU adapters (lavapipe, SwiftShader), where those
        // measured slower (6.1 vs 7.8 tok/s on lavapipe), run one plain matvec over it instead
        // (fewer dispatches). WEBLLAMA_NO_FUSE=1 keeps every matrix apart anywhere (to measure what
        // grouping gains).
        let fuse = std::env::var("WEBLLAMA_NO_FUSE").map_or(true, |v| v != "1");
        for l in 0..self.cfg.n_layers {
            for (group, suffixes) in weights::FUSED {
                let infos: Vec<&TensorInfo> = suffixes
                    .iter()
                    .filter_map(|s| self.pending.iter().find(|p| p.info.name == weights::layer(l, s)).map(|p| &p.info))
                    .collect();
                if !fuse || infos.len() != suffixes.len() {
                    continue;
                }
                let same = infos.iter().all(|t| t.ty == infos[0].ty && t.dims.len() == 2 && t.dims[0] == infos[0].dims[0] && t.n_bytes % 4 == 0);
                let (ty, cols) = (infos[0].ty, infos[0].dims[0] as u32);
                let rows: u64 = infos.iter().map(|t| t.dims[1]).sum();
                let stride = kernels::row_stride(&self.gpu, ty, cols);
                if !same || rows * stride as u64 > self.part_bytes(ty, cols) || cols % 4 != 0 {
                    continue;
                }
                let name = weights::layer(l, group);
                let buffer = Stored::Buffer(self.gpu.storage(&name, rows * stride as u64));
                let mut offset = 0;
                for t in &infos {
                    members.insert(t.name.clone(), (name.clone(), offset));
                    offset += t.n_bytes;
                }
                let w = Weight { ty, rows: rows as u32, cols, row_stride: stride, parts: vec![(buffer, 0, rows as u32)] };
                self.groups.insert(name, w);
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
                self.pending[i].target = Some(Target::Member(group.clone(), *offset));
            }
        }
        if self.pending[i].target.is_none() {
            let target = self.allocate(&self.pending[i].info)?;
            self.pending[i].target = Some(target);
        }
        let gpu = self.gpu.clone();
        let p = &mut self.pending[i];
        let name = p.info.name.clone();
        if rel != p.received {
            return Err(Error::BadTensor { tensor: p.info.name.clone(), msg: format!("bytes at {rel} arrived after only {} were received", p.received) });
        }
        let start = p.received - p.carry.len() as u64;
        p.received += data.len() as u64;
        let done = p.received == p.info.n_bytes;
        let mut buf = std::mem::take(&mut p.carry);
        buf.extend_from_slice(data);
        let keep = if done { 0 } else { buf.len() % 4 };
        p.carry = buf.split_off(buf.len() - keep);
        match p.target.as_mut().expect("allocated above") {
            Target::Member(group, offset) => {
                let group = group.clone();
                let w = &self.groups[group.as_str()];
                write_rows(&gpu, &name, &w.parts[0].0, *offset + start, &buf, kernels::row_bytes(w.ty, w.cols) as u64, w.row_stride as u64)?;
                let members = self.members.as_ref().expect("planned above");
                let in_group = |p: &Pending| members.get(&p.info.name).is_some_and(|(g, _)| *g == group);
                if done && self.pending.iter().filter(|p| in_group(p)).all(|p| p.received == p.info.n_bytes) {
                    let w = self.groups.get_mut(group.as_str()).expect("planned");
                    into_textures(&gpu, &group, w)?;
                }
            }
            Target::Vector(v) => {
                v.extend_from_slice(&buf);
                if done {
                    let mut f = vec![0f32; p.info.dims[0] as usize];
                    p.info.ty.dequantize(v, &mut f)?;
                    if p.info.name == weights::ROPE_FREQS {
                        self.rope_factors = Some(f.clone());
                    }
                    let b = gpu.storage_with(&p.info.name, bytemuck::cast_slice(&f));
                    let rows = 1;
                    let cols = f.len() as u32;
                    p.target = Some(Target::Matrix(Weight { ty: QuantType::F32, rows, cols, row_stride: 4 * cols, parts: vec![(Stored::Buffer(b), 0, rows)] }));
                }
            }
            Target::Matrix(w) => {
                let row_bytes = p.info.n_bytes / w.rows as u64;
                let (s0, s1) = (start, start + buf.len() as u64);
                for (stored, r0, n) in &w.parts {
                    let (p0, p1) = (*r0 as u64 * row_bytes, (*r0 + *n) as u64 * row_bytes);
                    let (a, b) = (s0.max(p0), s1.min(p1));
                    if a < b {
                        write_rows(&gpu, &name, stored, a - p0, &buf[(a - s0) as usize..(b - s0) as usize], row_bytes, w.row_stride as u64)?;
                    }
                }
                if done {
                    into_textures(&gpu, &name, w)?;
                }
            }
        }
        gpu.take_error()
    }

    /// Largest bytes of one part of a matrix of this type and row length: one binding, and where
    /// it moves into a texture once uploaded, one texture.
    fn part_bytes(&self, ty: QuantType, cols: u32) -> u64 {
        if kernels::uses_texture(&self.gpu, ty, cols) {
            self.max_part_bytes.min(kernels::max_texture_bytes(&self.gpu))
        } else {
            self.max_part_bytes
        }
    }

    /// GPU buffers for a matrix, split by rows into parts that fit one binding (part sizes kept
    /// multiples of 4 bytes so that every write lands 4-aligned); a collector for a vector.
    fn allocate(&self, t: &TensorInfo) -> Result<Target> {
        if t.dims.len() == 1 {
            return Ok(Target::Vector(Vec::with_capacity(t.n_bytes as usize)));
        }
        let (rows, cols) = t.rows_cols();
        if cols % 4 != 0 {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("row length {cols} is not a multiple of 4") });
        }
        let row_bytes = t.n_bytes / rows;
        let stride = kernels::row_stride(&self.gpu, t.ty, cols as u32) as u64;
        let mut max_rows = (self.part_bytes(t.ty, cols as u32) / stride).min(rows);
        if max_rows < rows && max_rows >= 4 {
            max_rows -= max_rows % 4;
        }
        if max_rows == 0 || (max_rows < rows && (max_rows * stride) % 4 != 0) {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("rows of {row_bytes} bytes cannot be split under the adapter's binding limit of {} bytes", self.max_part_bytes) });
        }
        let mut parts = vec![];
        let mut r0 = 0;
        while r0 < rows {
            let n = max_rows.min(rows - r0);
            let label = format!("{}[{r0}..{}]", t.name, r0 + n);
            parts.push((Stored::Buffer(self.gpu.storage(&label, n * stride)), r0 as u32, n as u32));
            r0 += n;
        }
        Ok(Target::Matrix(Weight { ty: t.ty, rows: rows as u32, cols: cols as u32, row_stride: stride as u32, parts }))
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
            return Err(Error::Truncated { what: format!("tensor {:?}", p.info.name), needed: p.info.offset + p.info.n_bytes, available: p.info.offset + p.received });
        }
        let (needs, ctx) = (self.memory_needed(), self.ctx);
        Model::build(self).map_err(|e| explain_oom(e, needs, ctx))
    }
}

/// Adds to an out-of-memory error what the model needs: `needs` is (weights, KV cache for `ctx`
/// positions, activations) in bytes, as ModelBuilder::memory_needed gives them.
fn explain_oom(e: Error, (w, kv, a): (u64, u64, u64), ctx: usize) -> Error {
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

/// Rows of a batch (prompt tokens per chunk): matmul tiles are 32 tokens on GPUs, 16 on CPU adapters.
fn batch_rows(gpu: &Gpu) -> u32 {
    if gpu.matvec_rowwise { 64 } else { 256 }
}

/// Attention splits over the KV length in the decode graph: enough workgroups for a GPU on a long
/// context; none on CPU adapters, where a workgroup per head already fills the cores.
fn attention_splits(gpu: &Gpu, ctx: usize) -> u32 {
    if gpu.matvec_rowwise { 1 } else { (ctx as u32 / 256).clamp(1, 16) }
}

/// What one step returns.
pub struct StepOutput {
    /// The argmax of the logits, computed on the GPU.
    pub argmax: u32,
    /// The logits, when asked for.
    pub logits: Option<Vec<f32>>,
}

/// The decoder on the GPU.
pub struct Model {
    pub gpu: Arc<Gpu>,
    pub cfg: Config,
    pub kv: KvCache,
    /// Candidates' continuations of the KV cache.
    pub branches: Branches,
    acts: Acts,
    /// rope_freqs on the host, for the decode graph's rotations (CPU adapters).
    rope_factors: Option<Vec<f32>>,
    /// One token.
    graph: Vec<Dispatch>,
    /// A prompt chunk.
    batch: BatchGraph,
    /// n candidates.
    cands: BatchGraph,
    n_splits: u32,
    tokens_staging: wgpu::Buffer,
    logits_staging: wgpu::Buffer,
    weights: HashMap<String, Weight>,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
    /// Weight passes of the batch graph so far (prompt chunks and candidate steps): each reads every
    /// weight once for all its rows.
    pub batch_passes: u64,
}

impl Model {
    /// Builds a model from a GGUF file on disk (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(gpu: Arc<Gpu>, path: &str, ctx: Option<usize>) -> Result<Model> {
        let g = weights::read_header(path)?;
        let mut b = ModelBuilder::new(gpu, &g, ctx)?;
        b.upload_all(&mut weights::FileSource::open(path)?)?;
        b.finish()
    }

    fn build(b: ModelBuilder) -> Result<Model> {
        let gpu = b.gpu.clone();
        let c = b.cfg.clone();
        let kv = KvCache::new(&gpu, &c, b.ctx)?;
        let n_splits = attention_splits(&gpu, b.ctx);
        let acts = Acts::new(&gpu, &c, batch_rows(&gpu), n_splits);
        let rope_factors = b.rope_factors;
        let mut weights: HashMap<String, Weight> = b.groups;
        for p in b.pending {
            if let Some(Target::Matrix(w)) = p.target {
                weights.insert(p.info.name, w);
            }
        }
        let branches = Branches::new(&gpu);
        let parts = graph::Parts { gpu: &gpu, cfg: &c, weights: &weights, acts: &acts, kv: &kv, branches: &branches, n_splits };
        let decode = graph::decode(&parts)?;
        let batch = graph::batch(&parts, Batch::Prompt)?;
        let cands = graph::batch(&parts, Batch::Candidates)?;
        // The bytes of the blocks (not the padding between rows, which is never read).
        let weight_bytes = weights.values().map(|w| w.rows as u64 * kernels::row_bytes(w.ty, w.cols) as u64).sum::<u64>();
        Ok(Model {
            tokens_staging: gpu.readback_buffer("tokens readback", 4 * MAX_CANDIDATES as u64),
            logits_staging: gpu.readback_buffer("logits readback", 4 * (c.vocab_size as u64) * MAX_CANDIDATES as u64),
            gpu,
            cfg: c,
            kv,
            branches,
            acts,
            rope_factors,
            graph: decode,
            batch,
            cands,
            n_splits,
            weights,
            weight_bytes,
            batch_passes: 0,
        })
    }

    /// Kernel dispatches per decoded token.
    pub fn dispatches_per_token(&self) -> usize {
        self.graph.len()
    }

    /// Most tokens one prompt chunk runs.
    pub fn batch_rows(&self) -> usize {
        self.acts.rows as usize
    }

    /// What each kind of kernel costs in a decode step as it runs (one submit): the step's time
    /// (best of 20) less its time without that kind's dispatches (best of 20), in milliseconds per
    /// kernel name (with its dispatch count), and the whole step's time. The step is run at the
    /// same position each time (native only; for `webllama bench --profile`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_step(&mut self, token: u32) -> Result<(Vec<(&'static str, f64, usize)>, f64)> {
        self.begin_step(token)?;
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.kv.sync_mirror(&mut enc);
        self.gpu.queue.submit([enc.finish()]);
        profile_dispatches(&self.gpu, &self.graph)
    }

    /// As profile_step, for one full prompt chunk (batch_rows tokens of `token` at the cache's
    /// next positions) through the batch graph's body.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_chunk(&mut self, token: u32) -> Result<(Vec<(&'static str, f64, usize)>, f64)> {
        let chunk = vec![token; self.acts.rows as usize];
        self.check_prompt(&chunk)?;
        self.begin_chunk(&chunk);
        profile_dispatches(&self.gpu, &self.batch.body)
    }

    /// Writes the step uniform and the input token, then records the decoder into `enc`.
    fn record(&mut self, token: u32, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.begin_step(token)?;
        self.kv.sync_mirror(enc);
        let mut pass = enc.begin_compute_pass(&Default::default());
        self.graph.iter().for_each(|d| d.record(&mut pass));
        drop(pass);
        self.kv.len += 1;
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            Some(t) => Err(Error::InvalidRequest(format!("token id {t} is past the vocabulary of {}", self.cfg.vocab_size))),
            None => Ok(()),
        }
    }

    /// Checks `token` and the room in the KV cache, then writes the step uniform (the next
    /// position) and the input token for the decoder to read.
    fn begin_step(&mut self, token: u32) -> Result<()> {
        self.check_tokens(&[token])?;
        if self.kv.len >= self.kv.capacity {
            return Err(Error::ContextFull { needed: self.kv.len + 1, limit: self.kv.capacity });
        }
        let pos = self.kv.len as u32;
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&Step::single(pos)));
        if self.gpu.matvec_rowwise {
            // The decode graph rotates q and k inside attention on CPU adapters.
            let c = &self.cfg;
            let r = kernels::rope_rotations(pos, c.head_dim, c.n_rot, c.rope_base, c.rope_freq_scale, self.rope_factors.as_deref());
            self.gpu.queue.write_buffer(&self.acts.rotations, 0, bytemuck::cast_slice(&r));
        }
        self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::bytes_of(&token));
        Ok(())
    }

    /// Queues the decoder for `token` at the next KV position (one submit); nothing is read back.
    pub fn enqueue(&mut self, token: u32) -> Result<()> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(token, &mut enc)?;
        self.gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Runs `token` at the next position and reads back the argmax (and the logits when asked).
    pub async fn step(&mut self, token: u32, want_logits: bool) -> Result<StepOutput> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(token, &mut enc)?;
        Ok(self.read_rows(enc, 1, want_logits).await?.remove(0))
    }

    /// Copies `rows` argmaxes (and logits rows) to the staging buffers, submits, and reads them.
    async fn read_rows(&mut self, mut enc: wgpu::CommandEncoder, rows: u32, want_logits: bool) -> Result<Vec<StepOutput>> {
        // A lost device (or an earlier error) fails here, before waiting on work that never runs.
        self.gpu.take_error()?;
        let vocab_bytes = 4 * self.cfg.vocab_size as u64;
        enc.copy_buffer_to_buffer(&self.acts.tokens, 0, &self.tokens_staging, 0, 4 * rows as u64);
        if want_logits {
            enc.copy_buffer_to_buffer(&self.acts.logits, 0, &self.logits_staging, 0, vocab_bytes * rows as u64);
        }
        self.gpu.queue.submit([enc.finish()]);
        let ids: Vec<u32> = bytemuck::pod_collect_to_vec(&self.gpu.map_read(&self.tokens_staging, 4 * rows as u64).await?);
        let mut logits: Vec<Option<Vec<f32>>> = vec![None; rows as usize];
        if want_logits {
            let bytes = self.gpu.map_read(&self.logits_staging, vocab_bytes * rows as u64).await?;
            for (r, chunk) in bytes.chunks_exact(vocab_bytes as usize).enumerate() {
                logits[r] = Some(bytemuck::pod_collect_to_vec(chunk));
            }
        }
        Ok(ids.into_iter().zip(logits).map(|(argmax, logits)| StepOutput { argmax, logits }).collect())
    }

    /// Checks a prompt's tokens and the room for them in the KV cache.
    fn check_prompt(&self, tokens: &[u32]) -> Result<()> {
        self.check_tokens(tokens)?;
        if tokens.is_empty() {
            return Err(Error::InvalidRequest("nothing to prefill".into()));
        }
        if self.kv.len + tokens.len() > self.kv.capacity {
            return Err(Error::ContextFull { needed: self.kv.len + tokens.len(), limit: self.kv.capacity });
        }
        Ok(())
    }

    /// Writes the step uniform and the tokens of a prompt chunk at the cache's next positions, for
    /// the batch graph to read.
    fn begin_chunk(&self, chunk: &[u32]) {
        let step = Step::chunk(self.kv.len as u32, chunk.len() as u32);
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&step));
        self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::cast_slice(chunk));
    }

    /// Runs a prompt (at the next positions) through the batch graph in chunks of batch_rows()
    /// tokens, one submit each, and reads back the last token's argmax (and logits when asked).
    pub async fn prefill(&mut self, tokens: &[u32], want_logits: bool) -> Result<StepOutput> {
        self.check_prompt(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.acts.rows as usize).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            self.begin_chunk(chunk);
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.batch.body.iter().for_each(|d| d.record(&mut pass));
                if last {
                    self.batch.logits.iter().for_each(|d| d.record(&mut pass));
                }
            }
            self.kv.len += chunk.len();
            self.batch_passes += 1;
            if last {
                return Ok(self.read_rows(enc, 1, want_logits).await?.remove(0));
            }
            self.gpu.queue.submit([enc.finish()]);
        }
        unreachable!("a non-empty prompt has a last chunk")
    }

    /// Runs one step of `tokens.len()` candidates side by side: candidate r's token at position
    /// kv.len + `offset`, seeing the prompt in the KV cache (kv.len positions) and its own `offset`
    /// earlier tokens in branch r. One weight pass for all of them; returns each row's argmax (and
    /// logits when asked).
    pub async fn candidates_step(&mut self, tokens: &[u32], offset: usize, want_logits: bool) -> Result<Vec<StepOutput>> {
        self.check_tokens(tokens)?;
        let n = tokens.len() as u32;
        if n == 0 || n > MAX_CANDIDATES {
            return Err(Error::InvalidRequest(format!("{n} candidates: between 1 and {MAX_CANDIDATES} are supported")));
        }
        let pos = self.kv.len + offset;
        if pos >= self.kv.capacity {
            return Err(Error::ContextFull { needed: pos + 1, limit: self.kv.capacity });
        }
        self.reserve_candidates(n, offset as u32 + 1)?;
        let step = Step::candidates(pos as u32, n, self.kv.len as u32);
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&step));
        self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::cast_slice(tokens));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            self.cands.body.iter().chain(&self.cands.logits).for_each(|d| d.record(&mut pass));
        }
        self.batch_passes += 1;
        self.read_rows(enc, n, want_logits).await
    }

    /// Makes branch room for `n` candidates of `len` tokens (recording the candidates' graph again
    /// when the branch buffers change).
    pub fn reserve_candidates(&mut self, n: u32, len: u32) -> Result<()> {
        if self.branches.ensure(&self.gpu, &self.cfg, n, len)? {
            let parts = graph::Parts {
                gpu: &self.gpu,
                cfg: &self.cfg,
                weights: &self.weights,
                acts: &self.acts,
                kv: &self.kv,
                branches: &self.branches,
                n_splits: self.n_splits,
            };
            self.cands = graph::batch(&parts, Batch::Candidates)?;
        }
        Ok(())
    }
}

/// Each kernel name's share of `graph` run as one submit: the whole's time less the time without
/// that name's dispatches (best of 20 each, ms) and how many dispatches it has; and the whole's
/// time.
#[cfg(not(target_arch = "wasm32"))]
fn profile_dispatches(gpu: &Gpu, graph: &[Dispatch]) -> Result<(Vec<(&'static str, f64, usize)>, f64)> {
    let best_of_20 = |skip: Option<&str>| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..20 {
            let t = std::time::Instant::now();
            let mut enc = gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                graph.iter().filter(|d| Some(d.name) != skip).for_each(|d| d.record(&mut pass));
            }
            gpu.queue.submit([enc.finish()]);
            gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()))?;
            best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        }
        Ok(best)
    };
    let whole = best_of_20(None)?;
    let mut names: Vec<&'static str> = vec![];
    for d in graph {
        if !names.contains(&d.name) {
            names.push(d.name);
        }
    }
    let mut out = vec![];
    for name in names {
        out.push((name, whole - best_of_20(Some(name))?, graph.iter().filter(|d| d.name == name).count()));
    }
    Ok((out, whole))
}

/// Writes packed row bytes of `tensor` that start at packed offset `at` of a part's buffer where
/// rows lie `stride` bytes apart (padded through pad_rows when stride > row_bytes).
fn write_rows(gpu: &Gpu, tensor: &str, part: &Stored, at: u64, bytes: &[u8], row_bytes: u64, stride: u64) -> Result<()> {
    let Stored::Buffer(buffer) = part else {
        return Err(Error::BadTensor { tensor: tensor.to_string(), msg: "bytes arrived after the tensor was complete".into() });
    };
    if stride == row_bytes {
        gpu.write(buffer, at, bytes);
    } else {
        let (at, padded) = pad_rows(bytes, at, row_bytes, stride);
        gpu.write(buffer, at, &padded);
    }
    Ok(())
}

/// Moves a complete weight's parts from their upload buffers into textures where this adapter reads
/// them from textures (kernels::uses_texture); the buffers go once the copies are done.
fn into_textures(gpu: &Gpu, name: &str, w: &mut Weight) -> Result<()> {
    if !kernels::uses_texture(gpu, w.ty, w.cols) {
        return Ok(());
    }
    for (stored, _, rows) in w.parts.iter_mut() {
        if let Stored::Buffer(buffer) = stored {
            let view = kernels::texture_from_buffer(gpu, name, buffer, *rows as u64 * w.row_stride as u64)?;
            *stored = Stored::Texture(view);
        }
    }
    Ok(())
}

/// Packed row bytes starting at packed offset `at` (within a part) laid out with rows `stride`
/// bytes apart: (the offset they go to, the bytes with zeros in the gaps between rows).
pub fn pad_rows(bytes: &[u8], at: u64, row_bytes: u64, stride: u64) -> (u64, Vec<u8>) {
    let gap = (stride - row_bytes) as usize;
    let mut out = Vec::with_capacity(bytes.len() + (bytes.len() / row_bytes as usize + 1) * gap);
    let (mut pos, mut rest) = (at, bytes);
    while !rest.is_empty() {
        if !out.is_empty() {
            out.resize(out.len() + gap, 0);
        }
        let n = ((row_bytes - pos % row_bytes) as usize).min(rest.len());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        pos += n as u64;
    }
    (at / row_bytes * stride + at % row_bytes, out)
}
