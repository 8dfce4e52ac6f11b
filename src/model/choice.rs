//! A step's end: the token chosen on the GPU and what comes back. A step is started (its forward
//! pass recorded) and then submitted whole: each row's grammar mask written, the masked argmax (or,
//! for a sampled step, each draw of kernels::sample) and the log-softmax's top tokens recorded after
//! the forward pass, and one readback of the ids (the logits and top tokens when asked) into one of
//! STEPS_IN_FLIGHT staging buffers, collected later: a step whose input is the previous step's
//! chosen id (start_step_chained) is submitted before that id is read back, so the host never
//! leaves the GPU idle between steps, greedy or sampled.

use super::{Model, StepOutput, MAX_CANDIDATES};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{self, Dispatch, SampleDraw, Target, LOGPROBS_STRIDE, TOP_LOGPROBS};
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
}

/// The GPU sampler's settings (engine::sampler::SamplerConfig's, without the logit edits: those
/// keep the choice on the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SampleSettings {
    pub temperature: f32,
    /// 0: all.
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
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

/// The buffers and kernels of a step's choice.
pub(super) struct Choice {
    mask: wgpu::Buffer,     // [MAX_CANDIDATES, mask_words(vocab)] u32: each row's allowed tokens
    logprobs: wgpu::Buffer, // [MAX_CANDIDATES, LOGPROBS_STRIDE] u32: kernels::logprobs' rows
    draws: wgpu::Buffer,    // [MAX_CANDIDATES] SampleDraw: a sampled step's settings and uniforms
    /// STEPS_IN_FLIGHT staging buffers, each [MAX_CANDIDATES] ids | [MAX_CANDIDATES,
    /// LOGPROBS_STRIDE] logprobs | [MAX_CANDIDATES, vocab] logits, read only as far as a step needs.
    readbacks: Vec<wgpu::Buffer>,
    /// The staging buffer the next submit fills.
    next_slot: usize,
    /// Steps submitted and not yet collected, oldest first.
    in_flight: VecDeque<InFlight>,
    /// argmax_masked over r + 1 rows at [r]; built by the first step that asks for a mask (empty
    /// until then: a request without a grammar never compiles its pipeline).
    masked: Vec<Dispatch>,
    /// logprobs of (rows, choices), built by the first step that asks for them (the pipeline takes
    /// ~0.8 s to compile on SwiftShader, a tenth of a model's load there).
    report: HashMap<(u32, u32), Dispatch>,
    /// sample over (rows, draws), built by the first sampled step of that shape.
    sample: HashMap<(u32, u32), Dispatch>,
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
            masked: Vec::new(),
            report: HashMap::new(),
            sample: HashMap::new(),
            draws,
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

    /// Builds the kernels a step of `rows` rows of `logits` ([MAX_CANDIDATES, vocab] f32) and
    /// `choices` ids (into `tokens`, [MAX_CANDIDATES] u32) needs that no step has asked for before:
    /// argmax_masked over 1 ..= MAX_CANDIDATES rows, sample and logprobs of this shape.
    fn build_for(
        &mut self,
        t: Target,
        want: Want,
        (rows, choices): (u32, u32),
        logits: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
    ) -> Result<()> {
        let vocab = self.vocab;
        if want.masked && want.sample.is_none() && self.masked.is_empty() {
            self.masked = (1..=MAX_CANDIDATES)
                .map(|r| kernels::argmax_masked(t, logits, &self.mask, tokens, vocab, r))
                .collect::<Result<_>>()?;
        }
        if want.sample.is_some() && !self.sample.contains_key(&(rows, choices)) {
            let d = kernels::sample(t, logits, &self.mask, &self.draws, tokens, vocab, rows, choices)?;
            self.sample.insert((rows, choices), d);
        }
        if want.logprobs.is_some() && !self.report.contains_key(&(rows, choices)) {
            let d = kernels::logprobs(t, logits, tokens, &self.logprobs, vocab, rows, choices)?;
            self.report.insert((rows, choices), d);
        }
        Ok(())
    }
}

impl Model {
    /// Words per row of the masks `finish` takes (bit i % 32 of word i / 32 allows token i).
    pub fn mask_words(&self) -> usize {
        self.choice.words as usize
    }

    /// Holds `enc` (the forward pass leaving `rows` rows of logits) for `finish`.
    pub(super) fn pend(&mut self, enc: wgpu::CommandEncoder, rows: u32) {
        self.choice.pending = Some(Pending { enc, rows });
    }

    /// Finishes the step started last (start_step, start_prefill, start_candidates): submits it
    /// and collects it (with nothing else in flight).
    pub async fn finish(&mut self, want: Want, masks: &[u32], draws: &[f32]) -> Result<Vec<StepOutput>> {
        self.submit(want, masks, draws)?;
        self.collect().await
    }

    /// Submits the step started last. Its choices: one per row of logits (each row's argmax, among
    /// the tokens its row of `masks` allows with want.masked), or with want.sample one per uniform
    /// of `draws` (draw y from row min(y, rows - 1): a prompt's one row gives each candidate its
    /// first token). `masks` is [choices, mask_words()] u32 with want.masked, else empty. With
    /// want.logprobs, the log-softmax's top tokens of each choice. Copies each choice's id (and what
    /// `want` asks) into a staging buffer for `collect`. At most STEPS_IN_FLIGHT steps may wait to
    /// be collected.
    pub fn submit(&mut self, want: Want, masks: &[u32], draws: &[f32]) -> Result<()> {
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
        let Pending { mut enc, rows } =
            self.choice.pending.take().ok_or_else(|| Error::Gpu("submit without a step started".into()))?;
        // A lost device (or an earlier error) fails here, before waiting on work that never runs.
        self.gpu.take_error()?;
        let t = Target { gpu: &self.gpu, layout: &self.layout };
        self.choice.build_for(t, want, (rows, choices), &self.acts.logits, &self.acts.tokens)?;
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
        if want.masked || want.sample.is_some() || k.is_some() {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if want.sample.is_some() {
                c.sample[&(rows, choices)].record(&mut pass);
            } else if want.masked {
                c.masked[rows as usize - 1].record(&mut pass);
            }
            if k.is_some() {
                c.report[&(rows, choices)].record(&mut pass);
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
                let why = if want.masked { "its mask allows no token" } else { "no logit is a number" };
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
