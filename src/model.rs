//! Model: the weights on the GPU, the activations, the KV cache, and the decoder recorded once as a
//! list of kernel calls (one per line below, read top to bottom like llama2.c's forward()) that is
//! replayed for every token with one submit.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo};
use crate::gpu::Gpu;
use crate::kernels::{self, Dispatch, MatvecParams, QkvParams, QuantMatrix, RopeParams, Step};
use crate::kv_cache::KvCache;
use crate::quant::QuantType;
use crate::weights::{self, TensorSource};
use std::collections::HashMap;
use std::sync::Arc;

/// A weight matrix in raw GGUF blocks, split by rows into parts that each fit one storage binding.
pub struct Weight {
    pub ty: QuantType,
    /// Rows (output features) and row length (input features).
    pub rows: u32,
    pub cols: u32,
    /// (buffer, first row, rows) per part.
    pub parts: Vec<(wgpu::Buffer, u32, u32)>,
}

impl Weight {
    fn part(&self, i: usize) -> QuantMatrix<'_> {
        let (buffer, _, rows) = &self.parts[i];
        QuantMatrix { ty: self.ty, buffer, rows: *rows, cols: self.cols }
    }
}

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
    /// A matrix inside a fused group's buffer, at this byte offset.
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
        if cfg.head_dim > 256 {
            return Err(Error::BadConfig(format!("head width {} is over the 256 the attention kernel supports", cfg.head_dim)));
        }
        // The qkv kernel binds the most storage buffers: weights, x, norm, out, rope factors.
        const STORAGE_BINDINGS: u32 = 5;
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
        Ok(ModelBuilder { gpu, cfg, ctx, pending, max_part_bytes, members: None, groups: HashMap::new() })
    }

    /// GPU memory the model will take, in bytes: (weights, KV cache, activations).
    pub fn memory_needed(&self) -> (u64, u64, u64) {
        let c = &self.cfg;
        let weights = self.pending.iter().map(|p| if p.info.dims.len() == 1 { p.info.dims[0] * 4 } else { p.info.n_bytes }).sum();
        let kv = KvCache::bytes_for(c, self.ctx);
        let acts = 4 * (2 * c.dim + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.ffn_dim + 2 * c.vocab_size) as u64;
        (weights, kv, acts)
    }

    /// An out-of-memory error with what the model needs added.
    fn explain(&self, e: Error) -> Error {
        match e {
            Error::OutOfMemory(m) => {
                let (w, kv, a) = self.memory_needed();
                let mb = |b: u64| b as f64 / 1e6;
                Error::OutOfMemory(format!(
                    "{m} (the model needs {:.1} MB of weights, {:.1} MB of KV cache for {} positions and {:.1} MB of activations; a shorter context needs less)",
                    mb(w), mb(kv), self.ctx, mb(a)
                ))
            }
            e => e,
        }
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
        // Fused kernels pay on GPUs; on CPU adapters (lavapipe, SwiftShader) the separate row-wise
        // matvecs measured faster (7.8 vs 6.1 tok/s on lavapipe). WEBLLAMA_NO_FUSE=1 keeps every
        // matrix apart anywhere (to measure what fusing gains).
        let fuse = !self.gpu.matvec_rowwise && std::env::var("WEBLLAMA_NO_FUSE").map_or(true, |v| v != "1");
        for l in 0..self.cfg.n_layers {
            for (group, suffixes) in weights::FUSED {
                let infos: Vec<&TensorInfo> = suffixes
                    .iter()
                    .filter_map(|s| self.pending.iter().find(|p| p.info.name == weights::layer(l, s)).map(|p| &p.info))
                    .collect();
                let total: u64 = infos.iter().map(|t| t.n_bytes).sum();
                let same = infos.iter().all(|t| t.ty == infos[0].ty && t.dims.len() == 2 && t.dims[0] == infos[0].dims[0] && t.n_bytes % 4 == 0);
                if !fuse || infos.len() != suffixes.len() || !same || total > self.max_part_bytes || infos[0].dims[0] % 4 != 0 {
                    continue;
                }
                let name = weights::layer(l, group);
                let rows: u64 = infos.iter().map(|t| t.dims[1]).sum();
                let buffer = self.gpu.storage(&name, total);
                let mut offset = 0;
                for t in &infos {
                    members.insert(t.name.clone(), (name.clone(), offset));
                    offset += t.n_bytes;
                }
                let w = Weight { ty: infos[0].ty, rows: rows as u32, cols: infos[0].dims[0] as u32, parts: vec![(buffer, 0, rows as u32)] };
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
                gpu.write(&self.groups[group.as_str()].parts[0].0, *offset + start, &buf);
            }
            Target::Vector(v) => {
                v.extend_from_slice(&buf);
                if done {
                    let mut f = vec![0f32; p.info.dims[0] as usize];
                    p.info.ty.dequantize(v, &mut f)?;
                    let b = gpu.storage_with(&p.info.name, bytemuck::cast_slice(&f));
                    let rows = 1;
                    p.target = Some(Target::Matrix(Weight { ty: QuantType::F32, rows, cols: f.len() as u32, parts: vec![(b, 0, rows)] }));
                }
            }
            Target::Matrix(w) => {
                let row_bytes = p.info.n_bytes / w.rows as u64;
                let (s0, s1) = (start, start + buf.len() as u64);
                for (buffer, r0, n) in &w.parts {
                    let (p0, p1) = (*r0 as u64 * row_bytes, (*r0 + *n) as u64 * row_bytes);
                    let (a, b) = (s0.max(p0), s1.min(p1));
                    if a < b {
                        gpu.write(buffer, a - p0, &buf[(a - s0) as usize..(b - s0) as usize]);
                    }
                }
            }
        }
        gpu.take_error()
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
        let mut max_rows = (self.max_part_bytes / row_bytes).min(rows);
        if max_rows < rows && max_rows >= 4 {
            max_rows -= max_rows % 4;
        }
        if max_rows == 0 || (max_rows < rows && (max_rows * row_bytes) % 4 != 0) {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("rows of {row_bytes} bytes cannot be split under the adapter's binding limit of {} bytes", self.max_part_bytes) });
        }
        let mut parts = vec![];
        let mut r0 = 0;
        while r0 < rows {
            let n = max_rows.min(rows - r0);
            let label = format!("{}[{r0}..{}]", t.name, r0 + n);
            parts.push((self.gpu.storage(&label, n * row_bytes), r0 as u32, n as u32));
            r0 += n;
        }
        Ok(Target::Matrix(Weight { ty: t.ty, rows: rows as u32, cols: cols as u32, parts }))
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
        let (w, kv, a) = self.memory_needed();
        let ctx = self.ctx;
        Model::build(self).map_err(|e| match e {
            Error::OutOfMemory(m) => Error::OutOfMemory(format!(
                "{m} (the model needs {:.1} MB of weights, {:.1} MB of KV cache for {ctx} positions and {:.1} MB of activations)",
                w as f64 / 1e6, kv as f64 / 1e6, a as f64 / 1e6
            )),
            e => e,
        })
    }
}

/// Activations of one token.
struct Acts {
    x: wgpu::Buffer,      // [dim] residual stream
    xb: wgpu::Buffer,     // [dim] normed residual
    qkv: wgpu::Buffer,    // [(n_heads + 2 n_kv_heads) * head_dim]: q | k | v of this position
    att: wgpu::Buffer,    // [n_heads * head_dim] attention output
    hb: wgpu::Buffer,     // [ffn_dim] gate, then silu(gate) * up
    hb2: wgpu::Buffer,    // [ffn_dim] up
    logits: wgpu::Buffer, // [vocab]
    token: wgpu::Buffer,  // [1] u32: the input token, then the argmax
    step: wgpu::Buffer,   // uniform Step
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
    acts: Acts,
    graph: Vec<Dispatch>,
    token_staging: wgpu::Buffer,
    logits_staging: wgpu::Buffer,
    _weights: HashMap<String, Weight>,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
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
        let f = |n: usize| 4 * n as u64;
        let acts = Acts {
            x: gpu.storage("x", f(c.dim)),
            xb: gpu.storage("xb", f(c.dim)),
            qkv: gpu.storage("qkv", f(c.q_dim() + 2 * c.kv_dim())),
            att: gpu.storage("att", f(c.q_dim())),
            hb: gpu.storage("hb", f(c.ffn_dim)),
            hb2: gpu.storage("hb2", f(c.ffn_dim)),
            logits: gpu.storage("logits", f(c.vocab_size)),
            token: gpu.storage("token", 4),
            step: gpu.uniform("step", &Step::default()),
        };
        let mut weights: HashMap<String, Weight> = b.groups;
        for p in b.pending {
            if let Some(Target::Matrix(w)) = p.target {
                weights.insert(p.info.name, w);
            }
        }
        let w = |name: &str| &weights[name];
        let vec = |name: &str| &weights[name].parts[0].0;
        let a = &acts;
        let mut g: Vec<Dispatch> = vec![];
        // One matvec per weight part; row r of part starting at r0 lands at out_offset + r0 + r.
        let matvec = |g: &mut Vec<Dispatch>, wt: &Weight, x: &wgpu::Buffer, out: &wgpu::Buffer, p: MatvecParams| -> Result<()> {
            for (i, (_, r0, _)) in wt.parts.iter().enumerate() {
                let p = MatvecParams { out_offset: p.out_offset + r0, ..p };
                g.push(kernels::matvec(&gpu, &wt.part(i), x, out, &a.step, p)?);
            }
            Ok(())
        };
        let set = MatvecParams::default();
        let add = MatvecParams { accumulate: 1, ..set };
        let rope = |n_heads: usize, offset: u32, pos_stride: u32| RopeParams {
            n_heads: n_heads as u32,
            head_dim: c.head_dim as u32,
            n_rot: c.n_rot as u32,
            offset,
            pos_stride,
            freq_base: c.rope_base,
            freq_scale: c.rope_freq_scale,
            _pad: 0,
        };
        let ones;
        let freq_factors = match weights.get(weights::ROPE_FREQS) {
            Some(f) => &f.parts[0].0,
            None => {
                ones = gpu.storage_with("rope ones", bytemuck::cast_slice(&vec![1f32; c.n_rot / 2]));
                &ones
            }
        };
        let embd = w(weights::TOKEN_EMBD);
        for i in 0..embd.parts.len() {
            g.push(kernels::embed(&gpu, &embd.part(i), embd.parts[i].1, &a.token, &a.x, 0)?); // x = embedding[token]
        }
        for l in 0..c.n_layers {
            let lw = |s: &str| weights::layer(l, s);
            let (kc, vc) = (&kv.k[l], &kv.v[l]);
            if let Some(wqkv) = weights.get(&lw("attn_qkv")) {
                // q, k_cache[pos], v_cache[pos] = rope(Wq xb), rope(Wk xb), Wv xb with xb = rmsnorm(x)
                let p = QkvParams {
                    q_rows: c.q_dim() as u32,
                    kv_rows: c.kv_dim() as u32,
                    head_dim: c.head_dim as u32,
                    n_rot: c.n_rot as u32,
                    freq_base: c.rope_base,
                    freq_scale: c.rope_freq_scale,
                    eps: c.rms_eps,
                    ..Default::default()
                };
                let norm = vec(&lw(weights::ATTN_NORM));
                g.push(kernels::qkv(&gpu, &wqkv.part(0), &a.x, norm, &a.qkv, freq_factors, &a.step, p)?);
            } else {
                // The same, unfused (q, k and v of different types).
                let (k_at, v_at) = (c.q_dim() as u32, (c.q_dim() + c.kv_dim()) as u32);
                g.push(kernels::rmsnorm(&gpu, &a.x, vec(&lw(weights::ATTN_NORM)), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
                matvec(&mut g, w(&lw(weights::ATTN_Q)), &a.xb, &a.qkv, set)?; // q = Wq xb
                matvec(&mut g, w(&lw(weights::ATTN_K)), &a.xb, &a.qkv, MatvecParams { out_offset: k_at, ..set })?; // k = Wk xb
                matvec(&mut g, w(&lw(weights::ATTN_V)), &a.xb, &a.qkv, MatvecParams { out_offset: v_at, ..set })?; // v = Wv xb
                g.push(kernels::rope(&gpu, &a.qkv, freq_factors, &a.step, rope(c.n_heads, 0, 0))?); // rope(q)
                g.push(kernels::rope(&gpu, &a.qkv, freq_factors, &a.step, rope(c.n_kv_heads, k_at, 0))?); // rope(k)
            }
            // att = softmax(q k^T / sqrt(head_dim)) v; k_cache[pos], v_cache[pos] = k, v
            g.push(kernels::attention(&gpu, &a.qkv, kc, vc, &a.att, &a.step, c.n_heads as u32, c.n_kv_heads as u32, c.head_dim as u32)?);
            matvec(&mut g, w(&lw(weights::ATTN_OUT)), &a.att, &a.x, add)?; // x += Wo att
            if let Some(wgu) = weights.get(&lw("ffn_gate_up")) {
                // hb = silu(Wgate xb) * (Wup xb) with xb = rmsnorm(x)
                g.push(kernels::gate_up(&gpu, &wgu.part(0), &a.x, vec(&lw(weights::FFN_NORM)), &a.hb, c.rms_eps)?);
            } else {
                g.push(kernels::rmsnorm(&gpu, &a.x, vec(&lw(weights::FFN_NORM)), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
                matvec(&mut g, w(&lw(weights::FFN_GATE)), &a.xb, &a.hb, set)?; // hb = Wgate xb
                matvec(&mut g, w(&lw(weights::FFN_UP)), &a.xb, &a.hb2, set)?; // hb2 = Wup xb
                g.push(kernels::swiglu(&gpu, &a.hb, &a.hb2, c.ffn_dim as u32)?); // hb = silu(hb) * hb2
            }
            matvec(&mut g, w(&lw(weights::FFN_DOWN)), &a.hb, &a.x, add)?; // x += Wdown hb
        }
        g.push(kernels::rmsnorm(&gpu, &a.x, vec(weights::OUTPUT_NORM), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
        let out_w = if c.tied_output { embd } else { w(weights::OUTPUT) };
        matvec(&mut g, out_w, &a.xb, &a.logits, set)?; // logits = Wout xb
        g.push(kernels::argmax(&gpu, &a.logits, &a.token, c.vocab_size as u32)?); // token = argmax(logits)
        let weight_bytes = weights.values().flat_map(|w| w.parts.iter().map(|p| p.0.size())).sum::<u64>();
        Ok(Model {
            token_staging: gpu.readback_buffer("token readback", 4),
            logits_staging: gpu.readback_buffer("logits readback", f(c.vocab_size)),
            gpu,
            cfg: c,
            kv,
            acts,
            graph: g,
            _weights: weights,
            weight_bytes,
        })
    }

    /// Kernel dispatches per token.
    pub fn dispatches_per_token(&self) -> usize {
        self.graph.len()
    }

    /// Runs `token` with each kernel submitted alone and waited for: milliseconds per kernel name,
    /// summed over the step (native only; for `webllama bench --profile`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile_step(&mut self, token: u32) -> Result<Vec<(&'static str, f64)>> {
        self.begin_step(token)?;
        let wait = |gpu: &Gpu| gpu.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(e.to_string()));
        kernels::submit(&self.gpu, &[]);
        wait(&self.gpu)?;
        let mut out: Vec<(&'static str, f64)> = vec![];
        for d in &self.graph {
            let t = std::time::Instant::now();
            kernels::submit(&self.gpu, std::slice::from_ref(d));
            wait(&self.gpu)?;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            match out.iter_mut().find(|(n, _)| *n == d.name) {
                Some(e) => e.1 += ms,
                None => out.push((d.name, ms)),
            }
        }
        self.kv.len += 1;
        Ok(out)
    }

    /// Writes the step uniform and the input token, then records the decoder into `enc`.
    fn record(&mut self, token: u32, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.begin_step(token)?;
        let mut pass = enc.begin_compute_pass(&Default::default());
        self.graph.iter().for_each(|d| d.record(&mut pass));
        drop(pass);
        self.kv.len += 1;
        Ok(())
    }

    /// Checks `token` and the room in the KV cache, then writes the step uniform (the next
    /// position) and the input token for the decoder to read.
    fn begin_step(&mut self, token: u32) -> Result<()> {
        if token as usize >= self.cfg.vocab_size {
            return Err(Error::InvalidRequest(format!("token id {token} is past the vocabulary of {}", self.cfg.vocab_size)));
        }
        if self.kv.len >= self.kv.capacity {
            return Err(Error::ContextFull { needed: self.kv.len + 1, limit: self.kv.capacity });
        }
        let pos = self.kv.len as u32;
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&Step { pos, kv_len: pos + 1, _pad: [0; 2] }));
        self.gpu.queue.write_buffer(&self.acts.token, 0, bytemuck::bytes_of(&token));
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
        enc.copy_buffer_to_buffer(&self.acts.token, 0, &self.token_staging, 0, 4);
        if want_logits {
            enc.copy_buffer_to_buffer(&self.acts.logits, 0, &self.logits_staging, 0, self.logits_staging.size());
        }
        self.gpu.queue.submit([enc.finish()]);
        let argmax = u32::from_le_bytes(self.gpu.map_read(&self.token_staging, 4).await?.try_into().unwrap());
        let logits = if want_logits {
            let bytes = self.gpu.map_read(&self.logits_staging, self.logits_staging.size()).await?;
            Some(bytemuck::pod_collect_to_vec(&bytes))
        } else {
            None
        };
        Ok(StepOutput { argmax, logits })
    }
}
