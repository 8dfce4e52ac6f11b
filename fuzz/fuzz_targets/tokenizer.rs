//! Fuzz target: the tokenizers of the tiny LLaMA-2 (SentencePiece) and LLaMA-3 (byte-level BPE)
//! fixtures on arbitrary text, with specials parsed, not parsed, or parsed outside random plain
//! ranges (as chat contents are), and decoding arbitrary ids: never a panic; byte-level BPE gives
//! the text back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use webllama::format::weights;
use webllama::Tokenizer;

fn tokenizers() -> &'static [Tokenizer; 2] {
    static T: OnceLock<[Tokenizer; 2]> = OnceLock::new();
    T.get_or_init(|| {
        let load = |name: &str| {
            let path = format!("{}/../../shared/fixtures/tiny/{name}", env!("CARGO_MANIFEST_DIR"));
            Tokenizer::from_gguf(&weights::read_header(&path).expect("the tiny fixtures in ../shared")).unwrap()
        };
        [load("tiny-llama2-Q8_0.gguf"), load("tiny-llama3-Q4_K_M.gguf")]
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let tok = &tokenizers()[(mode & 1) as usize];
    let text = String::from_utf8_lossy(rest);
    if mode & 2 != 0 {
        // Arbitrary ids, some past the vocabulary.
        let ids: Vec<u32> = rest.chunks(2).map(|c| u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32).collect();
        let _ = tok.decode(&ids);
        return;
    }
    let plain = mode & 4 != 0;
    let ids = tok.encode(&text, !plain).expect("any text encodes");
    let body: Vec<u32> = ids.iter().copied().skip_while(|&i| Some(i) == tok.bos_id).collect();
    let back = tok.decode(&body).expect("its own ids decode");
    if mode & 1 == 1 && plain {
        assert_eq!(back, text, "byte-level BPE gives the text back");
    }
    // Specials parsed only past the middle: the ids still spell the text.
    let cut = text.char_indices().map(|(i, _)| i).nth(text.chars().count() / 2).unwrap_or(0);
    let ranged = tok.encode_with_plain(&text, &[0..cut]).expect("any text encodes");
    let body: Vec<u32> = ranged.into_iter().skip_while(|&i| Some(i) == tok.bos_id).collect();
    let back = tok.decode(&body).expect("its own ids decode");
    if mode & 1 == 1 {
        assert_eq!(back, text, "byte-level BPE gives the text back");
    }
});
