//! Model: the weights on the GPU (streamed in by ModelBuilder), the activations, the KV cache, and
//! the decoder recorded once (graph.rs) and replayed: one submit per decoded token, one per prompt
//! chunk, one per step of n candidates.

mod builder;
mod choice;
pub mod graph;
pub mod kv_cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod profile;
mod steps;
pub mod weight;

pub use builder::{ModelBuilder, DEFAULT_CTX};
pub use choice::{ChoiceInputs, LogitEdits, RowLogprobs, SampleSettings, Want, STEPS_IN_FLIGHT};
pub use weight::{pad_blocks, pad_rows, Stored, Weight};

/// Most candidates decoded side by side (rows of the logits buffer).
pub const MAX_CANDIDATES: u32 = 8;

use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::gpu::{Gpu, Layout};
use crate::kernels::cpu;
use crate::kernels::gpu;
use crate::kernels::{Dispatch, Step};
use graph::{Acts, Batch, BatchGraph};
use kv_cache::{Branches, KvCache};
use std::collections::HashMap;
use std::sync::Arc;

/// What one step returns (per row).
pub struct StepOutput {
    /// The token the GPU chose: the argmax of the logits (among the tokens the row's mask allows,
    /// where masked), or a sampled step's draw.
    pub id: u32,
    /// The logits, when asked for.
    pub logits: Option<Vec<f32>>,
    /// The log-softmax's top tokens and the chosen token's log-probability, when asked for.
    pub logprobs: Option<RowLogprobs>,
}

/// The decoder on the GPU.
pub struct Model {
    gpu: Arc<Gpu>,
    layout: Layout,
    pub cfg: Config,
    kv: KvCache,
    /// Candidates' continuations of the KV cache.
    branches: Branches,
    acts: Acts,
    /// rope_freqs on the host, for the decode graph's rotations (CPU family).
    rope_factors: Option<Vec<f32>>,
    /// One token.
    graph: Vec<Dispatch>,
    /// One token while the KV cache holds fewer than this many positions (GPU family,
    /// Layout::combine_in_wo, contexts longer than the splits Wo merges): attention's splits merged
    /// in Wo.
    graph_short: Option<(usize, Vec<Dispatch>)>,
    /// A prompt chunk.
    batch: BatchGraph,
    /// A prompt chunk of at most Layout::short_chunk_rows tokens (GPU family), its matmuls in
    /// tiles of that many tokens: a short chat turn does not run a whole 64- or 128-token tile.
    short: Option<(u32, BatchGraph)>,
    /// n candidates: recorded by the first request for them (reserve_candidates: their KV branches
    /// are made then), not at load.
    cands: Option<BatchGraph>,
    n_splits: u32,
    /// The token's choice on the GPU, the step readback and the step started but not finished.
    choice: choice::Choice,
    weights: HashMap<String, Weight>,
    /// Bytes of weights a decoded token reads (routed experts only; one row of an embedding that
    /// is not also the output matrix).
    pub weight_bytes: u64,
    /// Weight passes of the batch graph so far (prompt chunks and candidate steps): each reads every
    /// weight once for all its rows.
    pub batch_passes: u64,
}

impl Model {
    /// Builds a model from a GGUF file on disk, laid out for `layout` (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(gpu: Arc<Gpu>, layout: Layout, path: &str, ctx: Option<usize>) -> Result<Model> {
        use crate::format::weights;
        let (g, mut source) = weights::open_model(path)?;
        let mut b = ModelBuilder::new(gpu, layout, &g, ctx)?;
        b.upload_all(&mut source)?;
        b.finish()
    }

    fn build(mut b: ModelBuilder) -> Result<Model> {
        let (gpu, layout) = (b.gpu.clone(), b.layout);
        let c = b.cfg.clone();
        let n_splits = layout.attention_splits(b.ctx);
        let (kv, acts) = match b.reserved.take() {
            Some(made) => made,
            None => b.make_state()?,
        };
        let rope_factors = b.rope_factors;
        let mut weights: HashMap<String, Weight> = b.groups;
        for p in b.pending {
            if let Some(builder::Target::Matrix(w)) = p.target {
                weights.insert(crate::format::weights::graph_name(&c, b.ctx, &p.info.name), w);
            }
        }
        let branches = Branches::new(&gpu, &layout);
        let parts = graph::Parts {
            gpu: &gpu,
            layout: &layout,
            cfg: &c,
            weights: &weights,
            acts: &acts,
            kv: &kv,
            branches: &branches,
            n_splits,
        };
        // Attention's splits merged in Wo up to as many as it reads cheaply (the whole context, or a
        // graph of its own for the context's first positions), else by a combine dispatch.
        // (Not for granite, whose attention output is scaled before Wo reads it, nor Gemma 2 and 3,
        // whose sliding windows change the splits' count and whose Wo's product is normed before x.)
        let in_wo = (layout.combine_in_wo && c.multipliers.residual_scale == 1.0 && c.gemma.is_none())
            .then(|| gpu::combine_in_wo_splits(c.dim as u32, c.q_dim() as u32));
        let (decode, graph_short) = match in_wo {
            Some(most) if n_splits > most => {
                let len = (most * gpu::ATTENTION_SPLIT_LEN) as usize;
                (graph::decode(&parts, None)?, Some((len, graph::decode(&parts, Some(most))?)))
            }
            Some(_) => (graph::decode(&parts, Some(n_splits))?, None),
            None => (graph::decode(&parts, None)?, None),
        };
        let batch = graph::batch(&parts, Batch::Prompt(acts.rows))?;
        let short = match layout.short_chunk_rows() {
            Some(rows) if rows < acts.rows => Some((rows, graph::batch(&parts, Batch::Prompt(rows))?)),
            _ => None,
        };
        // The bytes of the blocks (not the padding between rows, which is never read).
        // Of stacked experts, a token reads only the n_experts_used it is routed to.
        let weight_bytes = weights
            .iter()
            .map(|(name, w)| {
                let row = crate::kernels::row_bytes(w.ty, w.cols) as u64;
                let bytes = w.rows as u64 * row;
                if crate::format::weights::is_experts(name) {
                    bytes / c.n_experts as u64 * c.n_experts_used as u64
                } else if name == crate::format::weights::TOKEN_EMBD && !c.tied_output {
                    // Looked up, one row a token (the output matrix is another).
                    row
                } else {
                    bytes
                }
            })
            .sum::<u64>();
        Ok(Model {
            choice: choice::Choice::new(&gpu, c.vocab_size as u32)?,
            gpu,
            layout,
            cfg: c,
            kv,
            branches,
            acts,
            rope_factors,
            graph: decode,
            graph_short,
            batch,
            short,
            cands: None,
            n_splits,
            weights,
            weight_bytes,
            batch_passes: 0,
        })
    }

    /// Kernel dispatches per decoded token (at the cache's next position).
    pub fn dispatches_per_token(&self) -> usize {
        self.dispatches_at(self.kv.len)
    }

    /// Kernel dispatches decoding a token at position `pos` takes.
    pub fn dispatches_at(&self, pos: usize) -> usize {
        self.graph_at(pos).len()
    }

    /// The decode graph for the cache's next position.
    fn decode_graph(&self) -> &[Dispatch] {
        self.graph_at(self.kv.len)
    }

    /// The decode graph for a token at position `pos`.
    fn graph_at(&self, pos: usize) -> &[Dispatch] {
        match &self.graph_short {
            Some((len, short)) if pos < *len => short,
            _ => &self.graph,
        }
    }

    /// Most tokens one prompt chunk runs.
    pub fn batch_rows(&self) -> usize {
        self.acts.rows as usize
    }

    /// The layout the model was built for.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A one-line description of the adapter.
    pub fn adapter_name(&self) -> String {
        self.gpu.adapter_name()
    }

    /// Buffers created on the device so far (flat across requests once the model is loaded).
    pub fn buffers_created(&self) -> u64 {
        self.gpu.buffers_created()
    }

    /// The device the model runs on (shared).
    pub fn device(&self) -> Arc<Gpu> {
        self.gpu.clone()
    }

    /// Destroys the device, as a driver reset would lose it (for tests of device loss).
    pub fn lose_device(&self) {
        self.gpu.lose_device()
    }

    /// KV-cache positions the model has.
    pub fn context_length(&self) -> usize {
        self.kv.capacity
    }

    /// Positions in the KV cache so far.
    pub fn kv_len(&self) -> usize {
        self.kv.len
    }

    /// Forgets positions from `len` on (the next tokens overwrite them); returns the positions kept:
    /// `len`, or 0 where a sliding-window layer's ring cache no longer holds the window before it
    /// (KvCache::truncate: the tokens must then be run again from the start).
    pub fn truncate(&mut self, len: usize) -> usize {
        self.kv.truncate(len)
    }

    /// Writes the step uniform and the input token (None: the previous step's argmax, which it
    /// left in tokens[0] on the GPU), then records the decoder into `enc`.
    fn record(&mut self, token: Option<u32>, enc: &mut wgpu::CommandEncoder) -> Result<()> {
        self.begin_input(token)?;
        let mut pass = enc.begin_compute_pass(&Default::default());
        self.decode_graph().iter().for_each(|d| d.record(&mut pass));
        drop(pass);
        self.kv.len += 1;
        Ok(())
    }

    fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        match tokens.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            Some(t) => {
                Err(Error::InvalidRequest(format!("token id {t} is past the vocabulary of {}", self.cfg.vocab_size)))
            }
            None => Ok(()),
        }
    }

    /// Checks `token` and the room in the KV cache, then writes the step uniform (the next
    /// position) and the input token for the decoder to read.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))] // the profile (native) runs steps by hand
    pub(crate) fn begin_step(&mut self, token: u32) -> Result<()> {
        self.begin_input(Some(token))
    }

    /// begin_step with the input token given, or (None) left where the previous step's argmax put
    /// it.
    fn begin_input(&mut self, token: Option<u32>) -> Result<()> {
        if let Some(token) = token {
            self.check_tokens(&[token])?;
        }
        if self.kv.len >= self.kv.capacity {
            return Err(Error::ContextFull { needed: self.kv.len + 1, limit: self.kv.capacity });
        }
        let pos = self.kv.len as u32;
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&Step::single(pos)));
        if steps::rope_in_attention(&self.layout, &self.cfg) {
            // The decode graph rotates q and k inside attention.
            let c = &self.cfg;
            let r = cpu::rope_rotations(
                pos,
                c.head_dim,
                c.n_rot,
                c.rope_base,
                c.rope_freq_scale,
                self.rope_factors.as_deref(),
            );
            self.gpu.queue.write_buffer(&self.acts.rotations, 0, bytemuck::cast_slice(&r));
        }
        if let Some(token) = token {
            self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::bytes_of(&token));
        }
        Ok(())
    }

    /// Queues the decoder for `token` at the next KV position (one submit); nothing is read back.
    pub fn enqueue(&mut self, token: u32) -> Result<()> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(Some(token), &mut enc)?;
        self.gpu.queue.submit([enc.finish()]);
        Ok(())
    }

    /// Runs `token` at the next position and reads back the argmax (and the logits when asked).
    pub async fn step(&mut self, token: u32, want_logits: bool) -> Result<StepOutput> {
        self.start_step(token)?;
        let want = Want { logits: want_logits, ..Default::default() };
        Ok(self.finish(want, ChoiceInputs::default()).await?.remove(0))
    }

    /// Records `token`'s step at the next position, to be submitted by `finish`.
    pub fn start_step(&mut self, token: u32) -> Result<()> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        self.record(Some(token), &mut enc)?;
        self.pend(enc, 1, false);
        Ok(())
    }

    /// Records a step at the next position whose input is the id chosen by the step submitted
    /// before it (a decode step or a prompt's last chunk, unmasked: its argmax or its one draw stays
    /// on the GPU), to be submitted before that id is read back.
    pub fn start_step_chained(&mut self) -> Result<()> {
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        // Kept for the logit edits' window: this step's argmax overwrites tokens[0].
        enc.copy_buffer_to_buffer(&self.acts.tokens, 0, self.choice.fed(), 0, 4);
        self.record(None, &mut enc)?;
        self.pend(enc, 1, true);
        Ok(())
    }

    /// Greedy decoding of `n` tokens after `token` (at the next positions), each step queued
    /// before the previous one's id is read back; the ids. For benchmarks and tests: no stop.
    pub async fn greedy(&mut self, token: u32, n: usize) -> Result<Vec<u32>> {
        self.chained(token, n, None, None, &mut || 0.0).await
    }

    /// As `greedy`, each token drawn on the GPU under `sample` (kernels::sample) with the uniform
    /// `draw` gives for it, where `sample` is set, and chosen after `edits` (the logit bias and
    /// penalties over the tokens from `token` on), where set: such steps chain on the GPU as greedy
    /// ones do.
    pub async fn chained(
        &mut self,
        token: u32,
        n: usize,
        sample: Option<SampleSettings>,
        edits: Option<&LogitEdits>,
        draw: &mut dyn FnMut() -> f32,
    ) -> Result<Vec<u32>> {
        if n == 0 {
            return Ok(vec![]);
        }
        if let Some(e) = edits {
            self.set_logit_edits(e)?;
        }
        let want = Want { sample, edit: edits.is_some(), ..Default::default() };
        // `token` and the ids collected so far: a chained step's input is not among them yet.
        let mut history = Vec::with_capacity(n + 1);
        history.push(token);
        self.start_step(token)?;
        self.submit_one(want, sample.map(|_| draw()), &history)?;
        for i in 0..n {
            if i + 1 < n {
                self.start_step_chained()?;
                self.submit_one(want, sample.map(|_| draw()), &history)?;
            }
            history.push(self.collect().await?[0].id);
        }
        Ok(history.split_off(1))
    }

    /// Checks a prompt's tokens and the room for them in the KV cache.
    pub(crate) fn check_prompt(&self, tokens: &[u32]) -> Result<()> {
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
    pub(crate) fn begin_chunk(&self, chunk: &[u32]) {
        let step = Step::chunk(self.kv.len as u32, chunk.len() as u32);
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&step));
        self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::cast_slice(chunk));
    }

    /// Runs a prompt (at the next positions) through the batch graph in chunks of batch_rows()
    /// tokens, one submit each, and reads back the last token's argmax (and logits when asked).
    pub async fn prefill(&mut self, tokens: &[u32], want_logits: bool) -> Result<StepOutput> {
        self.start_prefill(tokens)?;
        let want = Want { logits: want_logits, ..Default::default() };
        Ok(self.finish(want, ChoiceInputs::default()).await?.remove(0))
    }

    /// Runs a prompt as `prefill` does but for its last chunk, recorded to be submitted by `finish`.
    pub fn start_prefill(&mut self, tokens: &[u32]) -> Result<()> {
        self.check_prompt(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.acts.rows as usize).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            self.begin_chunk(chunk);
            let graph = match &self.short {
                Some((rows, short)) if chunk.len() <= *rows as usize => short,
                _ => &self.batch,
            };
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                graph.body.iter().for_each(|d| d.record(&mut pass));
                if last {
                    graph.logits.iter().for_each(|d| d.record(&mut pass));
                }
            }
            self.kv.len += chunk.len();
            self.batch_passes += 1;
            if last {
                self.pend(enc, 1, false);
                return Ok(());
            }
            self.gpu.queue.submit([enc.finish()]);
        }
        unreachable!("a non-empty prompt has a last chunk")
    }

    /// Runs one step of `tokens.len()` candidates side by side: candidate r's token at position
    /// kv.len + `offset`, seeing the prompt in the KV cache (kv.len positions) and its own `offset`
    /// earlier tokens in branch r. One weight pass for all of them; returns each row's argmax (and
    /// logits when asked).
    pub async fn candidates_step(
        &mut self,
        tokens: &[u32],
        offset: usize,
        want_logits: bool,
    ) -> Result<Vec<StepOutput>> {
        self.start_candidates(tokens, offset)?;
        self.finish(Want { logits: want_logits, ..Default::default() }, ChoiceInputs::default()).await
    }

    /// Records a step of candidates as `candidates_step` runs it, to be submitted by `finish`.
    pub fn start_candidates(&mut self, tokens: &[u32], offset: usize) -> Result<()> {
        self.check_tokens(tokens)?;
        self.record_candidates(tokens.len() as u32, Some(tokens), offset)
    }

    /// Records a step of `n` candidates at `offset` whose inputs are the ids the previous step of
    /// n candidates chose (unmasked: its argmaxes or draws stay in tokens[0..n] on the GPU), to be
    /// submitted before those ids are read back.
    pub fn start_candidates_chained(&mut self, n: u32, offset: usize) -> Result<()> {
        self.record_candidates(n, None, offset)
    }

    /// A step of `n` candidates at `offset`, fed `tokens` (None: those the previous step left).
    fn record_candidates(&mut self, n: u32, tokens: Option<&[u32]>, offset: usize) -> Result<()> {
        if n == 0 || n > MAX_CANDIDATES {
            return Err(Error::InvalidRequest(format!("{n} candidates: between 1 and {MAX_CANDIDATES} are supported")));
        }
        let pos = self.kv.len + offset;
        if pos >= self.kv.capacity {
            return Err(Error::ContextFull { needed: pos + 1, limit: self.kv.capacity });
        }
        if n > self.branches.n || offset as u32 >= self.branches.len || self.cands.is_none() {
            return Err(Error::InvalidRequest(format!(
                "{n} candidates at offset {offset}: room for {} of {} positions was reserved (reserve_candidates)",
                self.branches.n, self.branches.len
            )));
        }
        let step = Step::candidates(pos as u32, n, self.kv.len as u32);
        self.gpu.queue.write_buffer(&self.acts.step, 0, bytemuck::bytes_of(&step));
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        match tokens {
            Some(tokens) => self.gpu.queue.write_buffer(&self.acts.tokens, 0, bytemuck::cast_slice(tokens)),
            // Kept for the logit edits' windows: this step's argmaxes overwrite them.
            None => enc.copy_buffer_to_buffer(&self.acts.tokens, 0, self.choice.fed(), 0, 4 * n as u64),
        }
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            let cands = self.cands.as_ref().expect("reserve_candidates records the candidates' graph");
            cands.body.iter().chain(&cands.logits).for_each(|d| d.record(&mut pass));
        }
        self.batch_passes += 1;
        self.pend(enc, n, tokens.is_none());
        Ok(())
    }

    /// Makes branch room for `n` candidates of `len` tokens (recording the candidates' graph, the
    /// first time and again when the branch buffers change).
    pub async fn reserve_candidates(&mut self, n: u32, len: u32) -> Result<()> {
        if self.branches.ensure(&self.gpu, &self.cfg, n, len).await? || self.cands.is_none() {
            let parts = graph::Parts {
                gpu: &self.gpu,
                layout: &self.layout,
                cfg: &self.cfg,
                weights: &self.weights,
                acts: &self.acts,
                kv: &self.kv,
                branches: &self.branches,
                n_splits: self.n_splits,
            };
            self.cands = Some(graph::batch(&parts, Batch::Candidates)?);
        }
        Ok(())
    }
}
