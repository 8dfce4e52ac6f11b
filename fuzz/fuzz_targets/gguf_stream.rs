//! Fuzz target: a GGUF header streamed with no known length (a chunked download), in chunks whose
//! sizes the input picks: it ends as the prefix parse does (the same header, or both fail; a stream
//! that ends inside its header has the length it got), never
//! holds more than the header cap and one chunk, and never panics or hangs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webllama::format::gguf::{Gguf, Parsed, MAX_HEADER};
use webllama::format::gguf_parse::HeaderStream;

fuzz_target!(|input: &[u8]| {
    let (sizes, data) = input.split_at(input.len().min(4));
    let mut stream = HeaderStream::new(None);
    let mut at = 0;
    let mut k = 0;
    let mut outcome = Ok(false);
    while at < data.len() {
        let n = 1 + sizes.get(k % sizes.len().max(1)).copied().unwrap_or(64) as usize;
        let chunk = &data[at..(at + n).min(data.len())];
        at += chunk.len();
        k += 1;
        outcome = stream.push(chunk);
        if !matches!(outcome, Ok(false)) {
            break;
        }
        assert!(stream.received() <= MAX_HEADER + 256, "held {} bytes", stream.received());
    }
    // A stream that ends before its header completes has a length: the bytes it got.
    let (streamed, len) = match outcome {
        Ok(true) => (Ok(()), None),
        Ok(false) => (stream.end(), Some(at as u64)),
        Err(e) => (Err(e), None),
    };
    let prefix = Gguf::parse(&data[..at], len);
    match (streamed, prefix) {
        (Ok(()), Ok(Parsed::Done(g))) => {
            let (s, _) = stream.into_parts().expect("a complete header");
            assert_eq!((s.tensors, s.metadata.len(), s.data_offset), (g.tensors, g.metadata.len(), g.data_offset));
        }
        (Err(_), Err(_)) | (Err(_), Ok(Parsed::NeedMore { .. })) => {}
        (s, p) => panic!("streamed {:?} but the prefix parse {:?}", s.is_ok(), p.map(|p| matches!(p, Parsed::Done(_)))),
    }
});
