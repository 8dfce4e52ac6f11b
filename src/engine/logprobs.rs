//! Log-probabilities of generated tokens (OpenAI's logprobs): the log-softmax of a step's raw
//! logits over the whole vocabulary, for the chosen token and the k most likely, and their JSON.

use crate::engine::sampler::top_k;
use crate::text::tokenizer::Tokenizer;

/// The most alternatives `logprobs` may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: usize = crate::kernels::TOP_LOGPROBS as usize;

/// A generated token's log-probability and the most likely tokens of its step: the log-softmax of
/// the model's raw logits over the whole vocabulary (before penalties, temperature, truncation or a
/// grammar's mask).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    pub id: u32,
    pub logprob: f32,
    /// The k most likely (id, logprob) of the step, most likely first (k as asked for).
    pub top: Vec<(u32, f32)>,
    /// Where the token's text begins in the generation's text, in UTF-16 code units (a JS string's
    /// index; a token that ends inside a character counts from where that character begins).
    pub text_offset: usize,
}

/// The log-probabilities of step `logits` (raw): `id`'s and the k most likely.
pub fn token_logprob(logits: &[f32], id: u32, k: usize, text_offset: usize) -> TokenLogprob {
    let max = logits.iter().copied().filter(|l| l.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|l| l.is_finite()).map(|&l| ((l - max) as f64).exp()).sum();
    let lse = max + sum.ln() as f32;
    let logprob = logits.get(id as usize).map_or(f32::NEG_INFINITY, |&l| l - lse);
    let top = top_k(logits, k).into_iter().map(|(i, l)| (i, l - lse)).collect();
    TokenLogprob { id, logprob, top, text_offset }
}

/// The bytes of token `id`'s text (a control token's own text, e.g. `<|im_end|>`).
pub fn token_bytes(tok: &Tokenizer, id: u32) -> Vec<u8> {
    let b = tok.token_bytes(id);
    match b.split_first() {
        // token_bytes marks a control token with a leading 0xFF (no UTF-8 text has that byte).
        Some((0xFF, rest)) if rest == tok.tokens[id as usize].as_bytes() => rest.to_vec(),
        _ => b,
    }
}

/// Every token's bytes, by id (for logprobs_json where the tokenizer is not at hand).
pub fn vocab_bytes(tok: &Tokenizer) -> Vec<Vec<u8>> {
    (0..tok.vocab_size() as u32).map(|id| token_bytes(tok, id)).collect()
}

/// `lps` as JSON, with each token's bytes from `vocab` (vocab_bytes): [{id, token, bytes, logprob,
/// text_offset, top_logprobs: [{id, token, bytes, logprob}]}] (a token's string is its bytes as
/// UTF-8, invalid sequences replaced).
pub fn logprobs_json(vocab: &[Vec<u8>], lps: &[TokenLogprob]) -> serde_json::Value {
    let entry = |id: u32, logprob: f32| {
        let bytes: &[u8] = vocab.get(id as usize).map_or(&[], |b| b);
        serde_json::json!({ "id": id, "token": String::from_utf8_lossy(bytes), "bytes": bytes, "logprob": logprob })
    };
    lps.iter()
        .map(|lp| {
            let mut e = entry(lp.id, lp.logprob);
            e["text_offset"] = lp.text_offset.into();
            e["top_logprobs"] = lp.top.iter().map(|&(id, l)| entry(id, l)).collect();
            e
        })
        .collect()
}
