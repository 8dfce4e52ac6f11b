//! Builds a `tokenizers::Tokenizer` from the tokenizer.ggml.* metadata of a GGUF file
//! (gpt2-style byte-level BPE with the pre-tokenizer that tokenizer.ggml.pre names), and decodes
//! generated ids as a stream that never emits half a UTF-8 character.

use crate::error::{Error, Result};
use crate::gguf::Gguf;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// llama.cpp's token types (tokenizer.ggml.token_type).
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// GPT-2's split, as llama.cpp writes it.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// A model's tokenizer plus the special ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence id, when the vocabulary has one.
    pub bos_id: Option<u32>,
    /// Whether encode() with specials prepends bos (tokenizer.ggml.add_bos_token).
    pub add_bos: bool,
    /// Ids that end generation (eos, eot, eom, and control tokens named like <|im_end|>).
    pub eog_ids: Vec<u32>,
    /// Text of each token id that is a control token, for prompts and templates.
    pub tokens: Vec<String>,
}

impl Tokenizer {
    /// Builds the tokenizer described by the file's tokenizer.ggml.* keys.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.get_str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Tokenizer(format!(
                "tokenizer.ggml.model {model:?} is not supported yet (supported: \"gpt2\" byte-level BPE)"
            )));
        }
        let tokens: Vec<String> = g
            .get_array("tokenizer.ggml.tokens")?
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_str().map(str::to_string).ok_or_else(|| Error::Tokenizer(format!("token {i} is not a string"))))
            .collect::<Result<_>>()?;
        let types: Vec<i128> = match g.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => g.get_array("tokenizer.ggml.token_type")?.iter().map(|v| v.as_i128().unwrap_or(1)).collect(),
        };
        if types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!("{} token types for {} tokens", types.len(), tokens.len())));
        }
        let merges: Vec<(String, String)> = g
            .get_array("tokenizer.ggml.merges")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let s = v.as_str().ok_or_else(|| Error::Tokenizer(format!("merge {i} is not a string")))?;
                let (a, b) = s.split_once(' ').ok_or_else(|| Error::Tokenizer(format!("merge {i} {s:?} has no space")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<_>>()?;
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| Error::Tokenizer(format!("building BPE: {e}")))?;
        let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let mut specials = vec![];
        let mut user = vec![];
        for (t, &ty) in tokens.iter().zip(&types) {
            match ty {
                TOKEN_TYPE_CONTROL => specials.push(AddedToken::from(t.clone(), true)),
                TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(t.clone(), false)),
                _ => {}
            }
        }
        inner.add_special_tokens(specials).map_err(|e| Error::Tokenizer(format!("adding control tokens: {e}")))?;
        inner.add_tokens(user).map_err(|e| Error::Tokenizer(format!("adding user-defined tokens: {e}")))?;
        let id_key = |key: &str| -> Result<Option<u32>> {
            match g.opt_u64(key)? {
                Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
                Some(id) => Err(Error::Tokenizer(format!("{key} is {id}, past the {} tokens", tokens.len()))),
                None => Ok(None),
            }
        };
        let bos_id = id_key("tokenizer.ggml.bos_token_id")?;
        let mut eog_ids = vec![];
        for key in ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"] {
            eog_ids.extend(id_key(key)?);
        }
        // As llama.cpp does: control tokens whose text marks an end of turn or of text also end generation.
        for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
            let eog_text = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"];
            if ty == TOKEN_TYPE_CONTROL && eog_text.contains(&t.as_str()) {
                eog_ids.push(i as u32);
            }
        }
        eog_ids.sort_unstable();
        eog_ids.dedup();
        let add_bos = g.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false) && bos_id.is_some();
        Ok(Tokenizer { inner, bos_id, add_bos, eog_ids, tokens })
    }

    /// Token ids of `text`. With `parse_special`, control-token strings such as `<|im_start|>` become
    /// their ids (as llama.cpp's parse_special); bos is prepended when the model asks for it.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = vec![];
        if self.add_bos {
            ids.extend(self.bos_id);
        }
        if text.is_empty() {
            return Ok(ids);
        }
        let enc = if parse_special {
            self.inner.encode_fast(text, false)
        } else {
            let mut plain = self.inner.clone();
            plain.set_encode_special_tokens(true);
            plain.encode_fast(text, false)
        }
        .map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer(format!("decoding: {e}")))
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog_ids.contains(&id)
    }

    /// A new streaming decoder for generated ids.
    pub fn stream(&self) -> TextStream {
        TextStream { ids: vec![], prefix: String::new(), prefix_index: 0 }
    }

    /// Feeds one id to `stream`, returning the text it completes (None while a UTF-8 character is
    /// still partial).
    pub fn step(&self, stream: &mut TextStream, id: u32) -> Result<Option<String>> {
        tokenizers::tokenizer::step_decode_stream(
            &self.inner,
            vec![id],
            false,
            &mut stream.ids,
            &mut stream.prefix,
            &mut stream.prefix_index,
        )
        .map_err(|e| Error::Tokenizer(format!("stream decoding: {e}")))
    }
}

/// State of a streaming decode: the ids since the last emitted text.
pub struct TextStream {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` = `name`.
fn pre_tokenizer(name: &str) -> Result<PreTokenizerWrapper> {
    let split = |re: &str| -> Result<PreTokenizerWrapper> {
        Split::new(SplitPattern::Regex(re.to_string()), SplitDelimiterBehavior::Isolated, false)
            .map(PreTokenizerWrapper::Split)
            .map_err(|e| Error::Tokenizer(format!("pre-tokenizer regex: {e}")))
    };
    let byte_level = PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false));
    Ok(match name {
        // GPT-2's split on bytes mapped to printable characters.
        "default" | "gpt-2" | "gpt2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(GPT2_SPLIT)?, byte_level])),
        // Every digit its own piece, then GPT-2's split (llama.cpp: STARCODER, SMOLLM, REFACT, ...).
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(r"\p{N}")?, split(GPT2_SPLIT)?, byte_level]))
        }
        other => {
            return Err(Error::Tokenizer(format!(
                "pre-tokenizer {other:?} (tokenizer.ggml.pre) is not supported yet (supported: default, gpt2, smollm, starcoder, refact, codeshell)"
            )))
        }
    })
}
