//! Fuzz target: a generation request's options as the page sends them (JSON): parsed into options
//! that pass their own checks, or an InvalidRequest; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webllama::engine::parse_options;
use webllama::Error;

fuzz_target!(|data: &[u8]| {
    let Ok(json) = std::str::from_utf8(data) else { return };
    match parse_options(json) {
        Ok((opts, n)) => {
            opts.check().expect("parsed options pass their checks");
            let s = &opts.sampler;
            assert!(s.temperature.is_finite() && s.top_p.is_finite() && s.min_p.is_finite());
            assert!(s.repetition_penalty > 0.0 && s.frequency_penalty.is_finite() && s.presence_penalty.is_finite());
            assert!(opts.max_tokens > 0 && (1..=8).contains(&n));
        }
        Err(Error::InvalidRequest(_)) => {}
        Err(e) => panic!("not an InvalidRequest: {e}"),
    }
});
