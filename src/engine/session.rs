//! Session: a model with its tokenizer and chat template; prefill, decode steps, sampling, stop at
//! end-of-generation, streamed text. Reuses the KV cache of a prompt's common prefix; tokens a
//! grammar forces go to the model in one batch.

use crate::engine::constraint::{Constraint, Grammar, Guide};
use crate::engine::logprobs::{TokenLogprob, MAX_TOP_LOGPROBS};
use crate::engine::sampler::{Sampler, SamplerConfig};
use crate::engine::tools;
use crate::engine::track::Track;
use crate::error::{Error, Result};
use crate::format::gguf::Gguf;
use crate::model::{ChoiceInputs, Model, StepOutput, Want, MAX_CANDIDATES};
use crate::text::chat::{ChatTemplate, Message, TemplateKwargs, TemplateVars, CHATML};
use crate::text::tokenizer::Tokenizer;
use std::sync::Arc;

/// Most stop strings a request may give, and most bytes in one: the text held back while it might
/// begin one is searched for each of them at every token.
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_BYTES: usize = 256;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Return the k highest logits of every step (0: none).
    pub top_logits: usize,
    /// Strings that end generation; the text before one is returned, the stop string is not.
    /// They may span tokens.
    pub stop: Vec<String>,
    /// What the output must match (each candidate follows it on its own); end-of-generation tokens
    /// are allowed only where it may end.
    pub grammar: Option<Grammar>,
    /// Report each generated token's log-probability and the k most likely tokens of its step
    /// (Some(k), k from 0 to MAX_TOP_LOGPROBS; None: none).
    pub logprobs: Option<usize>,
}

impl GenerateOptions {
    /// Checks the options (the sampler's settings, at least one token, stop strings neither empty
    /// nor past MAX_STOPS and MAX_STOP_BYTES): an InvalidRequest naming the first that is wrong.
    pub fn check(&self) -> Result<()> {
        self.sampler.check()?;
        if self.max_tokens == 0 {
            return Err(Error::InvalidRequest("max_tokens is 0: at least 1 token must be asked for".into()));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(Error::InvalidRequest("a stop string is empty".into()));
        }
        if self.stop.len() > MAX_STOPS {
            return Err(Error::InvalidRequest(format!("{} stop strings: at most {MAX_STOPS}", self.stop.len())));
        }
        if let Some((i, s)) = self.stop.iter().enumerate().find(|(_, s)| s.len() > MAX_STOP_BYTES) {
            return Err(Error::InvalidRequest(format!(
                "stop string {i} is {} bytes: at most {MAX_STOP_BYTES}",
                s.len()
            )));
        }
        if let Some(k) = self.logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
            return Err(Error::InvalidRequest(format!(
                "top_logprobs is {k}: at most {MAX_TOP_LOGPROBS} alternatives per token"
            )));
        }
        Ok(())
    }
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampler: SamplerConfig::default(),
            ignore_eos: false,
            top_logits: 0,
            stop: vec![],
            grammar: None,
            logprobs: None,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token.
    Stop,
    /// max_tokens reached.
    Length,
    /// The caller stopped it (on_text returned false).
    Abort,
}

impl FinishReason {
    /// OpenAI's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::Abort => "abort",
        }
    }
}

/// A piece of one candidate's streamed text, with the log-probabilities of the tokens taken since
/// its previous piece (when asked for).
pub struct Piece<'a> {
    pub index: usize,
    pub text: &'a str,
    pub logprobs: &'a [TokenLogprob],
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    /// Generated ids (an end-of-generation id that stopped it is not included).
    pub ids: Vec<u32>,
    pub text: String,
    /// Per step, the top (id, logit) pairs, when asked for.
    pub top_logits: Vec<Vec<(u32, f32)>>,
    /// Per generated id, its log-probability and the step's most likely tokens, when asked for.
    pub logprobs: Vec<TokenLogprob>,
    pub finish_reason: FinishReason,
    /// Of `ids`, the tokens the grammar forced: fed to the model in batches, no step of their own.
    pub forced: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    pub prefilled: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

impl Generation {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prefilled as f64 / (self.prefill_ms / 1000.0).max(1e-9)
    }
    /// Decode speed over the tokens after the first (the first comes out of prefill).
    pub fn decode_tok_s(&self) -> f64 {
        self.ids.len().saturating_sub(1) as f64 / (self.decode_ms / 1000.0).max(1e-9)
    }
}

/// Milliseconds from an arbitrary origin.
fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now).elapsed().as_secs_f64() * 1000.0
    }
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now()
    }
}

/// A loaded model ready to generate.
pub struct Session {
    pub model: Model,
    /// Shared with the grammar library's view of the vocabulary (Guide).
    pub tokenizer: Arc<Tokenizer>,
    pub template: ChatTemplate,
    /// Tokens whose keys and values are in the KV cache, in order.
    cached: Vec<u32>,
    /// The vocabulary as the grammar library sees it, made at the first constrained request.
    guide: Option<Guide>,
    /// What the template does with tools (four probe renders), found at the first chat.
    tool_caps: std::sync::OnceLock<tools::Caps>,
}

/// The text side of a model's file: its tokenizer (as many tokens as token_embd has rows) and its
/// chat template. Made from the header before the weights are uploaded, so that a file whose
/// vocabulary or template is refused is refused before its download, not after.
pub struct Text {
    tokenizer: Tokenizer,
    template: ChatTemplate,
}

impl Text {
    /// The tokenizer and chat template of `g`, whose token_embd has `vocab_size` rows.
    pub fn from_gguf(g: &Gguf, vocab_size: usize) -> Result<Text> {
        let tokenizer = Tokenizer::from_gguf(g)?;
        if tokenizer.vocab_size() != vocab_size {
            return Err(Error::BadConfig(format!(
                "the tokenizer has {} tokens but token_embd has {vocab_size} rows",
                tokenizer.vocab_size(),
            )));
        }
        let source = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).unwrap_or(CHATML);
        let tok_text = |id: Option<u32>| id.map(|i| tokenizer.tokens[i as usize].clone()).unwrap_or_default();
        let eos =
            g.opt_u64("tokenizer.ggml.eos_token_id")?.filter(|&i| i < tokenizer.vocab_size() as u64).map(|i| i as u32);
        let template = ChatTemplate::new(source, &tok_text(tokenizer.bos_id), &tok_text(eos))?;
        Ok(Text { tokenizer, template })
    }
}

impl Session {
    /// Wraps a built model with the tokenizer and chat template of its file.
    pub fn new(model: Model, g: &Gguf) -> Result<Session> {
        let text = Text::from_gguf(g, model.cfg.vocab_size)?;
        Ok(Session::with_text(model, text))
    }

    /// Wraps a built model with its file's text side (made before the upload).
    pub fn with_text(model: Model, text: Text) -> Session {
        Session {
            model,
            tokenizer: Arc::new(text.tokenizer),
            template: text.template,
            cached: vec![],
            guide: None,
            tool_caps: Default::default(),
        }
    }

    /// Loads a GGUF file from disk onto `gpu`, laid out for `layout` (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_file(
        gpu: std::sync::Arc<crate::gpu::Gpu>,
        layout: crate::gpu::Layout,
        path: &str,
        ctx: Option<usize>,
    ) -> Result<Session> {
        let (g, mut source) = crate::format::weights::open_model(path)?;
        let mut b = crate::model::ModelBuilder::new(gpu, layout, &g, ctx)?;
        let text = Text::from_gguf(&g, b.cfg.vocab_size)?;
        b.upload_all(&mut source)?;
        Ok(Session::with_text(b.finish()?, text))
    }

    /// The prompt ids for a chat (see ChatTemplate::prompt_ids).
    pub fn chat_ids(&self, messages: &[Message]) -> Result<Vec<u32>> {
        self.template.prompt_ids(&self.tokenizer, messages)
    }

    /// The prompt ids for a chat with `tools` and the request's chat_template_kwargs (see
    /// tools::chat_ids), the template's tool capabilities probed once per session.
    pub fn chat_ids_with(
        &self,
        messages: &[Message],
        tools: Option<&tools::Tools>,
        kwargs: &TemplateKwargs,
    ) -> Result<Vec<u32>> {
        let (messages, raw) = tools::prepare(&self.tool_caps(), &self.tokenizer, messages, tools)?;
        let vars = TemplateVars { tools: raw, kwargs: kwargs.clone() };
        self.template.prompt_ids_with(&self.tokenizer, &messages, &vars)
    }

    /// What the chat template does with tools (tools::caps), probed at the first call.
    pub fn tool_caps(&self) -> tools::Caps {
        *self.tool_caps.get_or_init(|| tools::caps(&self.template))
    }

    /// Forgets the KV cache.
    pub fn reset(&mut self) {
        self.cached.clear();
        self.model.truncate(0);
    }

    /// Generates from `prompt_ids`, calling `on_text` with each piece of text as it is made; it
    /// returns false to stop (finish reason Abort).
    pub async fn generate(
        &mut self,
        prompt_ids: &[u32],
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let mut all = self.generate_n(prompt_ids, 1, opts, &mut |_, t| on_text(t)).await?;
        Ok(all.remove(0))
    }

    /// Generates `n` candidates from one prompt: the prompt is prefilled once, then the candidates
    /// decode side by side, one weight pass per step for all of them (Model::candidates_step), each
    /// with its own sampler (sampler::candidate_seed), stop strings and finish reason. `on_text(index, piece)`
    /// streams each candidate's text; false stops them all (Abort).
    pub async fn generate_n(
        &mut self,
        prompt_ids: &[u32],
        n: usize,
        opts: &GenerateOptions,
        on_text: &mut dyn FnMut(usize, &str) -> bool,
    ) -> Result<Vec<Generation>> {
        self.generate_pieces(prompt_ids, n, opts, &mut |p| on_text(p.index, p.text)).await
    }

    /// generate_n, streaming Pieces: each piece of text with the log-probabilities of the tokens
    /// taken since its candidate's previous piece (opts.logprobs). Tokens after the last piece
    /// (ones that made no text) are only in the Generation's `logprobs`.
    pub async fn generate_pieces(
        &mut self,
        prompt_ids: &[u32],
        n: usize,
        opts: &GenerateOptions,
        on_piece: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<Vec<Generation>> {
        if prompt_ids.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        if n == 0 || n > MAX_CANDIDATES as usize {
            return Err(Error::InvalidRequest(format!(
                "n is {n}: between 1 and {MAX_CANDIDATES} candidates are supported"
            )));
        }
        opts.check()?;
        let vocab = self.model.cfg.vocab_size;
        if let Some(id) = opts.sampler.logit_bias.keys().filter(|&&id| id as usize >= vocab).min() {
            return Err(Error::InvalidRequest(format!(
                "logit_bias names token {id}, past the vocabulary (ids 0 to {})",
                vocab - 1
            )));
        }
        // The last token generated is never fed back: the prompt and the tokens before it are what
        // take positions.
        let needed = prompt_ids.len().saturating_add(opts.max_tokens.max(1) - 1);
        if needed > self.model.context_length() {
            return Err(Error::ContextFull { needed, limit: self.model.context_length() });
        }
        // Each candidate's grammar, compiled before any GPU work (a grammar refused is refused at once).
        let mut constraints: Vec<Option<Constraint>> = (0..n).map(|_| None).collect();
        if let Some(g) = &opts.grammar {
            if self.guide.is_none() {
                self.guide = Some(Guide::new(&self.tokenizer)?);
            }
            let guide = self.guide.as_ref().expect("made above");
            for c in constraints.iter_mut() {
                *c = Some(guide.constraint(g)?);
            }
        }
        if n > 1 {
            self.model.reserve_candidates(n as u32, opts.max_tokens.max(1) as u32).await?;
        }
        // Steps an earlier request queued ahead and never read are not wanted.
        self.model.forget_in_flight();
        // Reuse the cache for the longest common prefix; at least the last prompt token is run.
        // (A sliding-window model whose ring cache has lost that prefix's window starts over.)
        let common = self.cached.iter().zip(prompt_ids).take_while(|(a, b)| a == b).count().min(prompt_ids.len() - 1);
        let common = self.model.truncate(common);
        self.cached.truncate(common);
        // The GPU chooses the tokens (the argmax, or a draw under temperature, top-k, top-p and
        // min-p; after the logit bias and penalties where set; under the grammar's mask where there
        // is one) and reports log-probabilities; the logits come back only for top_logits or a
        // sampler on the CPU (Layout::gpu_sampler off, and not plain greedy).
        let edits = opts.sampler.logit_edits();
        let on_gpu = self.model.layout().gpu_sampler || (opts.sampler.is_greedy() && edits.is_none());
        if let (true, Some(e)) = (on_gpu, &edits) {
            self.model.set_logit_edits(e)?;
        }
        let want = Want {
            logits: opts.top_logits > 0 || !on_gpu,
            masked: opts.grammar.is_some() && on_gpu,
            logprobs: opts.logprobs,
            sample: (on_gpu && !opts.sampler.is_greedy()).then(|| opts.sampler.gpu_settings()),
            edit: on_gpu && edits.is_some(),
        };
        let mut tracks: Vec<Track> = constraints
            .into_iter()
            .enumerate()
            .map(|(c, constraint)| Track {
                sampler: Sampler::new(SamplerConfig {
                    seed: crate::engine::sampler::candidate_seed(opts.sampler.seed, c),
                    ..opts.sampler.clone()
                }),
                history: prompt_ids.to_vec(),
                ids: vec![],
                text: String::new(),
                emitted: 0,
                stream: self.tokenizer.stream(),
                top_logits: vec![],
                logprobs: vec![],
                logprobs_emitted: 0,
                utf16_len: 0,
                finish: None,
                constraint,
                forced: 0,
                chosen_on_gpu: on_gpu,
            })
            .collect();
        // [n, mask_words] each candidate's allowed tokens (all, where it has no grammar).
        let words = self.model.mask_words();
        let mut masks = vec![u32::MAX; n * words];
        let t0 = now_ms();
        // Tokens a grammar forces before anything is chosen (the same for every candidate) join the
        // prompt's batch. Not where each token's logits or log-probabilities are asked for: forced
        // ones have none.
        let force = opts.grammar.is_some() && opts.logprobs.is_none() && opts.top_logits == 0;
        if force {
            for (c, t) in tracks.iter_mut().enumerate() {
                t.take_forced(opts, &self.tokenizer, &mut |text, logprobs| {
                    on_piece(Piece { index: c, text, logprobs })
                })?;
            }
            if tracks.iter().any(|t| t.finish.is_some()) {
                // They end together (one grammar, one start), an abort with them: nothing to run.
                let end = tracks.iter().find_map(|t| t.finish);
                return Ok(tracks
                    .into_iter()
                    .map(|mut t| {
                        t.finish = t.finish.or(end);
                        t.into_generation(prompt_ids, 0, 0.0, 0.0)
                    })
                    .collect());
            }
        }
        let lead = tracks[0].ids.clone();
        self.model.start_prefill(&[&prompt_ids[common..], &lead[..]].concat())?;
        if n == 1 && !want.masked && !want.logits {
            let track = tracks.pop().expect("one track");
            return self.decode_chained(prompt_ids, common, opts, want, track, t0, on_piece).await;
        }
        let mut outs = choose(&mut self.model, &mut tracks, &mut masks, want, 1).await?;
        self.cached.extend_from_slice(&prompt_ids[common..]);
        self.cached.extend_from_slice(&lead);
        let t1 = now_ms();
        // One candidate under a grammar takes the tokens it forces after each one chosen, and the
        // model reads them all in one batch (a prompt chunk) rather than a decode step each (n > 1:
        // each candidate's row is one position a step).
        let force = force && n == 1;
        // n candidates chosen on the GPU with nothing but ids read back: from their second step on,
        // each step is queued before the previous step's ids are read back (its inputs those ids,
        // where the previous step's choice left them on the GPU).
        let chain = n > 1 && !want.masked && !want.logits;
        let mut step = 0;
        loop {
            let fed = tracks[0].ids.len();
            for (c, t) in tracks.iter_mut().enumerate() {
                if t.finish.is_none() {
                    // Every candidate starts from the prompt's one row (each with its own draw
                    // where sampled on the GPU).
                    let out = outs.get(c).unwrap_or(&outs[0]);
                    let mask = t.constraint.is_some().then(|| &masks[c * words..(c + 1) * words]);
                    let mut on_text =
                        |text: &str, logprobs: &[TokenLogprob]| on_piece(Piece { index: c, text, logprobs });
                    t.take(out, mask, opts, &self.tokenizer, &mut on_text)?;
                    if force {
                        t.take_forced(opts, &self.tokenizer, &mut on_text)?;
                    }
                }
            }
            if tracks.iter().any(|t| t.finish == Some(FinishReason::Abort)) {
                tracks.iter_mut().filter(|t| t.finish.is_none()).for_each(|t| t.finish = Some(FinishReason::Abort));
            }
            if tracks.iter().all(|t| t.finish.is_some()) {
                break;
            }
            if n == 1 {
                // The token chosen, and any the grammar forced after it.
                let new = tracks[0].ids[fed..].to_vec();
                match new[..] {
                    [id] => self.model.start_step(id)?,
                    _ => self.model.start_prefill(&new)?,
                }
                submit_choice(&mut self.model, &mut tracks, &mut masks, want, n)?;
                // Cached once their step is submitted (a mask that failed leaves them unwritten).
                self.cached.extend_from_slice(&new);
            } else if !chain || step == 0 {
                // Finished candidates keep their row (fed their last token) so that rows stay in place.
                let feed: Vec<u32> = tracks.iter().map(|t| *t.ids.last().unwrap_or(&0)).collect();
                self.model.start_candidates(&feed, step)?;
                submit_choice(&mut self.model, &mut tracks, &mut masks, want, n)?;
            }
            // Step `step` gives each candidate's token step + 1: step + 1 may be needed if step + 2
            // is under max_tokens. (A finished candidate's row runs on, unread.)
            if chain && step + 2 < opts.max_tokens {
                self.model.start_candidates_chained(n as u32, step + 1)?;
                submit_choice(&mut self.model, &mut tracks, &mut masks, want, n)?;
            }
            outs = self.model.collect().await?;
            step += 1;
        }
        // A step queued past the end is not wanted.
        self.model.forget_in_flight();
        let decode_ms = now_ms() - t1;
        Ok(tracks
            .into_iter()
            .map(|t| t.into_generation(prompt_ids, prompt_ids.len() - common, t1 - t0, decode_ms))
            .collect())
    }
}

impl Session {
    /// The rest of generate_pieces for one greedy candidate chosen on the GPU with nothing read back
    /// but ids (and log-probabilities): each step is queued before the previous step's id is read
    /// back, its input that id where the previous step's choice left it on the GPU, so the GPU never
    /// waits on the host. The step queued past the end is dropped from the KV cache.
    #[allow(clippy::too_many_arguments)]
    async fn decode_chained(
        &mut self,
        prompt_ids: &[u32],
        common: usize,
        opts: &GenerateOptions,
        want: Want,
        mut t: Track,
        t0: f64,
        on_piece: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<Vec<Generation>> {
        // A step's draw, and the tokens so far for the logit edits (not yet a chained step's input).
        let draw = |t: &mut Track| want.sample.map(|_| t.sampler.draw());
        let r = draw(&mut t);
        self.model.submit_one(want, r, &t.history)?;
        // Steps submitted (the prompt's last chunk first); each gives one token, max_tokens at most.
        let mut submitted = 1;
        let mut t1 = None;
        loop {
            if submitted < opts.max_tokens {
                self.model.start_step_chained()?;
                let r = draw(&mut t);
                self.model.submit_one(want, r, &t.history)?;
                submitted += 1;
            }
            let out = self.model.collect().await?.remove(0);
            if t1.is_none() {
                self.cached.extend_from_slice(&prompt_ids[common..]);
                t1 = Some(now_ms());
            }
            t.take(&out, None, opts, &self.tokenizer, &mut |text, logprobs| {
                on_piece(Piece { index: 0, text, logprobs })
            })?;
            if t.finish.is_some() {
                break;
            }
            // The id the step already queued was fed.
            self.cached.push(*t.ids.last().expect("take appended an id"));
        }
        self.model.forget_in_flight();
        let kept = self.model.truncate(self.cached.len());
        self.cached.truncate(kept);
        let t1 = t1.expect("one step was collected");
        Ok(vec![t.into_generation(prompt_ids, prompt_ids.len() - common, t1 - t0, now_ms() - t1)])
    }
}

/// Finishes the step `model` started for `rows` rows (submit_choice) and collects it.
async fn choose(
    model: &mut Model,
    tracks: &mut [Track],
    masks: &mut [u32],
    want: Want,
    rows: usize,
) -> Result<Vec<StepOutput>> {
    submit_choice(model, tracks, masks, want, rows)?;
    model.collect().await
}

/// Submits the step `model` started for `rows` rows: each unfinished constrained track's mask into
/// its row of `masks` ([tracks, mask_words]), where the GPU samples each unfinished track's uniform
/// draw (one choice per track), and each track's history for the logit edits; then the GPU's
/// choice and readback in the step's one submit.
fn submit_choice(model: &mut Model, tracks: &mut [Track], masks: &mut [u32], want: Want, rows: usize) -> Result<()> {
    let words = model.mask_words();
    for (t, row) in tracks.iter_mut().zip(masks.chunks_mut(words)) {
        if let (Some(c), None) = (&mut t.constraint, t.finish) {
            c.fill_mask(row)?;
        }
    }
    let (choices, draws) = match want.sample {
        Some(_) => {
            let draws: Vec<f32> =
                tracks.iter_mut().map(|t| if t.finish.is_none() { t.sampler.draw() } else { 0.0 }).collect();
            (tracks.len(), draws)
        }
        None => (rows, vec![]),
    };
    let masks = if want.masked { &masks[..choices * words] } else { &[] };
    let histories: Vec<&[u32]> =
        if want.edit { tracks.iter().take(choices).map(|t| &t.history[..]).collect() } else { vec![] };
    model.submit(want, ChoiceInputs { masks, draws: &draws, histories: &histories })
}
