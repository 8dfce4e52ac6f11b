//! A step's end: the token chosen on the GPU and what comes back. A step is started (its forward
//! pass recorded) and then finished in the same submit: each row's grammar mask written, the masked
//! argmax and the log-softmax's top tokens recorded after the forward pass, and one readback of the
//! ids (the logits and top tokens when asked).

use super::{Model, StepOutput, MAX_CANDIDATES};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Layout};
use crate::kernels::{self, Dispatch, Target, LOGPROBS_STRIDE, TOP_LOGPROBS};

/// What a step reads back besides each row's argmax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// Every row's logits (for a sampler on the CPU, or top_logits).
    pub logits: bool,
    /// The argmax among the tokens each row's mask allows (Model::finish's masks), in place of
    /// the plain one.
    pub masked: bool,
    /// The k most likely tokens of each row's log-softmax (k at most TOP_LOGPROBS) and the
    /// chosen token's log-probability.
    pub logprobs: Option<usize>,
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

/// The buffers and kernels of a step's choice.
pub(super) struct Choice {
    mask: wgpu::Buffer,     // [MAX_CANDIDATES, mask_words(vocab)] u32: each row's allowed tokens
    logprobs: wgpu::Buffer, // [MAX_CANDIDATES, LOGPROBS_STRIDE] u32: kernels::logprobs' rows
    /// Staging: [MAX_CANDIDATES] ids | [MAX_CANDIDATES, LOGPROBS_STRIDE] logprobs | [MAX_CANDIDATES,
    /// vocab] logits, each read only as far as a step needs.
    readback: wgpu::Buffer,
    /// argmax_masked over r + 1 rows at [r].
    masked: Vec<Dispatch>,
    /// logprobs of r + 1 rows at [r].
    report: Vec<Dispatch>,
    words: u32,
    vocab: u32,
    pending: Option<Pending>,
}

const IDS_BYTES: u64 = 4 * MAX_CANDIDATES as u64;
const LOGPROBS_BYTES: u64 = 4 * LOGPROBS_STRIDE as u64 * MAX_CANDIDATES as u64;

impl Choice {
    /// The choice kernels over `logits` ([MAX_CANDIDATES, vocab]), their ids into `tokens`.
    pub(super) fn new(
        gpu: &Gpu,
        layout: &Layout,
        logits: &wgpu::Buffer,
        tokens: &wgpu::Buffer,
        vocab: u32,
    ) -> Result<Choice> {
        let t = Target { gpu, layout };
        let words = kernels::mask_words(vocab);
        let mask = gpu.storage("grammar masks", 4 * words as u64 * MAX_CANDIDATES as u64);
        let logprobs = gpu.storage("logprobs", LOGPROBS_BYTES);
        let rows = 1..=MAX_CANDIDATES;
        Ok(Choice {
            masked: rows
                .clone()
                .map(|r| kernels::argmax_masked(t, logits, &mask, tokens, vocab, r))
                .collect::<Result<_>>()?,
            report: rows.map(|r| kernels::logprobs(t, logits, tokens, &logprobs, vocab, r)).collect::<Result<_>>()?,
            readback: gpu.readback_buffer(
                "step readback",
                IDS_BYTES + LOGPROBS_BYTES + 4 * vocab as u64 * MAX_CANDIDATES as u64,
            ),
            mask,
            logprobs,
            words,
            vocab,
            pending: None,
        })
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

    /// Finishes the step started last (start_step, start_prefill, start_candidates): with
    /// want.masked, writes `masks` ([rows, mask_words()] u32) and takes each row's argmax among the
    /// tokens its mask allows; with want.logprobs, the log-softmax's top tokens; then reads back
    /// each row's id (and what `want` asks) in one mapping.
    pub async fn finish(&mut self, want: Want, masks: &[u32]) -> Result<Vec<StepOutput>> {
        let Pending { mut enc, rows } =
            self.choice.pending.take().ok_or_else(|| Error::Gpu("finish without a step started".into()))?;
        // A lost device (or an earlier error) fails here, before waiting on work that never runs.
        self.gpu.take_error()?;
        let c = &self.choice;
        let k = want.logprobs.map(|k| k.min(TOP_LOGPROBS as usize));
        if want.masked {
            let words = (rows * c.words) as usize;
            if masks.len() != words {
                return Err(Error::InvalidRequest(format!(
                    "{} mask words for {rows} rows of {}",
                    masks.len(),
                    c.words
                )));
            }
            self.gpu.queue.write_buffer(&c.mask, 0, bytemuck::cast_slice(masks));
        }
        if want.masked || k.is_some() {
            let mut pass = enc.begin_compute_pass(&Default::default());
            if want.masked {
                c.masked[rows as usize - 1].record(&mut pass);
            }
            if k.is_some() {
                c.report[rows as usize - 1].record(&mut pass);
            }
        }
        let vocab_bytes = 4 * c.vocab as u64;
        enc.copy_buffer_to_buffer(&self.acts.tokens, 0, &c.readback, 0, 4 * rows as u64);
        let mut size = 4 * rows as u64;
        if k.is_some() {
            let bytes = 4 * LOGPROBS_STRIDE as u64 * rows as u64;
            enc.copy_buffer_to_buffer(&c.logprobs, 0, &c.readback, IDS_BYTES, bytes);
            size = IDS_BYTES + bytes;
        }
        let logits_at = IDS_BYTES + LOGPROBS_BYTES;
        if want.logits {
            enc.copy_buffer_to_buffer(&self.acts.logits, 0, &c.readback, logits_at, vocab_bytes * rows as u64);
            size = logits_at + vocab_bytes * rows as u64;
        }
        self.gpu.queue.submit([enc.finish()]);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&self.gpu.map_read(&c.readback, size).await?);
        let mut outs = vec![];
        for r in 0..rows as usize {
            let argmax = words[r];
            if argmax >= c.vocab {
                let why = if want.masked { "its mask allows no token" } else { "no logit is a number" };
                return Err(Error::Gpu(format!("row {r} has no argmax: {why}")));
            }
            let logits = want.logits.then(|| {
                let at = (logits_at / 4) as usize + r * c.vocab as usize;
                bytemuck::cast_slice::<u32, f32>(&words[at..at + c.vocab as usize]).to_vec()
            });
            let logprobs = k.map(|k| {
                let row = &words[(IDS_BYTES / 4) as usize + r * LOGPROBS_STRIDE as usize..];
                let f = |i: usize| f32::from_bits(row[i]);
                let top = (0..k).map(|j| (row[2 + 2 * j], f(3 + 2 * j))).filter(|t| t.0 < c.vocab).collect();
                RowLogprobs { lse: f(0), chosen: f(1), top }
            });
            outs.push(StepOutput { argmax, logits, logprobs });
        }
        Ok(outs)
    }
}
