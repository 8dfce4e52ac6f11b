//! Fuzz target: the GGUF header parser, whole and as a stream of prefixes, then everything built from
//! the metadata (config, tensor map, tokenizer, chat template). Any panic, hang or huge allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webllama::format::gguf::{Gguf, Parsed};
use webllama::format::weights;
use webllama::{ChatTemplate, Config, Message, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let len = Some(data.len() as u64);
    // Streaming: prefixes of growing length, each as long as the last one asked for, must end where
    // the whole parse does: the same header, or both an error.
    let mut k = 0usize;
    let streamed = loop {
        match Gguf::parse(&data[..k], len) {
            Ok(Parsed::NeedMore { needed }) => {
                assert!(needed as usize > k, "asked for {needed} bytes after {k}");
                if needed as usize > data.len() {
                    break None;
                }
                k = needed as usize;
            }
            Ok(Parsed::Done(g)) => break Some(g),
            Err(_) => break None,
        }
    };
    let whole = Gguf::parse_complete(data);
    match (&streamed, &whole) {
        (Some(a), Ok(b)) => assert_eq!(
            (a.tensors.len(), a.metadata.len(), a.data_offset),
            (b.tensors.len(), b.metadata.len(), b.data_offset),
            "streaming and whole parses disagree"
        ),
        (None, Err(_)) => {}
        (s, w) => panic!("streaming parse {} but whole parse {}", if s.is_some() { "succeeded" } else { "failed" }, if w.is_ok() { "succeeded" } else { "failed" }),
    }
    let Ok(g) = whole else { return };
    if let Ok(cfg) = Config::from_gguf(&g) {
        let _ = weights::check(&g, &cfg);
    }
    if let Ok(tok) = Tokenizer::from_gguf(&g) {
        if let Ok(ids) = tok.encode("Hello <|im_start|> world 123", true) {
            let _ = tok.decode(&ids);
        }
    }
    if let Ok(src) = g.get_str("tokenizer.chat_template") {
        if let Ok(t) = ChatTemplate::new(src, "<s>", "</s>") {
            let _ = t.render(&[Message::new("user", "hi")], true);
        }
    }
});
