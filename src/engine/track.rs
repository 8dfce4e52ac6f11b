//! One candidate's progress through a request: its sampler, the tokens it took (chosen on the GPU
//! or by the host's sampler, or forced by its grammar), its text streamed as it grows, held back
//! where it may be the start of a stop string, and why it ended.

use crate::engine::constraint::{apply_mask, Constraint};
use crate::engine::logprobs::TokenLogprob;
use crate::engine::sampler::{top_k, Sampler};
use crate::engine::session::{FinishReason, GenerateOptions, Generation};
use crate::error::{Error, Result};
use crate::model::StepOutput;
use crate::text::tokenizer::Tokenizer;

/// One candidate's progress: its sampler, tokens, text and how much of it was streamed.
pub(super) struct Track {
    pub(super) sampler: Sampler,
    /// Prompt and generated ids (for the penalties).
    pub(super) history: Vec<u32>,
    pub(super) ids: Vec<u32>,
    pub(super) text: String,
    /// Bytes of text already passed to on_text.
    pub(super) emitted: usize,
    pub(super) stream: crate::text::tokenizer::TextStream,
    pub(super) top_logits: Vec<Vec<(u32, f32)>>,
    pub(super) logprobs: Vec<TokenLogprob>,
    /// Entries of logprobs already passed on with a piece.
    pub(super) logprobs_emitted: usize,
    /// The length of `text` in UTF-16 code units (for TokenLogprob::text_offset).
    pub(super) utf16_len: usize,
    pub(super) finish: Option<FinishReason>,
    /// Where it is in the request's grammar, if there is one.
    pub(super) constraint: Option<Constraint>,
    /// Tokens the grammar forced (take_forced).
    pub(super) forced: usize,
    /// The GPU chooses its tokens (argmax or draw); else the host's sampler does, from the logits.
    pub(super) chosen_on_gpu: bool,
}

impl Track {
    /// The finished track as a Generation of `prompt_ids` (its last `prefilled` run this time).
    pub(super) fn into_generation(
        self,
        prompt_ids: &[u32],
        prefilled: usize,
        prefill_ms: f64,
        decode_ms: f64,
    ) -> Generation {
        Generation {
            prompt_ids: prompt_ids.to_vec(),
            ids: self.ids,
            text: self.text,
            top_logits: self.top_logits,
            logprobs: self.logprobs,
            finish_reason: self.finish.unwrap_or(FinishReason::Length),
            forced: self.forced,
            prefilled,
            prefill_ms,
            decode_ms,
        }
    }

    /// Picks the next id from a step's output (under `mask`, its grammar's, where it has one) and
    /// appends it (push): streams the new text with the log-probabilities of the tokens since the
    /// last piece, and sets `finish` where it ends.
    pub(super) fn take(
        &mut self,
        out: &StepOutput,
        mask: Option<&[u32]>,
        opts: &GenerateOptions,
        tok: &Tokenizer,
        on_text: &mut dyn FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Result<()> {
        if let (true, Some(l)) = (opts.top_logits > 0, &out.logits) {
            self.top_logits.push(top_k(l, opts.top_logits));
        }
        // The GPU's choice stands where it chose (under the grammar's mask: it was masked there).
        let id = match (&out.logits, mask) {
            _ if self.chosen_on_gpu => out.id,
            (Some(l), Some(mask)) => {
                let mut masked = l.clone();
                apply_mask(mask, &mut masked);
                self.sampler.sample(&masked, &self.history)
            }
            (Some(l), None) => self.sampler.sample(l, &self.history),
            (None, _) => return Err(Error::Gpu("a sampled step came back without its logits".into())),
        };
        // The GPU's log-softmax: the argmax's log-probability, or a sampled id's from its logit.
        let logprob = out.logprobs.as_ref().map(|lp| {
            let logprob = match &out.logits {
                Some(l) if id != out.id => l[id as usize] - lp.lse,
                _ => lp.chosen,
            };
            (logprob, lp.top.clone())
        });
        self.push(id, logprob, opts, tok, on_text)
    }

    /// Appends the tokens the grammar forces now (as many as max_tokens leaves room for), each as
    /// a chosen one is, until one finishes the candidate.
    pub(super) fn take_forced(
        &mut self,
        opts: &GenerateOptions,
        tok: &Tokenizer,
        on_text: &mut dyn FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Result<()> {
        let (None, Some(c)) = (self.finish, self.constraint.as_mut()) else { return Ok(()) };
        let mut forced = c.forced();
        forced.truncate(opts.max_tokens.saturating_sub(self.ids.len()));
        for id in forced {
            self.push(id, None, opts, tok, on_text)?;
            self.forced += 1;
            if self.finish.is_some() {
                break;
            }
        }
        Ok(())
    }

    /// Appends `id` (with its log-probability and the step's top ones, where asked): ends at an
    /// end-of-generation id, else follows it in the grammar, streams the new text (holding back
    /// what may start a stop string) and ends at a stop string, an abort, the grammar's end or
    /// max_tokens.
    fn push(
        &mut self,
        id: u32,
        logprob: Option<(f32, Vec<(u32, f32)>)>,
        opts: &GenerateOptions,
        tok: &Tokenizer,
        on_text: &mut dyn FnMut(&str, &[TokenLogprob]) -> bool,
    ) -> Result<()> {
        if !opts.ignore_eos && tok.is_eog(id) {
            self.finish(FinishReason::Stop, on_text);
            return Ok(());
        }
        if let Some(c) = &mut self.constraint {
            c.consume(id)?;
        }
        if let Some((logprob, top)) = logprob {
            self.logprobs.push(TokenLogprob { id, logprob, top, text_offset: self.utf16_len });
        }
        self.ids.push(id);
        self.history.push(id);
        if let Some(piece) = tok.step(&mut self.stream, id)? {
            self.text.push_str(&piece);
            self.utf16_len += piece.encode_utf16().count();
            let found = opts.stop.iter().filter_map(|s| self.text[self.emitted..].find(s.as_str())).min();
            let upto = match found {
                Some(at) => self.emitted + at,
                None => self.text.len() - stop_prefix_len(&self.text[self.emitted..], &opts.stop),
            };
            let go_on = upto == self.emitted || self.emit(upto, on_text);
            if found.is_some() || !go_on {
                self.text.truncate(self.emitted);
                self.finish = Some(if found.is_some() { FinishReason::Stop } else { FinishReason::Abort });
                return Ok(());
            }
        }
        if self.constraint.as_ref().is_some_and(|c| c.is_done()) {
            self.finish(FinishReason::Stop, on_text);
        } else if self.ids.len() >= opts.max_tokens {
            self.finish(FinishReason::Length, on_text);
        }
        Ok(())
    }

    /// Passes on the text up to byte `upto` with the log-probabilities not yet passed on; false
    /// when the caller stops.
    fn emit(&mut self, upto: usize, on_text: &mut dyn FnMut(&str, &[TokenLogprob]) -> bool) -> bool {
        let go_on = on_text(&self.text[self.emitted..upto], &self.logprobs[self.logprobs_emitted..]);
        self.emitted = upto;
        self.logprobs_emitted = self.logprobs.len();
        go_on
    }

    /// Ends with `why`, first passing on text held back for a stop string that never came.
    fn finish(&mut self, why: FinishReason, on_text: &mut dyn FnMut(&str, &[TokenLogprob]) -> bool) {
        if self.emitted < self.text.len() {
            self.emit(self.text.len(), on_text);
        }
        self.finish = Some(why);
    }
}

/// The byte length of the longest suffix of `text` that begins some stop string (text held back
/// from streaming until it is known not to be the start of a stop string).
fn stop_prefix_len(text: &str, stop: &[String]) -> usize {
    let longest = stop.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut best = 0;
    for (at, _) in text.char_indices().rev().take_while(|(at, _)| text.len() - at < longest) {
        let tail = &text[at..];
        if stop.iter().any(|s| s.starts_with(tail)) {
            best = tail.len();
        }
    }
    best
}
