//! Fuzz target: the GGUF header parser, whole and as a stream of prefixes, then everything built from
//! the metadata (config, tensor map, tokenizer, chat template). Any panic, hang or huge allocation is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webllama::format::gguf::{Gguf, Parsed};
use webllama::format::weights;
use webllama::{ChatTemplate, Config, Message, Tokenizer};

fuzz_target!(|data: &[u8]| {
    let len = Some(data.len() as u64);
    // Streaming: prefixes of growing length must agree with the whole parse.
    let mut k = 0usize;
    while k < data.len() {
        match Gguf::parse(&data[..k], len) {
            Ok(Parsed::NeedMore { needed }) => {
                assert!(needed as usize > k);
                k = needed as usize;
            }
            _ => break,
        }
    }
    let Ok(g) = Gguf::parse_complete(data) else { return };
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
