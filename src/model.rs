//! Model: the weights on the GPU, the activations, the KV cache, and the decoder recorded once as a
//! list of kernel calls (one per line below, read top to bottom like llama2.c's forward()) that is
//! replayed for every token with one submit.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::gguf::{Gguf, TensorInfo};
use crate::gpu::Gpu;
use crate::kernels::{self, Dispatch, MatvecParams, QuantMatrix, RopeParams, Step};
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

/// Receives tensors as their bytes arrive (from a file, or streamed from the network) and builds the
/// Model when all are there.
pub struct ModelBuilder {
    gpu: Arc<Gpu>,
    pub cfg: Config,
    ctx: usize,
    weights: HashMap<String, Weight>,
    vectors: HashMap<String, wgpu::Buffer>,
    needed: Vec<String>,
    /// Largest byte size of one weight part (the adapter's storage-binding limit by default).
    max_part_bytes: u64,
}

/// Default context when the caller gives none (the KV cache grows with it).
pub const DEFAULT_CTX: usize = 4096;

impl ModelBuilder {
    /// Validates the header against the llama layout; `ctx` positions of KV cache (None: the file's
    /// context length, at most DEFAULT_CTX).
    pub fn new(gpu: Arc<Gpu>, g: &Gguf, ctx: Option<usize>) -> Result<ModelBuilder> {
        let cfg = Config::from_gguf(g)?;
        weights::check(g, &cfg)?;
        if cfg.head_dim > 256 {
            return Err(Error::BadConfig(format!("head width {} is over the 256 the attention kernel supports", cfg.head_dim)));
        }
        let ctx = ctx.unwrap_or(DEFAULT_CTX).min(cfg.ctx_len).max(1);
        let needed = weights::expected(&cfg).into_iter().map(|(n, _)| n).collect();
        let max_part_bytes = gpu.max_binding();
        Ok(ModelBuilder { gpu, cfg, ctx, weights: HashMap::new(), vectors: HashMap::new(), needed, max_part_bytes })
    }

    /// Splits weights into parts of at most `bytes` (below the adapter's limit; tests use it to
    /// exercise the split path on small models).
    pub fn with_max_part_bytes(mut self, bytes: u64) -> ModelBuilder {
        self.max_part_bytes = bytes.min(self.gpu.max_binding());
        self
    }

    /// Tensors still to upload, in file order.
    pub fn tensors_needed<'g>(&self, g: &'g Gguf) -> Vec<&'g TensorInfo> {
        let mut v: Vec<&TensorInfo> = self.needed.iter().filter_map(|n| g.tensor(n)).collect();
        v.sort_by_key(|t| t.offset);
        v
    }

    /// Uploads one whole tensor. Vectors (norm weights) become f32; matrices stay in their blocks.
    pub fn upload(&mut self, t: &TensorInfo, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 != t.n_bytes {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("got {} bytes, expected {}", bytes.len(), t.n_bytes) });
        }
        if t.dims.len() == 1 {
            let mut v = vec![0f32; t.dims[0] as usize];
            t.ty.dequantize(bytes, &mut v)?;
            self.vectors.insert(t.name.clone(), self.gpu.storage_with(&t.name, bytemuck::cast_slice(&v)));
            return Ok(());
        }
        let (rows, cols) = t.rows_cols();
        if cols % 4 != 0 {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("row length {cols} is not a multiple of 4") });
        }
        let row_bytes = t.n_bytes / rows;
        let max_rows = (self.max_part_bytes / row_bytes).min(rows);
        if max_rows == 0 {
            return Err(Error::BadTensor { tensor: t.name.clone(), msg: format!("one row of {row_bytes} bytes is over the adapter's binding limit") });
        }
        let mut parts = vec![];
        let mut r0 = 0;
        while r0 < rows {
            let n = max_rows.min(rows - r0);
            let chunk = &bytes[(r0 * row_bytes) as usize..((r0 + n) * row_bytes) as usize];
            let label = format!("{}[{r0}..{}]", t.name, r0 + n);
            parts.push((self.gpu.storage_with(&label, chunk), r0 as u32, n as u32));
            r0 += n;
        }
        self.weights.insert(t.name.clone(), Weight { ty: t.ty, rows: rows as u32, cols: cols as u32, parts });
        self.gpu.take_error()
    }

    /// Loads every tensor the decoder needs from `src`.
    pub fn upload_all(&mut self, g: &Gguf, src: &mut dyn TensorSource) -> Result<()> {
        for t in self.tensors_needed(g) {
            let bytes = src.read(t)?;
            self.upload(t, &bytes)?;
        }
        Ok(())
    }

    /// Builds the model once every tensor is uploaded.
    pub fn finish(self) -> Result<Model> {
        for n in &self.needed {
            if !self.weights.contains_key(n) && !self.vectors.contains_key(n) {
                return Err(Error::MissingTensor(n.clone()));
            }
        }
        Model::build(self)
    }
}

/// Activations of one token.
struct Acts {
    x: wgpu::Buffer,      // [dim] residual stream
    xb: wgpu::Buffer,     // [dim] normed residual
    q: wgpu::Buffer,      // [n_heads * head_dim]
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
    _vectors: HashMap<String, wgpu::Buffer>,
    /// Bytes of weights on the GPU.
    pub weight_bytes: u64,
}

impl Model {
    /// Builds a model from a GGUF file on disk (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(gpu: Arc<Gpu>, path: &str, ctx: Option<usize>) -> Result<Model> {
        let g = weights::read_header(path)?;
        let mut b = ModelBuilder::new(gpu, &g, ctx)?;
        b.upload_all(&g, &mut weights::FileSource::open(path)?)?;
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
            q: gpu.storage("q", f(c.q_dim())),
            att: gpu.storage("att", f(c.q_dim())),
            hb: gpu.storage("hb", f(c.ffn_dim)),
            hb2: gpu.storage("hb2", f(c.ffn_dim)),
            logits: gpu.storage("logits", f(c.vocab_size)),
            token: gpu.storage("token", 4),
            step: gpu.uniform("step", &Step::default()),
        };
        let w = |name: &str| &b.weights[name];
        let vec = |name: &str| &b.vectors[name];
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
        let at_pos = MatvecParams { out_pos_stride: c.kv_dim() as u32, ..set };
        let rope = |n_heads: usize, pos_stride: usize| RopeParams {
            n_heads: n_heads as u32,
            head_dim: c.head_dim as u32,
            n_rot: c.n_rot as u32,
            offset: 0,
            pos_stride: pos_stride as u32,
            freq_base: c.rope_base,
            freq_scale: c.rope_freq_scale,
            _pad: 0,
        };
        let ones;
        let freq_factors = match b.vectors.get(weights::ROPE_FREQS) {
            Some(f) => f,
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
            g.push(kernels::rmsnorm(&gpu, &a.x, vec(&lw(weights::ATTN_NORM)), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
            matvec(&mut g, w(&lw(weights::ATTN_Q)), &a.xb, &a.q, set)?; // q = Wq xb
            matvec(&mut g, w(&lw(weights::ATTN_K)), &a.xb, kc, at_pos)?; // k_cache[pos] = Wk xb
            matvec(&mut g, w(&lw(weights::ATTN_V)), &a.xb, vc, at_pos)?; // v_cache[pos] = Wv xb
            g.push(kernels::rope(&gpu, &a.q, freq_factors, &a.step, rope(c.n_heads, 0))?); // rope(q)
            g.push(kernels::rope(&gpu, kc, freq_factors, &a.step, rope(c.n_kv_heads, c.kv_dim()))?); // rope(k_cache[pos])
            g.push(kernels::attention(&gpu, &a.q, kc, vc, &a.att, &a.step, c.n_heads as u32, c.n_kv_heads as u32, c.head_dim as u32)?);
            matvec(&mut g, w(&lw(weights::ATTN_OUT)), &a.att, &a.x, add)?; // x += Wo att
            g.push(kernels::rmsnorm(&gpu, &a.x, vec(&lw(weights::FFN_NORM)), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
            matvec(&mut g, w(&lw(weights::FFN_GATE)), &a.xb, &a.hb, set)?; // hb = Wgate xb
            matvec(&mut g, w(&lw(weights::FFN_UP)), &a.xb, &a.hb2, set)?; // hb2 = Wup xb
            g.push(kernels::swiglu(&gpu, &a.hb, &a.hb2, c.ffn_dim as u32)?); // hb = silu(hb) * hb2
            matvec(&mut g, w(&lw(weights::FFN_DOWN)), &a.hb, &a.x, add)?; // x += Wdown hb
        }
        g.push(kernels::rmsnorm(&gpu, &a.x, vec(weights::OUTPUT_NORM), &a.xb, c.dim as u32, c.rms_eps)?); // xb = rmsnorm(x)
        let out_w = if c.tied_output { embd } else { w(weights::OUTPUT) };
        matvec(&mut g, out_w, &a.xb, &a.logits, set)?; // logits = Wout xb
        g.push(kernels::argmax(&gpu, &a.logits, &a.token, c.vocab_size as u32)?); // token = argmax(logits)
        let weight_bytes = b.weights.values().flat_map(|w| w.parts.iter().map(|p| p.0.size())).sum::<u64>()
            + b.vectors.values().map(|v| v.size()).sum::<u64>();
        Ok(Model {
            token_staging: gpu.readback_buffer("token readback", 4),
            logits_staging: gpu.readback_buffer("logits readback", f(c.vocab_size)),
            gpu,
            cfg: c,
            kv,
            acts,
            graph: g,
            _weights: b.weights,
            _vectors: b.vectors,
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
        let pos = self.kv.len as u32;
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&Step { pos, kv_len: pos + 1, _pad: [0; 2] }));
        self.gpu.queue.write_buffer(&self.acts.token, 0, bytemuck::bytes_of(&token));
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
        if token as usize >= self.cfg.vocab_size {
            return Err(Error::InvalidRequest(format!("token id {token} is past the vocabulary of {}", self.cfg.vocab_size)));
        }
        if self.kv.len >= self.kv.capacity {
            return Err(Error::ContextFull { needed: self.kv.len + 1, limit: self.kv.capacity });
        }
        let pos = self.kv.len as u32;
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&Step { pos, kv_len: pos + 1, _pad: [0; 2] }));
        self.gpu.queue.write_buffer(&self.acts.token, 0, bytemuck::bytes_of(&token));
        let mut pass = enc.begin_compute_pass(&Default::default());
        self.graph.iter().for_each(|d| d.record(&mut pass));
        drop(pass);
        self.kv.len += 1;
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
