//! A step's end: the token chosen on the GPU and what comes back. A step is started (its forward
//! pass recorded) and then submitted whole: each row's grammar mask written, the logit bias and
//! penalties applied to a copy of the logits (kernels::edit_logits) where the request sets them,
//! the masked argmax (or, for a sampled step, each draw of kernels::sample) and the log-softmax's
//! top tokens recorded after the forward pass, and one readback of the ids (the logits and top
//! tokens when asked) into one of
//! STEPS_IN_FLIGHT staging buffers, collected later: a step whose input is the previous step's
//! chosen id (start_step_chained) is submitted before that id is read back, so the host never
//! leaves the GPU idle between steps, greedy or sampled.

use super::graph::Acts;
use super::{Model, StepOutput, MAX_CANDIDATES};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{self, Dispatch, EditBuffers, EditShape, SampleDraw, Target, LOGPROBS_STRIDE, TOP_LOGPROBS};
use std::collections::{HashMap, VecDeque};

/// Steps submitted and not yet collected, at most: the one being read back and the one queued
/// behind it.
pub const STEPS_IN_FLIGHT: usize = 2;

/// How a step chooses its tokens, and what it reads back besides their ids.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Want {
    /// Every row's logits (for a sampler on the CPU, or top_logits).
    pub logits: bool,
    /// The argmax among the tokens each row's mask allows (Model::finish's masks), in place of
    /// the plain one.
    pub masked: bool,
    /// The k most likely tokens of each row's log-softmax (k at most TOP_LOGPROBS) and the
    /// chosen token's log-probability.
    pub logprobs: Option<usize>,
    /// Each choice drawn on the GPU under these settings (kernels::sample) from the uniform draws
    /// `submit` takes, in place of the argmax.
    pub sample: Option<SampleSettings>,
    /// Each choice made from its own copy of its row of logits with the bias and penalties of
    /// Model::set_logit_edits applied over its history (kernels::edit_logits), not from the raw
    /// row. The logits read back and the log-probabilities stay the raw ones.
    pub edit: bool,
}

/// The GPU sampler's settings (engine::sampler::SamplerConfig's, without the logit edits:
/// LogitEdits has those).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SampleSettings {
    pub temperature: f32,
    /// 0: all.
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
}

/// The logit edits of engine::sampler::SamplerConfig, made on the GPU by the steps that ask
/// (Want::edit): each bias added, then each token of a choice's last penalty_last_n tokens
/// penalized once, by its count there.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogitEdits {
    pub repetition_penalty: f32,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// Tokens at the end of each history the penalties count (0: none, the penalties are off).
    pub penalty_last_n: usize,
    /// (id, bias) pairs, one per id.
    pub bias: Vec<(u32, f32)>,
}

/// What the host gives a step's choice, as `Want` says.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChoiceInputs<'a> {
    /// [choices, mask_words()] u32: each choice's allowed tokens, with want.masked (else empty).
    pub masks: &'a [u32],
    /// One uniform in [0, 1) per choice, with want.sample (else empty): the number of choices.
    pub draws: &'a [f32],
    /// Each choice's tokens so far (the prompt's included; for a chained step, all but its input,
    /// which only the GPU has yet), with want.edit (else empty).
    pub histories: &'a [&'a [u32]],
}

/// The log-softmax of a row's raw logits, computed on the GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct RowLogprobs {
    /// The log-sum-exp of the row's logits: a token's log-probability is its logit less this.
    pub lse: f32,
    /// The log-probability of the row's argmax (the masked one's where masked).
    pub chosen: f32,
    /// The k most likely (id, log-probability), most likely first.
    pub top: Vec<(u32, f32)>,
}

/// A step recorded and not yet finished.
struct Pending {
    /// The forward pass.
    enc: wgpu::CommandEncoder,
    /// Logits rows it leaves.
    rows: u32,
    /// Whether its inputs are the previous step's choices (start_step_chained,
    /// start_candidates_chained): then `fed` holds them.
    chained: bool,
}

/// A step submitted and not yet collected.
struct InFlight {
    /// Its staging buffer in Choice::readbacks.
    slot: usize,
    /// Rows of logits.
    rows: u32,
    /// Ids chosen: one a row, or one a draw.
    choices: u32,
    want: Want,
    /// Bytes of the staging buffer it fills.
    size: u64,
    submission: wgpu::SubmissionIndex,
}

/// How a step chooses its tokens after the forward pass (which leaves each row's plain argmax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum How {
    Argmax,
    Masked,
    Sample,
}

/// A dispatch of a step's choice, by what it does and its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kernel {
    /// edit_logits of (rows, choices) into `edited`.
    Edit { rows: u32, choices: u32 },
    /// The choice over `rows` rows (of `edited` where `edited`, else of the logits).
    Choose { how: How, edited: bool, rows: u32, choices: u32 },
    /// logprobs of (rows, choices).
    Report { rows: u32, choices: u32 },
}

impl Kernel {
    /// Whether it binds the logit edits' buffers (made again when they grow).
    fn binds_edits(&self) -> bool {
        matches!(self, Kernel::Edit { .. } | Kernel::Choose { edited: true, .. })
    }
}

/// The logit edits' buffers and their current settings (Model::set_logit_edits).
struct EditState {
    edited: wgpu::Buffer, // [MAX_CANDIDATES, vocab] f32: each choice's row of logits, edited
    counts: wgpu::Buffer, // [MAX_CANDIDATES, vocab] u32: edit_logits' scratch, 0 between steps
    edits: wgpu::Buffer,  // shape.words(MAX_CANDIDATES) u32: the settings, the biases, the windows
    shape: EditShape,
    /// Tokens of each history the penalties count now (0: no penalty set), at most shape.window.
    window: u32,
}

/// The buffers and kernels of a step's choice.
pub(super) struct Choice {
    mask: wgpu::Buffer,           // [MAX_CANDIDATES, mask_words(vocab)] u32: each row's allowed tokens
    logprobs: wgpu::Buffer,       // [MAX_CANDIDATES, LOGPROBS_STRIDE] u32: kernels::logprobs' rows
    draws: wgpu::Buffer,          // [MAX_CANDIDATES] SampleDraw: a sampled step's settings and uniforms
    sample_spans: wgpu::Buffer,   // [MAX_CANDIDATES, ceil(vocab / SAMPLE_SPAN)] 4 u32: sample's first level
    logprobs_spans: wgpu::Buffer, // [MAX_CANDIDATES, ceil(vocab / ARGMAX_SPAN)] 4 u32: logprobs' first level (GPU family)
    fed: wgpu::Buffer, // [MAX_CANDIDATES] u32: a chained step's inputs, kept from tokens (which its argmaxes overwrite)
    /// Made by the first request that edits its logits on the GPU.
    edits: Option<EditState>,
    /// STEPS_IN_FLIGHT staging buffers, each [MAX_CANDIDATES] ids | [MAX_CANDIDATES,
    /// LOGPROBS_STRIDE] logprobs | [MAX_CANDIDATES, vocab] logits, read only as far as a step needs.
    readbacks: Vec<wgpu::Buffer>,
    /// The staging buffer the next submit fills.
    next_slot: usize,
    /// Steps submitted and not yet collected, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Each built by the first step that needs it: a request without a grammar, say, never
    /// compiles argmax_masked (logprobs takes ~0.8 s to compile on SwiftShader, a tenth of a
    /// model's load there).
    kernels: HashMap<Kernel, Vec<Dispatch>>,
    words: u32,
    vocab: u32,
    pending: Option<Pending>,
}

const IDS_BYTES: u64 = 4 * MAX_CANDIDATES as u64;
const LOGPROBS_BYTES: u64 = 4 * LOGPROBS_STRIDE as u64 * MAX_CANDIDATES as u64;
const LOGITS_AT: u64 = IDS_BYTES + LOGPROBS_BYTES;

impl Choice {
    /// The choice's buffers for a vocabulary of `vocab` tokens; its kernels come with the first step
    /// that needs them (build_for).
    pub(super) fn new(gpu: &Gpu, vocab: u32) -> Result<Choice> {
        let words = kernels::mask_words(vocab);
        let mask = gpu.storage("grammar masks", 4 * words as u64 * MAX_CANDIDATES as u64);
        let logprobs = gpu.storage("logprobs", LOGPROBS_BYTES);
        let draws = gpu.storage("sample draws", (MAX_CANDIDATES as usize * size_of::<SampleDraw>()) as u64);
        Ok(Choice {
            kernels: HashMap::new(),
            draws,
            sample_spans: gpu.storage("sample spans", kernels::sample_spans_bytes(vocab, MAX_CANDIDATES)),
            logprobs_spans: gpu.storage("logprobs spans", kernels::logprobs_spans_bytes(vocab, MAX_CANDIDATES)),
            fed: gpu.storage("fed tokens", 4 * MAX_CANDIDATES as u64),
            edits: None,
            readbacks: (0..STEPS_IN_FLIGHT)
                .map(|_| {
                    gpu.readback_buffer(
                        "step readback",
                        IDS_BYTES + LOGPROBS_BYTES + 4 * vocab as u64 * MAX_CANDIDATES as u64,
                    )
                })
                .collect(),
            next_slot: 0,
            in_flight: VecDeque::new(),
            mask,
            logprobs,
            words,
            vocab,
            pending: None,
        })
    }

    /// Builds the kernels a step of `rows` rows of logits and `choices` ids (into acts.tokens) needs
    /// that no step has asked for before; the choice's kernel, if the forward pass's argmax does
    /// not stand.
    fn build_for(&mut self, t: Target, want: Want, (rows, choices): (u32, u32), acts: &Acts) -> Result<Option<Kernel>> {
        let vocab = self.vocab;
        let edits = match (want.edit, &self.edits) {
            (true, Some(e)) => Some(e),
            (true, None) => {
                return Err(Error::InvalidRequest("a step edits its logits before any edits were set".into()))
            }
            (false, _) => None,
        };
        let how = match want {
            Want { sample: Some(_), .. } => Some(How::Sample),
            Want { masked: true, .. } => Some(How::Masked),
            Want { edit: true, .. } => Some(How::Argmax),
            _ => None,
        };
        if let Some(e) = edits {
            let key = Kernel::Edit { rows, choices };
            if !self.kernels.contains_key(&key) {
                let b = EditBuffers {
                    logits: &acts.logits,
                    edited: &e.edited,
                    edits: &e.edits,
                    counts: &e.counts,
                    fed: &self.fed,
                };
                let d = kernels::edit_logits(t, b, vocab, e.shape, (rows, choices))?;
                self.kernels.insert(key, vec![d]);
            }
        }
        // Each choice's edited row is its own.
        let (from, from_rows) = match edits {
            Some(e) => (&e.edited, choices),
            None => (&acts.logits, rows),
        };
        let choose = how.map(|how| Kernel::Choose { how, edited: want.edit, rows: from_rows, choices });
        if let Some(key @ Kernel::Choose { how, rows: r, .. }) = choose {
            if !self.kernels.contains_key(&key) {
                let (mask, ids) = (&self.mask, &acts.tokens);
                let d = match how {
                    How::Sample => {
                        let spans = &self.sample_spans;
                        kernels::sample(t, from, mask, &self.draws, spans, ids, vocab, (r, choices))?.into()
                    }
                    How::Masked if t.layout.is_cpu() => vec![kernels::argmax_masked(t, from, mask, ids, vocab, r)?],
                    How::Masked => {
                        kernels::argmax_masked_spans(t, from, mask, &acts.argmax_spans, ids, vocab, r)?.into()
                    }
                    How::Argmax if t.layout.is_cpu() => vec![kernels::argmax(t, from, ids, vocab, r)?],
                    How::Argmax => kernels::argmax_spans(t, from, &acts.argmax_spans, ids, vocab, r)?.into(),
                };
                self.kernels.insert(key, d);
            }
        }
        let report = Kernel::Report { rows, choices };
        if want.logprobs.is_some() && !self.kernels.contains_key(&report) {
            let (logits, ids, out) = (&acts.logits, &acts.tokens, &self.logprobs);
            let d = match t.layout.is_cpu() {
                true => vec![kernels::logprobs(t, logits, ids, out, vocab, rows, choices)?],
                false => {
                    let spans = &self.logprobs_spans;
                    kernels::logprobs_spans(t, logits, ids, spans, out, vocab, (rows, choices))?.into()
                }
            };
            self.kernels.insert(report, d);
        }
        Ok(choose)
    }

    /// A chained step's inputs (start_step_chained and start_candidates_chained copy them there).
    pub(super) fn fed(&self) -> &wgpu::Buffer {
        &self.fed
    }

    /// Records the dispatches of `key` (built by build_for).
    fn record(&self, key: Kernel, pass: &mut wgpu::ComputePass<'_>) {
        self.kernels[&key].iter().for_each(|d| d.record(pass));
    }
}

impl Model {
    /// Words per row of the masks `finish` takes (bit i % 32 of word i / 32 allows token i).
    pub fn mask_words(&self) -> usize {
        self.choice.words as usize
    }

    /// Holds `enc` (the forward pass leaving `rows` rows of logits; `chained`: its input is the
    /// previous step's choice, which `enc` first copies into `fed`) for `finish`.
    pub(super) fn pend(&mut self, enc: wgpu::CommandEncoder, rows: u32, chained: bool) {
        self.choice.pending = Some(Pending { enc, rows, chained });
    }

    /// Sets the logit bias and penalties of the steps that ask for them (Want::edit), making or
    /// growing their buffers: windows of up to penalty_last_n tokens (no more than the context
    /// holds) and the biases of ids in the vocabulary.
    pub fn set_logit_edits(&mut self, e: &LogitEdits) -> Result<()> {
        let window = e.penalty_last_n.min(self.kv.capacity + 1) as u32;
        let vocab = self.choice.vocab;
        let pairs: Vec<u32> =
            e.bias.iter().filter(|b| b.0 < vocab).flat_map(|&(id, bias)| [id, bias.to_bits()]).collect();
        let biases = (pairs.len() / 2) as u32;
        let c = &mut self.choice;
        let fits = c.edits.as_ref().is_some_and(|s| s.shape.window >= window && s.shape.biases >= biases);
        if !fits {
            let old = c.edits.take();
            let shape = EditShape {
                window: window.max(old.as_ref().map_or(0, |o| o.shape.window)),
                biases: biases.max(old.as_ref().map_or(0, |o| o.shape.biases)),
            };
            let rows = 4 * vocab as u64 * MAX_CANDIDATES as u64;
            let (edited, counts) = match old {
                Some(o) => (o.edited, o.counts),
                None => (self.gpu.storage("edited logits", rows), self.gpu.storage("token counts", rows)),
            };
            let edits = self.gpu.storage("logit edits", 4 * shape.words(MAX_CANDIDATES) as u64);
            // Their bind groups hold the old buffer.
            c.kernels.retain(|k, _| !k.binds_edits());
            c.edits = Some(EditState { edited, counts, edits, shape, window });
        }
        let s = c.edits.as_mut().expect("made above");
        s.window = window;
        let header =
            [e.repetition_penalty.to_bits(), e.frequency_penalty.to_bits(), e.presence_penalty.to_bits(), biases];
        self.gpu.queue.write_buffer(&s.edits, 0, bytemuck::cast_slice(&header));
        if !pairs.is_empty() {
            self.gpu.queue.write_buffer(&s.edits, 4 * kernels::EDIT_HEADER as u64, bytemuck::cast_slice(&pairs));
        }
        Ok(())
    }

    /// Submits a step of one choice: `draw` its uniform where want.sample, `history` its tokens so
    /// far where want.edit (as ChoiceInputs says).
    pub fn submit_one(&mut self, want: Want, draw: Option<f32>, history: &[u32]) -> Result<()> {
        let h = [history];
        let histories: &[&[u32]] = if want.edit { &h } else { &[] };
        self.submit(want, ChoiceInputs { draws: draw.as_slice(), histories, ..Default::default() })
    }

    /// Finishes the step started last (start_step, start_prefill, start_candidates): submits it
    /// and collects it (with nothing else in flight).
    pub async fn finish(&mut self, want: Want, given: ChoiceInputs<'_>) -> Result<Vec<StepOutput>> {
        self.submit(want, given)?;
        self.collect().await
    }

    /// Submits the step started last. Its choices: one per row of logits (each row's argmax, among
    /// the tokens its row of given.masks allows with want.masked), or with want.sample one per
    /// uniform of given.draws (draw y from row min(y, rows - 1): a prompt's one row gives each
    /// candidate its first token); with want.edit, made from each choice's row after the logit
    /// edits over its given history. With want.logprobs, the log-softmax's top tokens of each
    /// choice. Copies each choice's id (and what `want` asks) into a staging buffer for `collect`.
    /// At most STEPS_IN_FLIGHT steps may wait to be collected.
    pub fn submit(&mut self, want: Want, given: ChoiceInputs<'_>) -> Result<()> {
        let ChoiceInputs { masks, draws, histories } = given;
        if self.choice.in_flight.len() >= STEPS_IN_FLIGHT {
            return Err(Error::InvalidRequest(format!("more than {STEPS_IN_FLIGHT} steps in flight")));
        }
        let choices = match want.sample {
            Some(_) if draws.is_empty() || draws.len() > MAX_CANDIDATES as usize => {
                return Err(Error::InvalidRequest(format!("{} draws: 1 to {MAX_CANDIDATES} are", draws.len())));
            }
            Some(_) => draws.len() as u32,
            None => self.choice.pending.as_ref().map_or(1, |p| p.rows),
        };
        let Pending { mut enc, rows, chained } =
            self.choice.pending.take().ok_or_else(|| Error::Gpu("submit without a step started".into()))?;
        // A lost device (or an earlier error) fails here, before waiting on work that never runs.
        self.gpu.take_error()?;
        let t = Target { gpu: &self.gpu, layout: &self.layout };
        let choose = self.choice.build_for(t, want, (rows, choices), &self.acts)?;
        let c = &self.choice;
        let slot = c.next_slot;
        let readback = &c.readbacks[slot];
        let k = want.logprobs.map(|k| k.min(TOP_LOGPROBS as usize));
        if want.masked {
            let words = (choices * c.words) as usize;
            if masks.len() != words {
                return Err(Error::InvalidRequest(format!(
                    "{} mask words for {choices} choices of {}",
                    masks.len(),
                    c.words
                )));
            }
            self.gpu.queue.write_buffer(&c.mask, 0, bytemuck::cast_slice(masks));
        }
        if let Some(s) = want.sample {
            // On the stack: a sampled step allocates nothing on the host.
            let mut rows = [SampleDraw::default(); MAX_CANDIDATES as usize];
            for (row, &r) in rows.iter_mut().zip(draws) {
                *row = SampleDraw {
                    r,
                    temperature: s.temperature,
                    top_p: s.top_p,
                    min_p: s.min_p,
                    top_k: s.top_k,
                    masked: want.masked as u32,
                    _pad: [0; 2],
                };
            }
            self.gpu.queue.write_buffer(&c.draws, 0, bytemuck::cast_slice(&rows[..draws.len()]));
        }
        if let (true, Some(s)) = (want.edit, &c.edits) {
            if histories.len() != choices as usize {
                return Err(Error::InvalidRequest(format!("{} histories for {choices} choices", histories.len())));
            }
            // A chained step's inputs, each window's last token, are on the GPU only.
            let fed = (chained && s.window > 0) as u32;
            self.gpu.queue.write_buffer(&s.edits, 16, bytemuck::bytes_of(&fed));
            for (y, h) in histories.iter().enumerate() {
                let w = &h[h.len().saturating_sub((s.window - fed) as usize)..];
                let at = 4 * s.shape.window_at(y as u32) as u64;
                self.gpu.queue.write_buffer(&s.edits, at, bytemuck::bytes_of(&(w.len() as u32)));
                if !w.is_empty() {
                    self.gpu.queue.write_buffer(&s.edits, at + 4, bytemuck::cast_slice(w));
                }
            }
        }
        if choose.is_some() || k.is_some() {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if want.edit {
                c.record(Kernel::Edit { rows, choices }, &mut pass);
            }
            if let Some(key) = choose {
                c.record(key, &mut pass);
            }
            if k.is_some() {
                c.record(Kernel::Report { rows, choices }, &mut pass);
            }
        }
        let vocab_bytes = 4 * c.vocab as u64;
        enc.copy_buffer_to_buffer(&self.acts.tokens, 0, readback, 0, 4 * choices as u64);
        let mut size = 4 * choices as u64;
        if k.is_some() {
            let bytes = 4 * LOGPROBS_STRIDE as u64 * choices as u64;
            enc.copy_buffer_to_buffer(&c.logprobs, 0, readback, IDS_BYTES, bytes);
            size = IDS_BYTES + bytes;
        }
        if want.logits {
            enc.copy_buffer_to_buffer(&self.acts.logits, 0, readback, LOGITS_AT, vocab_bytes * rows as u64);
            size = LOGITS_AT + vocab_bytes * rows as u64;
        }
        let submission = self.gpu.queue.submit([enc.finish()]);
        let c = &mut self.choice;
        c.in_flight.push_back(InFlight { slot, rows, choices, want, size, submission });
        c.next_slot = (slot + 1) % STEPS_IN_FLIGHT;
        Ok(())
    }

    /// Steps submitted and not yet collected.
    pub fn steps_in_flight(&self) -> usize {
        self.choice.in_flight.len()
    }

    /// Forgets the steps in flight (their outputs are not wanted: a request ended or failed with
    /// steps queued ahead). Their positions stay in the KV cache until truncated.
    pub fn forget_in_flight(&mut self) {
        self.choice.in_flight.clear();
    }

    /// Waits for the oldest step submitted and not yet collected and reads what it copied back:
    /// each choice's id (and what its `want` asked).
    pub async fn collect(&mut self) -> Result<Vec<StepOutput>> {
        let InFlight { slot, rows, choices, want, size, submission } =
            self.choice.in_flight.pop_front().ok_or_else(|| Error::Gpu("collect without a step submitted".into()))?;
        let k = want.logprobs.map(|k| k.min(TOP_LOGPROBS as usize));
        let c = &self.choice;
        let staging = &c.readbacks[slot];
        let words: Vec<u32> =
            bytemuck::pod_collect_to_vec(&self.gpu.map_read_after(staging, size, Some(submission)).await?);
        let logits_at = LOGITS_AT;
        let mut outs = vec![];
        for r in 0..choices as usize {
            let id = words[r];
            if id >= c.vocab {
                let why = if want.masked {
                    "no token its mask allows has a logit that is a number"
                } else {
                    "no logit is a number"
                };
                return Err(Error::Gpu(format!("choice {r} has no token: {why}")));
            }
            let logits = want.logits.then(|| {
                let row = r.min(rows as usize - 1);
                let at = (logits_at / 4) as usize + row * c.vocab as usize;
                bytemuck::cast_slice::<u32, f32>(&words[at..at + c.vocab as usize]).to_vec()
            });
            let logprobs = k.map(|k| {
                let row = &words[(IDS_BYTES / 4) as usize + r * LOGPROBS_STRIDE as usize..];
                let f = |i: usize| f32::from_bits(row[i]);
                let top = (0..k).map(|j| (row[2 + 2 * j], f(3 + 2 * j))).filter(|t| t.0 < c.vocab).collect();
                RowLogprobs { lse: f(0), chosen: f(1), top }
            });
            outs.push(StepOutput { id, logits, logprobs });
        }
        Ok(outs)
    }
}
