//! The tokenizer built from the default model's GGUF metadata gives llama.cpp's ids for every golden
//! string, decodes back to the text, and streams UTF-8 safely.

mod common;

use webllama::{weights, Tokenizer};

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
