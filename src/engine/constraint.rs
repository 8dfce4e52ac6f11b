//! Constrained decoding: a grammar (a JSON schema, any JSON object, Lark, a regex) compiled by
//! llguidance over the model's vocabulary; each candidate's Constraint says which tokens may come
//! next (its mask, applied where the token is chosen), which tokens the grammar forces (fed to the
//! model in one batch instead of a step each), and follows the tokens chosen.

use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;
use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// What the output must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (response_format json_object).
    JsonObject,
    /// A JSON schema (response_format json_schema).
    JsonSchema(serde_json::Value),
    /// A Lark grammar (llguidance's dialect).
    Lark(String),
    /// A regular expression the whole output matches.
    Regex(String),
}

impl Grammar {
    fn top_level(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(serde_json::json!({ "type": "object" })),
            Grammar::JsonSchema(s) => TopLevelGrammar::from_json_schema(s.clone()),
            Grammar::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Grammar::Regex(r) => TopLevelGrammar::from_regex(r),
        }
    }
}

/// The vocabulary for llguidance: each token's bytes (the trie) and the model's own tokenizer, so
/// that the bytes a grammar forces are tokenized as the model's tokenizer does (llguidance forces
/// tokens only with a canonical tokenizer).
struct Vocab {
    trie: TokTrie,
    tok: Arc<Tokenizer>,
}

impl TokenizerEnv for Vocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// The ids of `s` where it continues a text; none (nothing forced) for bytes that are not UTF-8
    /// or that the tokenizer refuses.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        std::str::from_utf8(s).ok().and_then(|t| self.tok.encode_continuation(t).ok()).unwrap_or_default()
    }
}

/// The vocabulary as llguidance sees it (built once per model): its token trie and parser factory.
pub struct Guide {
    factory: ParserFactory,
    /// Ids that end generation: all allowed wherever the grammar allows its end.
    eog_ids: Vec<u32>,
    eos: u32,
}

impl Guide {
    /// Builds the token trie of `tok`'s vocabulary (each token's bytes) and the parser factory.
    pub fn new(tok: &Arc<Tokenizer>) -> Result<Guide> {
        let words: Vec<Vec<u8>> = (0..tok.vocab_size() as u32).map(|id| tok.token_bytes(id)).collect();
        trie_fits(&words)?;
        let eos = *tok.eog_ids.first().ok_or_else(|| {
            Error::InvalidRequest("the model has no end-of-generation token, so no grammar can end".into())
        })?;
        let info = TokRxInfo {
            vocab_size: words.len() as u32,
            tok_eos: eos,
            tok_bos: tok.bos_id,
            tok_pad: None,
            tok_unk: None,
            tok_end_of_turn: None,
        };
        let env: toktrie::TokEnv = Arc::new(Vocab { trie: TokTrie::from(&info, &words), tok: tok.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| grammar_err(&e.to_string()))?;
        factory.set_stderr_log_level(0);
        Ok(Guide { factory, eog_ids: tok.eog_ids.clone(), eos })
    }

    /// A constraint that starts at the beginning of `grammar`: an InvalidRequest naming why the
    /// library refuses the grammar.
    pub fn constraint(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self.factory.create_parser(grammar.top_level()).map_err(|e| grammar_err(&e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(grammar_err(&e));
        }
        Ok(Constraint { matcher, eog_ids: self.eog_ids.clone(), eos: self.eos })
    }
}

/// Longest token (in bytes, a special token's marker byte included) and most bytes in all that
/// llguidance's token trie holds (toktrie: 10 bits of parents a node, 22 of subtree size); it
/// asserts past them, so a vocabulary over either is refused by name first.
pub const TRIE_TOKEN_BYTES_MAX: usize = 1023;
pub const TRIE_BYTES_MAX: usize = 4_000_000;

fn trie_fits(words: &[Vec<u8>]) -> Result<()> {
    if let Some((id, w)) = words.iter().enumerate().find(|(_, w)| w.len() > TRIE_TOKEN_BYTES_MAX) {
        return Err(Error::Tokenizer(format!(
            "token {id} is {} bytes: grammars and tool calls take tokens of at most {TRIE_TOKEN_BYTES_MAX}",
            w.len()
        )));
    }
    let total: usize = words.iter().map(Vec::len).sum();
    if total > TRIE_BYTES_MAX {
        return Err(Error::Tokenizer(format!(
            "the vocabulary's tokens are {total} bytes in all: grammars and tool calls take at most {TRIE_BYTES_MAX}"
        )));
    }
    Ok(())
}

fn grammar_err(msg: &str) -> Error {
    Error::InvalidRequest(format!("the grammar or schema: {msg}"))
}

/// One candidate's place in its grammar.
pub struct Constraint {
    matcher: Matcher,
    eog_ids: Vec<u32>,
    eos: u32,
}

impl Constraint {
    /// Writes the tokens the grammar allows next into `words` (bit i % 32 of word i / 32 is token i;
    /// ceil(vocabulary / 32) words), straight from llguidance's bitmask: every end-of-generation
    /// token is allowed exactly where the grammar may end.
    pub fn fill_mask(&mut self, words: &mut [u32]) -> Result<()> {
        let allowed = self.matcher.compute_mask_or_eos().map_err(|e| grammar_err(&e.to_string()))?;
        let may_end = allowed.is_allowed(self.eos);
        let from = allowed.as_slice();
        let n = from.len().min(words.len());
        words[..n].copy_from_slice(&from[..n]);
        words[n..].fill(0);
        for &id in &self.eog_ids {
            if let Some(w) = words.get_mut(id as usize / 32) {
                let bit = 1 << (id % 32);
                *w = if may_end { *w | bit } else { *w & !bit };
            }
        }
        Ok(())
    }

    /// Follows the token chosen (an end-of-generation token ends it).
    pub fn consume(&mut self, id: u32) -> Result<()> {
        let id = if self.eog_ids.contains(&id) { self.eos } else { id };
        self.matcher.consume_token(id).map_err(|e| grammar_err(&e.to_string()))
    }

    /// The tokens the grammar forces next (llguidance's fast-forward tokens: its forced bytes as
    /// the tokenizer makes them, less a tail a longer token could still take), not yet followed.
    pub fn forced(&mut self) -> Vec<u32> {
        self.matcher.compute_ff_tokens()
    }

    /// Whether the grammar is complete and allows nothing more.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Sets the logits of the tokens `words` (a mask from Constraint::fill_mask) does not allow to -inf.
pub fn apply_mask(words: &[u32], logits: &mut [f32]) {
    for (chunk, &w) in logits.chunks_mut(32).zip(words) {
        if w == u32::MAX {
            continue;
        }
        for (b, l) in chunk.iter_mut().enumerate() {
            if w & (1 << b) == 0 {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}
