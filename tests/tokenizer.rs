//! The tokenizer built from the default model's GGUF metadata gives llama.cpp's ids for every golden
//! string, decodes back to the text, and streams UTF-8 safely.

mod common;

use webllama::format::gguf::{Gguf, Value};
use webllama::format::{gguf_write, weights};
use webllama::Tokenizer;

/// `g`'s metadata with `key` set to `value`, or without it (None), as a header of no tensors.
fn with_key(g: &Gguf, key: &str, value: Option<&str>) -> Gguf {
    let mut meta: Vec<(String, Value)> = g.metadata.iter().filter(|(k, _)| k != key).cloned().collect();
    meta.extend(value.map(|v| (key.to_string(), Value::String(v.into()))));
    let (head, _) = gguf_write::header(&meta, &[]).unwrap();
    Gguf::parse_complete(&head).unwrap()
}

fn tokenizer() -> Option<Tokenizer> {
    let path = common::default_model()?;
    Some(Tokenizer::from_gguf(&weights::read_header(&path).unwrap()).unwrap())
}

#[test]
fn golden_ids_and_round_trip() {
    let Some(tok) = tokenizer() else { return };
    let cases = common::golden("smollm2/tokenizer_golden.json");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 17);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let parse_special = c["parse_special"].as_bool().unwrap();
        let want: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = tok.encode(text, parse_special).unwrap();
        assert_eq!(got, want, "ids of {text:?} (parse_special {parse_special})");
        assert_eq!(tok.decode(&got).unwrap(), text, "round trip of {text:?}");
    }
}

#[test]
fn eog_ids_and_bos() {
    let Some(tok) = tokenizer() else { return };
    // SmolLM2: <|endoftext|> (0) and <|im_end|> (2, the eos) end generation; no bos is added.
    assert_eq!(tok.eog_ids, vec![0, 2]);
    assert!(!tok.add_bos);
}

#[test]
fn streaming_decode_never_splits_a_character() {
    let Some(tok) = tokenizer() else { return };
    let text = "I love 🦙 llamas 😀👍🏽! 中文分词测试 naïve";
    let ids = tok.encode(text, false).unwrap();
    let mut stream = tok.stream();
    let mut out = String::new();
    for id in ids {
        if let Some(piece) = tok.step(&mut stream, id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "piece {piece:?} holds a replacement character");
            out.push_str(&piece);
        }
    }
    assert_eq!(out, text);
}

/// llama.cpp's ids for every golden string of a tiny model's vocabulary, with and without
/// parse_special; plain strings decode back to their text. `pre` renames its pre-tokenizer.
fn tiny_vocab(model: &str, golden: &str, pre: Option<&str>) {
    let Some(path) = common::shared_fixture(&format!("tiny/{model}")) else { return };
    let mut header = weights::read_header(&path).unwrap();
    if pre.is_some() {
        header = with_key(&header, "tokenizer.ggml.pre", pre);
    }
    let tok = Tokenizer::from_gguf(&header).unwrap();
    let g = common::golden(&format!("tiny/{golden}"));
    let ids =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    for c in g["strings"].as_array().unwrap() {
        let (name, text) = (c["name"].as_str().unwrap(), c["text"].as_str().unwrap());
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["llamacpp_ids"]), "{model} {name}: ids of {text:?}");
        let plain = tok.encode(text, false).unwrap();
        assert_eq!(
            plain,
            ids(&c["llamacpp_ids_no_parse_special"]),
            "{model} {name}: ids of {text:?} without parse_special"
        );
        assert_eq!(tok.decode(&plain[1..]).unwrap(), text, "{model} {name}: round trip");
    }
}

#[test]
fn llama2_sentencepiece_vocab_matches_llama_cpp() {
    tiny_vocab("tiny-llama2-Q8_0.gguf", "tokenizer-golden-llama2.json", None);
}

#[test]
fn llama3_bpe_vocab_matches_llama_cpp() {
    tiny_vocab("tiny-llama3-Q4_K_M.gguf", "tokenizer-golden-llama3.json", None);
}

/// Names llama.cpp gives the LLaMA-3 and Qwen2 pre-tokenizers in other families' files (Falcon3,
/// DeepSeek-R1's Qwen distills) tokenize as those, bos included.
#[test]
fn llama_cpp_aliases_of_a_pre_tokenizer_tokenize_as_it() {
    tiny_vocab("tiny-llama3-Q4_K_M.gguf", "tokenizer-golden-llama3.json", Some("falcon3"));
    let path = format!("{}/tests/fixtures/arch/vocab-qwen2.gguf", env!("CARGO_MANIFEST_DIR"));
    let tok = Tokenizer::from_gguf(&with_key(
        &weights::read_header(&path).unwrap(),
        "tokenizer.ggml.pre",
        Some("deepseek-r1-qwen"),
    ))
    .unwrap();
    let g = common::golden("arch/tokenizer-golden-qwen2.json");
    for c in g["strings"].as_array().unwrap() {
        let want: Vec<u32> = serde_json::from_value(c["llamacpp_ids"].clone()).unwrap();
        assert_eq!(tok.encode(c["text"].as_str().unwrap(), true).unwrap(), want, "{:?}", c["name"]);
    }
}

/// A BPE file that names no pre-tokenizer (converted before May 2024) splits as llama.cpp's DEFAULT
/// does: punctuation runs apart from the space before them. GPT-2's split, which it took before,
/// keeps " (" and " ?!" whole.
#[test]
fn a_file_naming_no_pre_tokenizer_splits_as_llama_cpp_default() {
    let Some(path) = common::shared_fixture("tiny/tiny-llama3-Q4_K_M.gguf") else { return };
    let header = weights::read_header(&path).unwrap();
    let default = Tokenizer::from_gguf(&with_key(&header, "tokenizer.ggml.pre", None)).unwrap();
    let gpt2 = Tokenizer::from_gguf(&with_key(&header, "tokenizer.ggml.pre", Some("gpt2"))).unwrap();
    let pieces = |parts: &[&str]| -> Vec<u32> { parts.iter().flat_map(|p| gpt2.encode(p, false).unwrap()).collect() };
    for (text, parts) in [(" (x)", &[" ", "(", "x", ")"][..]), ("Hi ?!", &["Hi", " ", "?!"][..])] {
        let ids = default.encode(text, false).unwrap();
        assert_eq!(ids, pieces(parts), "{text:?}");
        assert_ne!(ids, gpt2.encode(text, false).unwrap(), "{text:?}: GPT-2's split gives the same ids");
        assert_eq!(default.decode(&ids).unwrap(), text);
    }
}

#[test]
fn llama_eog_ids() {
    let (Some(l2), Some(l3)) =
        (common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf"), common::shared_fixture("tiny/tiny-llama3-Q4_K_M.gguf"))
    else {
        return;
    };
    let t2 = Tokenizer::from_gguf(&weights::read_header(&l2).unwrap()).unwrap();
    let t3 = Tokenizer::from_gguf(&weights::read_header(&l3).unwrap()).unwrap();
    assert_eq!((t2.eog_ids.clone(), t2.bos_id, t2.add_bos), (vec![2], Some(1), true));
    // llama.cpp ends LLaMA-3's generation at <|end_of_text|> (128001) as well as at <|eot_id|>.
    assert_eq!(t3.tokens[128001], "<|end_of_text|>");
    assert_eq!((t3.eog_ids.clone(), t3.bos_id, t3.add_bos), (vec![128001, 128009], Some(128000), true));
}

#[test]
fn a_tokenizer_json_can_replace_the_gguf_vocabulary() {
    // The default model's tokenizer written as tokenizer.json and read back gives the golden ids.
    let Some(tok) = tokenizer() else { return };
    let json = tok.to_json().unwrap();
    let path = common::default_model().unwrap();
    let from_json = Tokenizer::from_gguf(&weights::read_header(&path).unwrap())
        .unwrap()
        .with_tokenizer_json(json.as_bytes())
        .unwrap();
    for c in common::golden("smollm2/tokenizer_golden.json").as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(c["ids"].clone()).unwrap();
        assert_eq!(from_json.encode(text, c["parse_special"].as_bool().unwrap()).unwrap(), want, "{text:?}");
    }
    let err = Tokenizer::from_gguf(&weights::read_header(&path).unwrap())
        .unwrap()
        .with_tokenizer_json(b"{not json")
        .err()
        .unwrap();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

/// A SentencePiece vocabulary (`a`, `aa`, ...) whose merges every split of every token would make
/// (the old construction: ~4.5M merges and ~9 GB for 3,000 such tokens) is refused by name, fast:
/// tokens past the length limit, and too many merges per token.
#[test]
fn a_hostile_sentencepiece_vocabulary_is_refused_quickly() {
    use webllama::format::gguf::{Array, Gguf, Value};
    use webllama::format::gguf_write;
    let header = |n: usize| {
        let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
        tokens.extend((1..=n).map(|k| "a".repeat(k)));
        let meta = [
            ("general.architecture", Value::String("llama".into())),
            ("tokenizer.ggml.model", Value::String("llama".into())),
            ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens.clone()))),
            ("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; tokens.len()]))),
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; tokens.len()]))),
        ];
        Gguf::parse_complete(&gguf_write::build(&meta, &[])).unwrap()
    };
    for (n, want) in [(3000, "bytes long"), (200, "merges")] {
        let t0 = std::time::Instant::now();
        let err = Tokenizer::from_gguf(&header(n)).err().expect("refused").to_string();
        assert!(err.contains(want), "{n} tokens: {err}");
        assert!(t0.elapsed().as_secs() < 10, "{n} tokens: {:?}", t0.elapsed());
    }
    // A vocabulary of the same kind within the limits still loads.
    assert!(Tokenizer::from_gguf(&header(8)).is_ok());
}

/// The Qwen2/2.5/3 vocabulary (llama.cpp's own ggml-vocab-qwen2.gguf, in tests/fixtures/arch) with
/// the qwen2 pre-tokenizer: llama.cpp's ids on its text set (code, numbers, CJK, emoji, whitespace
/// runs, ChatML), with special tokens parsed and not; no BOS; the text comes back.
#[test]
fn qwen2_vocab_matches_llama_cpp() {
    let path = format!("{}/tests/fixtures/arch/vocab-qwen2.gguf", env!("CARGO_MANIFEST_DIR"));
    let tok = Tokenizer::from_gguf(&weights::read_header(&path).unwrap()).unwrap();
    assert!(!tok.add_bos);
    let g = common::golden("arch/tokenizer-golden-qwen2.json");
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    let mut n = 0;
    for c in g["strings"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        assert_eq!(tok.encode(text, true).unwrap(), ids(&c["llamacpp_ids"]), "{:?} {text:?}", c["name"]);
        let plain = tok.encode(text, false).unwrap();
        assert_eq!(plain, ids(&c["llamacpp_ids_no_parse_special"]), "{:?} {text:?} (plain)", c["name"]);
        assert_eq!(tok.decode(&plain).unwrap(), text, "{:?}", c["name"]);
        n += 1;
    }
    assert!(n >= 60, "{n} strings");
}

/// A vocabulary with tens of thousands of user-defined tokens (each parsed as a special) finds them
/// in a long text in one pass: a megabyte of prompt is not a scan of every token at every
/// character.
#[test]
fn many_special_tokens_are_found_in_one_pass() {
    use webllama::format::gguf::{Array, Gguf, Value};
    use webllama::format::gguf_write;
    let mut tokens =
        vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string(), "a".into(), "b".into(), " ".into()];
    let mut types = vec![2, 3, 3, 1, 1, 1];
    tokens.extend((0..32_000).map(|k| format!("<x{k}>")));
    types.resize(tokens.len(), 4);
    let meta = [
        ("general.architecture", Value::String("llama".into())),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens.clone()))),
        ("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; tokens.len()]))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
    ];
    let tok = Tokenizer::from_gguf(&Gguf::parse_complete(&gguf_write::build(&meta, &[])).unwrap()).unwrap();
    let text = "ab ".repeat(350_000);
    let t0 = std::time::Instant::now();
    assert!(!tok.has_special(&text));
    let with = format!("{text}<x3199><x31999>");
    assert!(tok.has_special(&with));
    let ids = tok.encode(&with, true).unwrap();
    assert!(t0.elapsed().as_secs() < 5, "{:?}", t0.elapsed());
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
    assert_eq!(ids[ids.len() - 2..], [id("<x3199>"), id("<x31999>")]);
    // Empty plain ranges mark nothing (they once stalled the search).
    assert_eq!(tok.encode_with_plain(&with, &[5..5, 9..9]).unwrap(), ids);
}

/// An end-of-turn token a converted file types user-defined (not control) still ends generation,
/// as llama.cpp takes it.
#[test]
fn a_user_defined_end_of_turn_token_ends_generation() {
    let Some(header) = common::tiny_llama3_with_tokens(&[("<|im_end|>", 4)]) else { return };
    // The token appended last.
    let id = header.get_array("tokenizer.ggml.tokens").unwrap().len() as u32 - 1;
    let tok = webllama::Tokenizer::from_gguf(&header).unwrap();
    assert!(id > 0 && tok.is_eog(id), "{:?}", tok.eog_ids);
}

/// A token named like an end of generation that a file types normal ends generation and is parsed
/// as a control token, as llama.cpp overrides its type ("control-looking token"); so do a code
/// model's FIM separators.
#[test]
fn a_normal_typed_end_of_generation_token_is_taken_as_control() {
    let Some(header) = common::tiny_llama3_with_tokens(&[("<|file_sep|>", 1)]) else { return };
    let id = header.get_array("tokenizer.ggml.tokens").unwrap().len() as u32 - 1;
    let tok = webllama::Tokenizer::from_gguf(&header).unwrap();
    assert!(tok.is_eog(id), "{:?}", tok.eog_ids);
    assert_eq!(tok.encode("<|file_sep|>", true).unwrap(), [128000, id]);
    assert_ne!(tok.encode("<|file_sep|>", false).unwrap(), [128000, id]);
}

/// SentencePiece's byte tokens decode a run whole: "€" (three byte tokens) then a stray byte turns
/// the run into one U+FFFD a byte, which no longer begins with the "€" already streamed. The stream
/// goes on from there (it failed the whole request): "€", then the rest.
#[test]
fn a_stray_byte_after_a_streamed_character_does_not_stop_the_stream() {
    let Some(path) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    let tok = Tokenizer::from_gguf(&weights::read_header(&path).unwrap()).unwrap();
    let id = |t: &str| tok.tokens.iter().position(|x| x == t).unwrap_or_else(|| panic!("no {t}")) as u32;
    let ids = [id("<0xE2>"), id("<0x82>"), id("<0xAC>"), id("<0x80>"), id("\u{2581}b"), id("\u{2581}c")];
    let mut stream = tok.stream();
    let mut out = String::new();
    for i in ids {
        out.push_str(&tok.step(&mut stream, i).unwrap().unwrap_or_default());
    }
    assert!(out.starts_with('€') && out.ends_with("b c"), "{out:?}");
}

/// Phi-3's vocabulary (llama.cpp's own ggml-vocab-phi-3.gguf, in tests/fixtures/arch): SentencePiece
/// with Phi's control tokens. llama.cpp's expected ids for its inputs (its test-tokenizer-0 files,
/// copied beside the vocabulary: no specials added, none parsed); <|end|> ends generation.
#[test]
fn phi3_vocab_matches_llama_cpp() {
    let dir = format!("{}/tests/fixtures/arch", env!("CARGO_MANIFEST_DIR"));
    let tok = Tokenizer::from_gguf(&weights::read_header(&format!("{dir}/vocab-phi3.gguf")).unwrap()).unwrap();
    assert!(tok.add_bos);
    assert!(tok.is_eog(32000) && tok.is_eog(32007), "<|endoftext|> and <|end|> end generation");
    let inputs = std::fs::read_to_string(format!("{dir}/vocab-phi3.gguf.inp")).unwrap();
    let mut inputs: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    if inputs.last() == Some(&"") {
        inputs.pop();
    }
    let expected = std::fs::read_to_string(format!("{dir}/vocab-phi3.gguf.out")).unwrap();
    let expected: Vec<Vec<u32>> =
        expected.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect();
    assert_eq!(inputs.len(), expected.len());
    assert!(inputs.len() >= 40, "{} inputs", inputs.len());
    for (text, want) in inputs.iter().zip(&expected) {
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids.first(), Some(&1), "BOS first");
        assert_eq!(&ids[1..], &want[..], "{text:?}");
    }
    // llama.cpp's ids (its libllama, tests/fixtures/arch/README.md): the whitespace after Phi's
    // special tokens is dropped (llama.cpp's RSTRIP for a file named Phi-3), not after <|endoftext|>.
    let chat = "<|user|>\nHi<|end|>\n<|assistant|>\n";
    assert_eq!(tok.encode(chat, true).unwrap(), [1, 32010, 6324, 32007, 32001], "{chat:?}");
    assert_eq!(tok.encode("a<|endoftext|> b", true).unwrap(), [1, 263, 32000, 29871, 289]);
    // Unknown-type tokens (Phi-3's [PAD32011] to [PAD32063]) are specials too, as llama.cpp parses
    // them (with the whitespace after them dropped in this file); taken as text without parse_special.
    let pads = [
        ("Hello [PAD32011] world", vec![1, 15043, 29871, 32011, 3186]),
        ("x[PAD32063]y[PAD32011]", vec![1, 921, 32063, 343, 32011]),
        ("<|user|>\n[PAD32011]<|end|>\n", vec![1, 32010, 32011, 32007]),
    ];
    for (text, want) in pads {
        assert_eq!(tok.encode(text, true).unwrap(), want, "{text:?}");
    }
    let plain = [1, 15043, 518, 29925, 3035, 29941, 29906, 29900, 29896, 29896, 29962, 3186];
    assert_eq!(tok.encode("Hello [PAD32011] world", false).unwrap(), plain);
    // The same vocabulary under another name keeps the whitespace, as llama.cpp does.
    let bytes = std::fs::read(format!("{dir}/vocab-phi3.gguf")).unwrap();
    let name = b"\x04\0\0\0\0\0\0\0Phi3";
    let at = bytes.windows(name.len()).position(|w| w == name).unwrap() + 8;
    let mut renamed = bytes.clone();
    renamed[at] = b'X';
    let other = Tokenizer::from_gguf(&webllama::format::gguf::Gguf::parse_complete(&renamed).unwrap()).unwrap();
    assert_eq!(other.encode(chat, true).unwrap(), [1, 32010, 29871, 13, 18567, 32007, 29871, 13, 32001, 29871, 13]);
}
