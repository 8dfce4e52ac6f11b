//! Token choice from logits: logit bias and repetition penalties (llama.cpp semantics), then greedy,
//! or temperature with top-k / top-p / min-p over a seeded RNG, so the same seed gives the same
//! text on every platform.

use crate::model::{LogitEdits, SampleSettings};
use std::collections::HashMap;

/// Sampling settings. temperature 0 means greedy (after bias and penalties).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplerConfig {
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of tokens seen in the last `penalty_last_n` by this (1: off).
    pub repetition_penalty: f32,
    /// Subtract count x frequency_penalty from the logit of each token seen in the window.
    pub frequency_penalty: f32,
    /// Subtract presence_penalty from the logit of each token seen in the window.
    pub presence_penalty: f32,
    /// How many of the last tokens (prompt included) the penalties look at.
    pub penalty_last_n: usize,
    /// Added to the logits of these ids.
    pub logit_bias: HashMap<u32, f32>,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: HashMap::new(),
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks every setting is finite and in its range (OpenAI's where it has one): an
    /// InvalidRequest naming the first that is not.
    pub fn check(&self) -> crate::error::Result<()> {
        let bad = |name: &str, v: f32, range: &str| {
            Err(crate::error::Error::InvalidRequest(format!("{name} is {v}: it must be a finite number {range}")))
        };
        let within = |v: f32, lo: f32, hi: f32| v.is_finite() && v >= lo && v <= hi;
        if !within(self.temperature, 0.0, 100.0) {
            return bad("temperature", self.temperature, "from 0 to 100");
        }
        if !within(self.top_p, 0.0, 1.0) {
            return bad("top_p", self.top_p, "from 0 to 1");
        }
        if !within(self.min_p, 0.0, 1.0) {
            return bad("min_p", self.min_p, "from 0 to 1");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0 && self.repetition_penalty <= 100.0) {
            return bad("repetition_penalty", self.repetition_penalty, "over 0, at most 100");
        }
        if !within(self.frequency_penalty, -2.0, 2.0) {
            return bad("frequency_penalty", self.frequency_penalty, "from -2 to 2");
        }
        if !within(self.presence_penalty, -2.0, 2.0) {
            return bad("presence_penalty", self.presence_penalty, "from -2 to 2");
        }
        if let Some((id, &b)) = self.logit_bias.iter().find(|(_, b)| !within(**b, -100.0, 100.0)) {
            return bad(&format!("logit_bias of token {id}"), b, "from -100 to 100");
        }
        Ok(())
    }

    /// Whether the choice is the plain argmax (after bias and penalties).
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
    /// Whether the logits are changed before the choice.
    pub fn edits_logits(&self) -> bool {
        self.penalizes() || !self.logit_bias.is_empty()
    }
    /// Whether a repetition, frequency or presence penalty is set.
    pub fn penalizes(&self) -> bool {
        self.repetition_penalty != 1.0 || self.frequency_penalty != 0.0 || self.presence_penalty != 0.0
    }
    /// The GPU sampler's settings (temperature, top-k, top-p, min-p).
    pub fn gpu_settings(&self) -> SampleSettings {
        SampleSettings {
            temperature: self.temperature,
            top_k: self.top_k.min(u32::MAX as usize) as u32,
            top_p: self.top_p,
            min_p: self.min_p,
        }
    }
    /// The bias and penalties for the GPU to apply (kernels::edit_logits), where any is set.
    pub fn logit_edits(&self) -> Option<LogitEdits> {
        if !self.edits_logits() {
            return None;
        }
        let mut bias: Vec<(u32, f32)> = self.logit_bias.iter().map(|(&id, &b)| (id, b)).collect();
        bias.sort_by_key(|b| b.0);
        Some(LogitEdits {
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            // No window where no penalty would change a logit.
            penalty_last_n: if self.penalizes() { self.penalty_last_n } else { 0 },
            bias,
        })
    }
}

/// A sampler with its RNG state.
pub struct Sampler {
    pub cfg: SamplerConfig,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Sampler {
        let rng = SplitMix64(cfg.seed);
        Sampler { cfg, rng }
    }

    /// Logit bias, then the repetition, frequency and presence penalties over the last
    /// penalty_last_n of `history` (llama.cpp's order and formulas), in place.
    pub fn apply_penalties(&self, logits: &mut [f32], history: &[u32]) {
        let c = &self.cfg;
        for (&id, &b) in &c.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += b;
            }
        }
        if !c.penalizes() {
            return;
        }
        let window = &history[history.len().saturating_sub(c.penalty_last_n)..];
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in window {
            *counts.entry(t).or_default() += 1;
        }
        for (&id, &n) in &counts {
            let Some(l) = logits.get_mut(id as usize) else { continue };
            if *l > 0.0 {
                *l /= c.repetition_penalty;
            } else {
                *l *= c.repetition_penalty;
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// The candidates that survive temperature, top-k, top-p and min-p, with their probabilities
    /// (descending), from logits already biased and penalized.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let c = &self.cfg;
        let mut cand: Vec<(u32, f32)> =
            logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l)).collect();
        cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        if c.top_k > 0 {
            cand.truncate(c.top_k);
        }
        if cand.is_empty() {
            return cand;
        }
        let t = c.temperature.max(1e-6);
        let max = cand[0].1;
        // Sums in f64: a running f32 sum over 49k-152k tokens drifts by ~1e-3 by its end.
        let mut probs: Vec<f32> = cand.iter().map(|x| ((x.1 - max) / t).exp()).collect();
        let sum: f64 = probs.iter().map(|&p| p as f64).sum();
        probs.iter_mut().for_each(|p| *p = (*p as f64 / sum) as f32);
        let mut keep = probs.len();
        if c.top_p < 1.0 {
            let mut acc = 0.0f64;
            for (i, &p) in probs.iter().enumerate() {
                acc += p as f64;
                if acc >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
        }
        if c.min_p > 0.0 {
            let floor = c.min_p * probs[0];
            keep = keep.min(probs.iter().take_while(|&&p| p >= floor).count().max(1));
        }
        probs.truncate(keep);
        let s: f64 = probs.iter().map(|&p| p as f64).sum();
        cand.into_iter().zip(probs).map(|((id, _), p)| (id, (p as f64 / s) as f32)).collect()
    }

    /// Picks the next token from `logits` given the tokens so far (`history`, prompt included).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        let mut l = logits.to_vec();
        self.apply_penalties(&mut l, history);
        if self.cfg.is_greedy() {
            return argmax(&l);
        }
        let cand = self.candidates(&l);
        pick(&cand, self.draw())
    }

    /// The next uniform draw in [0, 1) of the seeded generator: one per sampled token, whether
    /// the CPU (`sample`) or the GPU (kernels::sample) picks it.
    pub fn draw(&mut self) -> f32 {
        self.rng.next_f32()
    }
}

/// The candidate (from `Sampler::candidates`, most likely first) where the running probability
/// first passes the uniform draw r (the last where rounding leaves none).
pub fn pick(candidates: &[(u32, f32)], r: f32) -> u32 {
    let mut acc = 0.0f64;
    for &(id, p) in candidates {
        acc += p as f64;
        if (r as f64) < acc {
            return id;
        }
    }
    candidates.last().map_or(0, |c| c.0)
}

/// The k largest (id, logit) pairs, largest first (lower id first on ties).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut cand: Vec<(u32, f32)> = logits.iter().enumerate().map(|(i, &l)| (i as u32, l)).collect();
    let k = k.min(cand.len());
    if k == 0 {
        return vec![];
    }
    cand.select_nth_unstable_by(k - 1, |a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cand.truncate(k);
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    cand
}

/// The seed of candidate `index` of a request seeded `seed`: the seed itself for the first (n = 1
/// draws as candidate 0 of n), a mix of both for the others, so that no candidate of one seed
/// repeats one of the next seed's (seed + index did: candidate 1 of seed s was candidate 0 of s + 1).
pub fn candidate_seed(seed: u64, index: usize) -> u64 {
    if index == 0 {
        return seed;
    }
    SplitMix64(seed ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// SplitMix64: a small, portable, seedable generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The index of the largest logit (the first one on ties, as the GPU's argmax kernel picks; NaN
/// passed over, as there too). Where every logit is NaN: 0 (the GPU's choice is an error there).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best: Option<usize> = None;
    for (i, &v) in logits.iter().enumerate() {
        if !v.is_nan() && best.is_none_or(|b| v > logits[b]) {
            best = Some(i);
        }
    }
    best.unwrap_or(0) as u32
}
