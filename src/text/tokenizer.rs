//! Builds a `tokenizers::Tokenizer` from the tokenizer.ggml.* metadata of a GGUF file: gpt2-style
//! byte-level BPE with the pre-tokenizer that tokenizer.ggml.pre names, or the SentencePiece-style
//! llama vocabulary (BPE over scores, byte fallback, the leading-space rule), with llama.cpp's
//! handling of special tokens; decodes generated ids as a stream that never emits half a UTF-8 character.

use crate::error::{Error, Result};
use crate::format::gguf::Gguf;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior};

/// llama.cpp's token types (tokenizer.ggml.token_type).
const TOKEN_TYPE_UNKNOWN: i128 = 2;
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// GPT-2's split, as llama.cpp writes it.
const GPT2_SPLIT: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The special tokens llama.cpp strips the whitespace after (RSTRIP), as Phi-3's tokenizer.json
/// does: in a file whose general.name holds "phi-3" or "phi3" (llama.cpp's test, case-blind), every
/// control and user-defined token and `</s>`, but not `<unk>`, `<s>` or `<|endoftext|>`; in any
/// other file none. Sorted ids.
fn phi_rstrip(g: &Gguf, tokens: &[String], special_ids: &[u32]) -> Vec<u32> {
    let name = g.get("general.name").and_then(|v| v.as_str()).unwrap_or("").to_lowercase();
    if !(name.contains("phi-3") || name.contains("phi3")) {
        return vec![];
    }
    let text = |id: &u32| tokens[*id as usize].as_str();
    let end_s = tokens.iter().position(|t| t == "</s>").map(|i| i as u32);
    let mut ids: Vec<u32> = special_ids
        .iter()
        .copied()
        .chain(end_s)
        .filter(|id| !matches!(text(id), "<unk>" | "<s>" | "<|endoftext|>"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// llama.cpp's pre-tokenizer regex for tokenizer.ggml.pre = "llama-bpe" (LLaMA-3).
const LLAMA3_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// llama.cpp's pre-tokenizer regex for tokenizer.ggml.pre = "qwen2" (Qwen2, 2.5, 3): LLaMA-3's with
/// every digit its own piece.
const QWEN2_SPLIT: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Texts of the tokens that end generation whatever their type (llama.cpp's list): ends of turn,
/// of text and of message, and the FIM separators a code model writes between files.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "</s>",
    "[EOT]",
    "[EOS]",
    "<eos>",
    "<｜end▁of▁sentence｜>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
];

/// SentencePiece's space marker.
const SPM_SPACE: &str = "\u{2581}";

/// Which tokenization algorithm the vocabulary uses.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// gpt2-style byte-level BPE (tokenizer.ggml.model "gpt2").
    ByteLevelBpe,
    /// SentencePiece-style BPE over token scores with byte fallback (tokenizer.ggml.model "llama");
    /// llama.cpp prepends a space to text at the start and after every special token.
    SentencePiece { add_space_prefix: bool },
    /// A Hugging Face tokenizer.json the user gave: it does its own normalization, specials and BOS.
    HfJson,
}

/// A model's tokenizer plus the special ids generation needs.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    kind: Kind,
    /// Control, user-defined and unknown-type tokens' ids, ascending: what parse_special recognizes.
    special_ids: Vec<u32>,
    /// Their texts, found leftmost-longest in one pass (pattern i is special_ids[i]).
    special_finder: aho_corasick::AhoCorasick,
    /// `inner` with its special tokens taken as text (made at first use).
    plain: std::sync::OnceLock<tokenizers::Tokenizer>,
    /// Beginning-of-sequence id, when the vocabulary has one.
    pub bos_id: Option<u32>,
    /// Whether encode() with specials prepends bos (tokenizer.ggml.add_bos_token).
    pub add_bos: bool,
    /// Ids that end generation (eos, eot, eom, and control or user-defined tokens named like
    /// <|im_end|>).
    pub eog_ids: Vec<u32>,
    /// Text of each token id that is a control token, for prompts and templates.
    pub tokens: Vec<String>,
    /// Whether each id is a control token (tokenizer.ggml.token_type 3).
    control: Vec<bool>,
    /// Special tokens after which the text's whitespace is dropped (sorted): llama.cpp's RSTRIP,
    /// which it gives Phi-3's vocabulary (`phi_rstrip`).
    rstrip: Vec<u32>,
}

impl Tokenizer {
    /// Builds the tokenizer described by the file's tokenizer.ggml.* keys.
    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer> {
        let model = g.get_str("tokenizer.ggml.model")?;
        let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        let kind = match model {
            "gpt2" => Kind::ByteLevelBpe,
            "llama" => Kind::SentencePiece { add_space_prefix: g.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true) },
            other => {
                return Err(Error::Tokenizer(format!(
                    "tokenizer.ggml.model {other:?} is not supported (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)"
                )))
            }
        };
        let tokens: Vec<String> = strings(g, "tokenizer.ggml.tokens")?.to_vec();
        let mut types: Vec<i128> = match g.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => {
                let a = g.get_array("tokenizer.ggml.token_type")?;
                (0..a.len()).map(|i| a.int_at(i).unwrap_or(1)).collect()
            }
        };
        if types.len() != tokens.len() {
            return Err(Error::Tokenizer(format!("{} token types for {} tokens", types.len(), tokens.len())));
        }
        // A token named like an end of generation is a control token whatever type the file gives
        // it, as llama.cpp makes it ("control-looking token"); user-defined ones stay so here (parsed
        // always, where llama.cpp makes them control too).
        let eog_named: Vec<u32> =
            (0..tokens.len()).filter(|&i| EOG_TEXTS.contains(&tokens[i].as_str())).map(|i| i as u32).collect();
        for &i in &eog_named {
            if types[i as usize] != TOKEN_TYPE_USER_DEFINED {
                types[i as usize] = TOKEN_TYPE_CONTROL;
            }
        }
        let mut vocab = tokenizers::models::bpe::Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let bpe = match kind {
            Kind::ByteLevelBpe => {
                let merges = strings(g, "tokenizer.ggml.merges")?
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let (a, b) = s
                            .split_once(' ')
                            .ok_or_else(|| Error::Tokenizer(format!("merge {i} {s:?} has no space")))?;
                        Ok((a.to_string(), b.to_string()))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // LLaMA-3: a pre-token that is a whole vocabulary entry is taken as it is (llama.cpp's ignore_merges).
                BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(is_llama3(pre))
            }
            // (from_gguf never makes HfJson: with_tokenizer_json sets it afterwards.)
            Kind::SentencePiece { .. } | Kind::HfJson => {
                let a = g.get_array("tokenizer.ggml.scores")?;
                let scores: Vec<f32> = (0..a.len()).map(|i| a.float_at(i).unwrap_or(0.0) as f32).collect();
                if scores.len() != tokens.len() {
                    return Err(Error::Tokenizer(format!("{} scores for {} tokens", scores.len(), tokens.len())));
                }
                let merges = merges_from_scores(&tokens, &types, &scores, &vocab)?;
                let unk = g.opt_u64("tokenizer.ggml.unknown_token_id")?.and_then(|i| tokens.get(i as usize)).cloned();
                let mut b = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true);
                if let Some(u) = unk {
                    b = b.unk_token(u);
                }
                b
            }
        }
        .build()
        .map_err(|e| Error::Tokenizer(format!("building BPE: {e}")))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        match kind {
            Kind::ByteLevelBpe => {
                inner.with_pre_tokenizer(Some(pre_tokenizer(pre)?));
                inner.with_decoder(Some(ByteLevelDecoder::default()));
            }
            Kind::SentencePiece { .. } | Kind::HfJson => {
                let space = Replace::new(SPM_SPACE, " ").map_err(|e| Error::Tokenizer(e.to_string()))?;
                inner.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(vec![
                    DecoderWrapper::Replace(space),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ])));
            }
        }
        if kind == Kind::ByteLevelBpe {
            // Control and unknown-type tokens are parsed as specials, user-defined ones always
            // (llama.cpp's parse_special).
            let mut control = vec![];
            let mut user = vec![];
            for (t, &ty) in tokens.iter().zip(&types) {
                match ty {
                    TOKEN_TYPE_CONTROL | TOKEN_TYPE_UNKNOWN => control.push(AddedToken::from(t.clone(), true)),
                    TOKEN_TYPE_USER_DEFINED => user.push(AddedToken::from(t.clone(), false)),
                    _ => {}
                }
            }
            inner.add_special_tokens(control).map_err(|e| Error::Tokenizer(format!("adding control tokens: {e}")))?;
            inner.add_tokens(user).map_err(|e| Error::Tokenizer(format!("adding user-defined tokens: {e}")))?;
        }
        let id_key = |key: &str| -> Result<Option<u32>> {
            match g.opt_u64(key)? {
                Some(id) if (id as usize) < tokens.len() => Ok(Some(id as u32)),
                Some(id) => Err(Error::Tokenizer(format!("{key} is {id}, past the {} tokens", tokens.len()))),
                None => Ok(None),
            }
        };
        let bos_id = id_key("tokenizer.ggml.bos_token_id")?;
        let mut eog_ids = vec![];
        for key in [
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.eot_token_id",
            "tokenizer.ggml.eom_token_id",
            "tokenizer.ggml.fim_pad_token_id",
            "tokenizer.ggml.fim_rep_token_id",
            "tokenizer.ggml.fim_sep_token_id",
        ] {
            eog_ids.extend(id_key(key)?);
        }
        eog_ids.extend(eog_named);
        eog_ids.sort_unstable();
        eog_ids.dedup();
        // As llama.cpp: SentencePiece and LLaMA-3 vocabularies add bos unless the file says otherwise.
        let default_bos = matches!(kind, Kind::SentencePiece { .. }) || is_llama3(pre);
        let add_bos = g.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(default_bos) && bos_id.is_some();
        let special_ids: Vec<u32> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            // llama.cpp's special tokens: control, user-defined and unknown-type ones (Phi-3's [PAD...]).
            .filter(|(_, (t, &ty))| {
                matches!(ty, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED | TOKEN_TYPE_UNKNOWN) && !t.is_empty()
            })
            .map(|(i, _)| i as u32)
            .collect();
        // Leftmost-longest, ties to the first pattern: the lowest id of tokens with the same text.
        let special_finder = aho_corasick::AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(special_ids.iter().map(|&i| &tokens[i as usize]))
            .map_err(|e| Error::Tokenizer(format!("indexing the {} special tokens: {e}", special_ids.len())))?;
        let rstrip = phi_rstrip(g, &tokens, &special_ids);
        let control = types.iter().map(|&t| t == TOKEN_TYPE_CONTROL).collect();
        Ok(Tokenizer {
            inner,
            kind,
            special_ids,
            special_finder,
            plain: Default::default(),
            bos_id,
            add_bos,
            eog_ids,
            tokens,
            control,
            rstrip,
        })
    }

    /// Uses a Hugging Face tokenizer.json instead of the GGUF vocabulary (its pipeline, specials and
    /// post-processor decide the ids); the end-of-generation ids still come from the GGUF.
    pub fn with_tokenizer_json(mut self, json: &[u8]) -> Result<Tokenizer> {
        let inner = tokenizers::Tokenizer::from_bytes(json)
            .map_err(|e| Error::Tokenizer(format!("reading tokenizer.json: {e}")))?;
        let n = inner.get_vocab_size(true);
        if n > self.tokens.len() {
            return Err(Error::Tokenizer(format!(
                "tokenizer.json has {n} tokens, more than the model's {}",
                self.tokens.len()
            )));
        }
        self.inner = inner;
        self.plain = Default::default();
        self.kind = Kind::HfJson;
        Ok(self)
    }

    /// The tokenizer as Hugging Face tokenizer.json text (for byte-level BPE vocabularies it
    /// reproduces these ids on its own).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(false).map_err(|e| Error::Tokenizer(format!("writing tokenizer.json: {e}")))
    }

    /// Token ids of `text`. With `parse_special`, control-token strings such as `<|im_start|>` become
    /// their ids (as llama.cpp's parse_special); bos is prepended when the model asks for it.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let whole = 0..text.len();
        self.encode_with_plain(text, if parse_special { &[] } else { std::slice::from_ref(&whole) })
    }

    /// Token ids of `text`, with control-token strings parsed as specials outside the `plain` byte
    /// ranges (sorted, apart) and taken as text inside them: a chat's message contents are plain
    /// text, the template's markup around them is not. Where no special token comes from inside a
    /// plain range, the ids are those of `encode(text, true)`: the text between two specials is one
    /// fragment, whatever the ranges.
    pub fn encode_with_plain(&self, text: &str, plain: &[std::ops::Range<usize>]) -> Result<Vec<u32>> {
        if self.kind == Kind::HfJson && plain.is_empty() {
            let enc = self.inner.encode_fast(text, true).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
            return Ok(enc.get_ids().to_vec());
        }
        let mut ids = vec![];
        if self.kind == Kind::HfJson {
            // Its post-processor's additions to an empty text (its BOS, if any).
            let enc = self.inner.encode_fast("", true).map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
            ids.extend_from_slice(enc.get_ids());
        } else if self.add_bos {
            ids.extend(self.bos_id);
        }
        // llama.cpp: split on special tokens; for SentencePiece, each raw fragment gets a leading space
        // when it starts the text or follows a special token.
        let mut after_special = true;
        let mut start = 0;
        while start < text.len() {
            let (end, special) = match self.next_special(text, start, plain) {
                Some((at, len, id)) => (at, Some((len, id))),
                None => (text.len(), None),
            };
            if end > start {
                self.encode_fragment(&text[start..end], after_special, &mut ids)?;
                after_special = false;
            }
            match special {
                Some((len, id)) => {
                    ids.push(id);
                    after_special = true;
                    start = end + len;
                    if self.rstrip.binary_search(&id).is_ok() {
                        // C's isspace, as llama.cpp strips.
                        let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
                        start += text.as_bytes()[start..].iter().take_while(|&&b| space(b)).count();
                    }
                }
                None => start = text.len(),
            }
        }
        Ok(ids)
    }

    /// Token ids of `text` where it continues a text (no BOS, no SentencePiece space prefix), its
    /// special-token strings taken as text: how constrained decoding tokenizes the bytes a grammar
    /// forces (engine::constraint).
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![];
        self.encode_fragment(text, false, &mut ids)?;
        Ok(ids)
    }

    /// Whether `text` holds a special-token string.
    pub fn has_special(&self, text: &str) -> bool {
        self.next_special(text, 0, &[]).is_some()
    }

    /// Whether `text` holds a control token's string (<|im_end|>, <|eot_id|>, ...) or an
    /// end-of-generation token's: a role or a turn's end; other user-defined tokens (<think>) are
    /// parsed in any text, plain ranges included.
    pub fn has_control(&self, text: &str) -> bool {
        let control = |m: aho_corasick::Match| {
            let id = self.special_ids[m.pattern().as_usize()];
            self.control.get(id as usize).copied().unwrap_or(false) || self.eog_ids.contains(&id)
        };
        self.special_finder.find_iter(text).any(control)
    }

    /// The first special token in `text` at or after `from` and outside the `plain` ranges: (byte
    /// offset, byte length, id); the longest one where several start at one place.
    fn next_special(&self, text: &str, from: usize, plain: &[std::ops::Range<usize>]) -> Option<(usize, usize, u32)> {
        let mut at = from;
        let mut ranges = plain.iter().filter(|r| !r.is_empty()).skip_while(|r| r.end <= from).peekable();
        while at < text.len() {
            if let Some(r) = ranges.peek() {
                if r.contains(&at) {
                    at = r.end;
                    ranges.next();
                    continue;
                }
            }
            // The stretch up to the next plain range: its first special, if any.
            let limit = ranges.peek().map_or(text.len(), |r| r.start);
            if let Some(m) = self.special_finder.find(&text[at..limit]) {
                return Some((at + m.start(), m.len(), self.special_ids[m.pattern().as_usize()]));
            }
            at = limit;
        }
        None
    }

    /// Appends the ids of a fragment with no special tokens in it (special-token strings are text).
    fn encode_fragment(&self, raw: &str, after_special: bool, ids: &mut Vec<u32>) -> Result<()> {
        let enc = match self.kind {
            Kind::SentencePiece { add_space_prefix } => {
                let mut piece = String::with_capacity(raw.len() + 3);
                if add_space_prefix && after_special {
                    piece.push(' ');
                }
                piece.push_str(raw);
                self.inner.encode_fast(piece.replace(' ', SPM_SPACE).as_str(), false)
            }
            Kind::ByteLevelBpe | Kind::HfJson => self.plain().encode_fast(raw, false),
        }
        .map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        ids.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// The tokenizer with its special tokens taken as text (its user-defined ones still parsed, as
    /// llama.cpp does), made at first use.
    fn plain(&self) -> &tokenizers::Tokenizer {
        self.plain.get_or_init(|| {
            let mut t = self.inner.clone();
            t.set_encode_special_tokens(true);
            t
        })
    }

    /// Text of `ids`, special tokens included. For SentencePiece vocabularies the space the encoder
    /// put before the text is taken off again.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let text = self.inner.decode(ids, false).map_err(|e| Error::Tokenizer(format!("decoding: {e}")))?;
        match self.kind {
            Kind::SentencePiece { add_space_prefix: true } if text.starts_with(' ') => Ok(text[1..].to_string()),
            _ => Ok(text),
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The bytes token `id` stands for, as a grammar sees them: a control token's text after a
    /// 0xFF byte (so that no text can spell it), SentencePiece's byte tokens as their byte and its
    /// space marker as a space, byte-level BPE's characters as the bytes they map.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let t = &self.tokens[id as usize];
        if self.control[id as usize] {
            return [&[0xFF], t.as_bytes()].concat();
        }
        match self.kind {
            Kind::ByteLevelBpe => t.chars().map(byte_of_char).collect(),
            Kind::SentencePiece { .. } => match t.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
                Some(hex) if hex.len() == 2 => {
                    u8::from_str_radix(hex, 16).map_or_else(|_| t.clone().into_bytes(), |b| vec![b])
                }
                _ => t.replace(SPM_SPACE, " ").into_bytes(),
            },
            Kind::HfJson => self.inner.decode(&[id], false).unwrap_or_default().into_bytes(),
        }
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
        let stepped = tokenizers::tokenizer::step_decode_stream(
            &self.inner,
            vec![id],
            false,
            &mut stream.ids,
            &mut stream.prefix,
            &mut stream.prefix_index,
        );
        match stepped {
            Ok(text) => Ok(text),
            // The ids so far no longer decode to the text already given (SentencePiece's byte
            // fallback decodes a run of byte tokens whole: a valid character followed by a stray
            // byte turns into one U+FFFD a byte). The ids not yet given are decoded on their own
            // and the stream starts again after them.
            Err(e) if e.downcast_ref::<tokenizers::tokenizer::DecodeStreamError>().is_some() => {
                let pending: Vec<u32> = stream.ids.drain(stream.prefix_index.min(stream.ids.len())..).collect();
                let text =
                    self.inner.decode(&pending, false).map_err(|e| Error::Tokenizer(format!("decoding: {e}")))?;
                stream.ids = pending;
                stream.prefix = text.clone();
                stream.prefix_index = stream.ids.len();
                Ok(Some(text))
            }
            Err(e) => Err(Error::Tokenizer(format!("stream decoding: {e}"))),
        }
    }
}

/// State of a streaming decode: the ids since the last emitted text.
pub struct TextStream {
    ids: Vec<u32>,
    prefix: String,
    prefix_index: usize,
}

/// Whether `tokenizer.ggml.pre` names the LLaMA-3 pre-tokenizer (llama.cpp's names for it,
/// Falcon3's included).
fn is_llama3(pre: &str) -> bool {
    matches!(pre, "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2")
}

/// Longest normal token (bytes) a SentencePiece vocabulary may have: every split of every token is
/// tried, so this bounds the merges' construction in time (real vocabularies stay under 64).
pub const MAX_SPM_TOKEN_BYTES: usize = 256;
/// Most merges per vocabulary token (real vocabularies make a few): bounds their memory.
pub const MAX_SPM_MERGES_PER_TOKEN: usize = 16;

/// BPE merges for a SentencePiece vocabulary: every split of a token into two vocabulary tokens,
/// ranked by the token's score (higher first), as llama.cpp's SPM tokenizer merges the bigram whose
/// result scores highest. A hostile vocabulary (very long tokens, or tokens that split every way)
/// is refused by name before it costs more than the vocabulary's size allows.
fn merges_from_scores(
    tokens: &[String],
    types: &[i128],
    scores: &[f32],
    vocab: &tokenizers::models::bpe::Vocab,
) -> Result<Vec<(String, String)>> {
    let max_merges = MAX_SPM_MERGES_PER_TOKEN * tokens.len();
    let mut merges: Vec<(f32, u32, String, String)> = vec![];
    for (id, t) in tokens.iter().enumerate() {
        if types[id] != 1 && types[id] != TOKEN_TYPE_USER_DEFINED {
            continue;
        }
        if t.len() > MAX_SPM_TOKEN_BYTES {
            return Err(Error::Tokenizer(format!(
                "token {id} is {} bytes long, over the {MAX_SPM_TOKEN_BYTES} a SentencePiece vocabulary may have",
                t.len()
            )));
        }
        for (at, _) in t.char_indices().skip(1) {
            let (l, r) = t.split_at(at);
            if vocab.contains_key(l) && vocab.contains_key(r) {
                if merges.len() == max_merges {
                    return Err(Error::Tokenizer(format!(
                        "the vocabulary's {} tokens split into more than {max_merges} merges ({MAX_SPM_MERGES_PER_TOKEN} per token)",
                        tokens.len()
                    )));
                }
                merges.push((scores[id], id as u32, l.to_string(), r.to_string()));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(merges.into_iter().map(|(_, _, l, r)| (l, r)).collect())
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
        "gpt-2" | "gpt2" => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(GPT2_SPLIT)?, byte_level])),
        // A file that names no pre-tokenizer (BPE files converted before May 2024): llama.cpp's
        // DEFAULT, punctuation runs apart, then GPT-2's split, then digits in runs and in threes.
        "default" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            split(r"[\p{P}\$\+<=>\^~\|]+")?,
            split(GPT2_SPLIT)?,
            split(r"\p{N}+")?,
            split(r"[0-9][0-9][0-9]")?,
            byte_level,
        ])),
        // Every digit its own piece, then GPT-2's split (llama.cpp: STARCODER, SMOLLM, REFACT, ...).
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(r"\p{N}")?, split(GPT2_SPLIT)?, byte_level]))
        }
        // LLaMA-3: letters with one leading non-letter, digits in threes, punctuation runs with their newlines.
        // DBRX's (Granite 4.0's) and Smaug's split too (their merges always applied, no BOS added:
        // is_llama3 is false for them).
        p if is_llama3(p) || matches!(p, "dbrx" | "smaug-bpe") => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_SPLIT)?, byte_level]))
        }
        // Qwen2/2.5/3: as LLaMA-3, digits one by one.
        // (DeepSeek-R1's distills of Qwen name it their own way.)
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "megrez" => {
            PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_SPLIT)?, byte_level]))
        }
        other => {
            return Err(Error::Tokenizer(format!(
                "pre-tokenizer {other:?} (tokenizer.ggml.pre) is not supported yet (supported: default, gpt2, smollm, starcoder, refact, codeshell, llama-bpe and its aliases, dbrx, smaug-bpe, qwen2 and its aliases)"
            )))
        }
    })
}

/// A metadata array of strings, or a named error.
fn strings<'a>(g: &'a Gguf, key: &str) -> Result<&'a [String]> {
    g.get_array(key)?.strings().ok_or_else(|| Error::Tokenizer(format!("{key} is not an array of strings")))
}

/// The byte a byte-level BPE character stands for (GPT-2's bytes_to_unicode, inverted): printable
/// Latin-1 bytes are themselves, the others were moved to U+0100 and up in order.
fn byte_of_char(c: char) -> u8 {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let c = c as u32;
    if c < 0x100 && printable(c) {
        return c as u8;
    }
    // The n-th non-printable byte was mapped to 0x100 + n.
    let n = c.wrapping_sub(0x100);
    (0u32..256).filter(|&b| !printable(b)).nth(n as usize).unwrap_or(b'?' as u32) as u8
}
