//! The GGUF reader and model config on real and malformed files: every failure is a named error,
//! never a panic, a hang or a giant allocation.

mod common;

use common::tiny_gguf::{load, tiny};
use std::time::Instant;
use webllama::format::gguf::{Array, Gguf, Parsed, Value};
use webllama::format::gguf_parse::HeaderStream;
use webllama::format::gguf_write as writer;
use webllama::format::weights;
use webllama::{Config, Error, QuantType};

/// The tiny file unedited.
fn valid() -> Vec<u8> {
    tiny(|_| {}, |_| {})
}

#[test]
fn the_valid_tiny_file_parses() {
    let bytes = valid();
    let g = Gguf::parse_complete(&bytes).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.tensors.len(), 11);
    assert_eq!(g.get("general.misc"), Some(&Value::Array(Array::U16(vec![1, 2]))));
    let Some(Array::Array(tags)) = g.get("general.tags").unwrap().as_array() else { panic!("tags") };
    assert_eq!(tags[0], Array::I8(vec![-1, 2]));
    let c = load(&bytes).unwrap();
    assert_eq!((c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size), (1, 64, 4, 2, 16, 32));
    assert!(c.tied_output);
    let t = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert_eq!(t.offset % 32, 0);
    assert_eq!(t.n_bytes, 64 * 128 / 32 * 34);
}

#[test]
fn streaming_prefixes_ask_for_more_until_the_header_is_complete() {
    let bytes = valid();
    let full = Gguf::parse_complete(&bytes).unwrap();
    let len = Some(bytes.len() as u64);
    let mut k = 0usize;
    let mut asks = 0;
    loop {
        match Gguf::parse(&bytes[..k], len).unwrap() {
            Parsed::NeedMore { needed } => {
                assert!(needed as usize > k, "needs more than it has");
                k = needed as usize;
                asks += 1;
            }
            Parsed::Done(g) => {
                assert_eq!(g.tensors, full.tensors);
                break;
            }
        }
    }
    assert!(asks > 5);
    assert!(k <= full.data_offset as usize, "the header is complete before the tensor data");
}

/// A header streamed in chunks of any size (HeaderStream, as the page reads a download) ends where
/// the whole parse does, keeps every byte received, and needs the file's end only where the file
/// ends inside the header.
#[test]
fn a_header_streamed_in_chunks_equals_the_whole_parse() {
    let bytes = valid();
    let full = Gguf::parse_complete(&bytes).unwrap();
    for len in [Some(bytes.len() as u64), None] {
        for chunk in [1, 7, 64, 4096, bytes.len()] {
            let mut s = HeaderStream::new(len);
            let mut pushed = 0;
            for c in bytes.chunks(chunk) {
                pushed += c.len();
                if s.push(c).unwrap() {
                    break;
                }
            }
            assert!(pushed as u64 >= full.data_offset - 32, "chunk {chunk}: done after {pushed} bytes");
            s.end().unwrap();
            let (g, kept) = s.into_parts().unwrap();
            assert_eq!((g.tensors, g.metadata), (full.tensors.clone(), full.metadata.clone()), "chunk {chunk}");
            assert_eq!(kept, bytes[..pushed], "chunk {chunk}: the bytes received are kept");
        }
    }
    // A file that ends inside its header: a Truncated error at the end, with or without a length.
    let cut = &bytes[..full.data_offset as usize / 2];
    for len in [Some(cut.len() as u64), None] {
        let mut s = HeaderStream::new(len);
        let pushed = cut.chunks(100).try_for_each(|c| s.push(c).map(|_| ()));
        let e = pushed.and_then(|_| s.end()).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{e}");
    }
}

/// The streamed parse is linear in the header's size: a 250,000-token vocabulary (a 4 MB header)
/// pushed 1 KiB at a time (the old worker parsed the whole prefix again for every chunk: ~16 GB of
/// parsing) is read in well under a second; its metadata takes about what it takes in the file.
#[test]
fn a_large_header_streams_in_linear_time() {
    let n = 250_000;
    let tokens: Vec<String> = (0..n).map(|i| format!("tok{i}")).collect();
    let meta = [
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::U8(vec![1; n]))),
    ];
    let bytes = writer::build(&meta, &[]);
    assert!(bytes.len() > 4_000_000);
    let t = Instant::now();
    let mut s = HeaderStream::new(None);
    let mut done = false;
    for c in bytes.chunks(1024) {
        done = s.push(c).unwrap();
        if done {
            break;
        }
    }
    if !done {
        s.end().unwrap();
    }
    let took = t.elapsed();
    assert!(took.as_millis() < 1000, "streaming a {} byte header took {took:?}", bytes.len());
    let (g, _) = s.into_parts().unwrap();
    assert_eq!(g.get_array("tokenizer.ggml.token_type").unwrap(), &Array::U8(vec![1; n]));
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), n);
}

/// A header larger than MAX_HEADER is refused by name once that many bytes have come, whether or
/// not the file's length is known (a chunked download of a file of endless metadata), and at once
/// when the length is known and the declared sizes reach past the cap.
#[test]
fn a_header_over_the_cap_is_refused() {
    use webllama::format::gguf::MAX_HEADER;
    // Eight 12 MiB strings: 96 MiB of metadata.
    let big = "x".repeat(12 << 20);
    let keys: Vec<String> = (0..8).map(|i| format!("general.big{i}")).collect();
    let meta: Vec<(&str, Value)> = keys.iter().map(|k| (k.as_str(), Value::String(big.clone()))).collect();
    let bytes = writer::build(&meta, &[]);
    let mut s = HeaderStream::new(None);
    let mut result = Ok(false);
    let mut pushed = 0u64;
    for c in bytes.chunks(1 << 20) {
        pushed += c.len() as u64;
        result = s.push(c);
        if result.is_err() {
            break;
        }
    }
    let e = result.unwrap_err();
    assert!(matches!(&e, Error::OverLimit { what, limit, .. } if what == "header size" && *limit == MAX_HEADER), "{e}");
    assert!(pushed <= MAX_HEADER + (1 << 20), "refused after {pushed} bytes");
    let e = load(&bytes).unwrap_err();
    assert!(matches!(&e, Error::OverLimit { what, .. } if what == "header size"), "{e}");
}

#[test]
fn every_truncation_is_a_named_error() {
    let bytes = valid();
    for cut in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        match load(&bytes[..cut]) {
            Err(Error::Truncated { .. }) => {}
            other => panic!("truncated at {cut} of {}: {other:?}", bytes.len()),
        }
    }
}

#[test]
fn bad_magic_and_version() {
    let mut b = valid();
    b[0] = b'X';
    assert!(matches!(load(&b), Err(Error::BadMagic { .. })));
    for v in [1u32, 4, 0xffff_ffff] {
        let mut b = valid();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        assert!(matches!(load(&b), Err(Error::UnsupportedVersion(x)) if x == v));
    }
}

#[test]
fn absurd_counts_and_lengths_are_refused_without_allocating() {
    // Tensor count and metadata count (header offsets 8 and 16).
    for (at, what) in [(8usize, "tensor count"), (16, "metadata count")] {
        let mut b = valid();
        b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let e = load(&b).unwrap_err();
        assert!(matches!(&e, Error::OverLimit { what: w, .. } if w == what), "{e}");
    }
    // The first key's length (offset 24).
    let mut b = valid();
    b[24..32].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(load(&b), Err(Error::OverLimit { .. })));
    // An array whose length the file cannot hold: refused before reading it.
    let b = tiny(|m| m.push(("general.huge", Value::Array(Array::U64(vec![1; 3])))), |_| {});
    let pos = b.windows(12).position(|w| w == b"general.huge").unwrap() + 12 + 4 + 4;
    let mut b = b;
    b[pos..pos + 8].copy_from_slice(&((1u64 << 24) - 1).to_le_bytes());
    assert!(matches!(load(&b), Err(Error::Truncated { .. })), "{:?}", load(&b));
    b[pos..pos + 8].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(matches!(load(&b), Err(Error::OverLimit { .. })));
}

#[test]
fn unknown_value_and_tensor_types() {
    let b = valid();
    // The first value's type id sits after the first key.
    let key_end = 24 + 8 + "general.architecture".len();
    let mut bad = b.clone();
    bad[key_end..key_end + 4].copy_from_slice(&99u32.to_le_bytes());
    assert!(matches!(load(&bad), Err(Error::UnknownValueType { type_id: 99, .. })));
    let e = load(&tiny(|_| {}, |t| t[3].2 = 77)).unwrap_err();
    assert!(
        matches!(&e, Error::BadTensor { tensor, msg } if tensor == "blk.0.attn_q.weight" && msg.contains("77")),
        "{e}"
    );
}

/// A tensor as the test files write it: name, dims, ggml type, bytes.
type TensorSpec = (&'static str, Vec<u64>, u32, Vec<u8>);
/// A change to a file's tensors and the words its error must contain.
type Corruption = (Box<dyn Fn(&mut Vec<TensorSpec>)>, &'static str);

#[test]
fn bad_tensor_infos() {
    // More than 4 dims, a zero dim, a row length that is not whole blocks, overflowing dims.
    let cases: Vec<Corruption> = vec![
        (Box::new(|t| t[1].1 = vec![1, 1, 1, 1, 64]), "dimensions"),
        (Box::new(|t| t[1].1 = vec![0]), "zero dimension"),
        (Box::new(|t| t[3].1 = vec![48, 64]), "not a multiple"),
        (Box::new(|t| t[3].1 = vec![1 << 32, 1 << 32]), "overflow"),
    ];
    for (edit, want) in cases {
        let e = load(&tiny(|_| {}, edit)).unwrap_err();
        assert!(matches!(&e, Error::BadTensor { msg, .. } if msg.contains(want)), "{want}: {e}");
    }
    // A data offset past the end of the file.
    let b = valid();
    let g = Gguf::parse_complete(&b).unwrap();
    let name = b"output_norm.weight";
    let at = b.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 8 + 4;
    let mut bad = b.clone();
    bad[at..at + 8].copy_from_slice(&(g.data_end() * 2).div_ceil(32).checked_mul(32).unwrap().to_le_bytes());
    assert!(matches!(load(&bad), Err(Error::Truncated { what, .. }) if what.contains("output_norm")));
    // A misaligned one.
    bad[at..at + 8].copy_from_slice(&5u64.to_le_bytes());
    assert!(matches!(load(&bad), Err(Error::BadTensor { msg, .. }) if msg.contains("alignment")));
    // One whose data overlaps another tensor's.
    let other = g.tensors.iter().find(|t| t.name != "output_norm.weight").unwrap();
    bad[at..at + 8].copy_from_slice(&(other.offset - g.data_offset).to_le_bytes());
    let e = load(&bad).unwrap_err();
    assert!(
        matches!(&e, Error::BadTensor { tensor, msg } if tensor.contains("weight") && msg.contains("overlaps")),
        "{e}"
    );
}

#[test]
fn unsupported_quant_types_name_the_tensor() {
    // An IQ2_XXS tensor (ggml id 16): 256-element blocks of 66 bytes.
    let e = load(&tiny(
        |_| {},
        |t| {
            t[9].1 = vec![256, 32];
            t[9].2 = 16;
            t[9].3 = vec![0; 32 * 66];
        },
    ))
    .unwrap_err();
    assert!(e.to_string().contains("blk.0.ffn_up.weight"), "{e}");
}

#[test]
fn real_default_model_header() {
    let Some(path) = common::default_model() else { return };
    let g = weights::read_header(&path).unwrap();
    assert_eq!((g.version, g.tensors.len(), g.metadata.len()), (3, 272, 33));
    assert_eq!(g.data_offset, 1_785_664);
    assert_eq!(g.tensor("token_embd.weight").unwrap().ty, QuantType::Q8_0);
    let c = Config::from_gguf(&g).unwrap();
    assert_eq!(
        (c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.ffn_dim, c.vocab_size, c.ctx_len),
        (30, 576, 9, 3, 1536, 49152, 8192)
    );
    assert!(c.tied_output);
    weights::check(&g, &c).unwrap();
}

/// `webllama generate` on malformed files and files of an architecture or type it does not run: a
/// non-zero exit and one line of error naming the problem, no panic, in well under a second for
/// header errors.
#[test]
fn the_cli_refuses_malformed_files_with_one_line() {
    let dir = std::env::temp_dir().join(format!("webllama-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = valid();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    let mut huge_count = good.clone();
    huge_count[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let gemma = tiny(
        |m| {
            m.iter_mut().filter(|(k, _)| *k == "general.architecture").for_each(|e| e.1 = Value::String("gemma".into()))
        },
        |_| {},
    );
    // An IQ2_XXS tensor (ggml id 16), a type webllama does not decode.
    let iq2 = tiny(|_| {}, |t| (t[9].1, t[9].2, t[9].3) = (vec![256, 32], 16, vec![0; 32 * 66]));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unsupported-architecture", gemma, "unsupported architecture \"gemma\""),
        ("unsupported-type", iq2, "IQ2_XXS"),
        ("empty", vec![], "truncated"),
        ("bad-magic", bad_magic, "not a GGUF file"),
        ("huge-count", huge_count, "tensor count"),
        ("header-cut", good[..good.len() / 3].to_vec(), "truncated"),
        ("data-cut", good[..good.len() - 10].to_vec(), "truncated"),
    ];
    for (name, bytes, want) in cases {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        let args = ["generate", "--model", path.to_str().unwrap(), "--prompt", "hi", "--max-tokens", "1"];
        let (_, took, _) = refused_by_cli(name, &args, want);
        // The CPU time the refusal took, not the wall-clock time: `make test` runs this beside the
        // browser tests, whose SwiftShader can hold both cores of CI's machine (a refusal that
        // takes 50 ms alone once took 1.2 s of wall-clock time there).
        if name != "data-cut" {
            assert!(took.cpu.as_millis() < 1000 && took.wall.as_secs() < 10, "{name}: took {took:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The loader's integrity check: a SHA-256 over exactly the bytes fed, in order, from the first on;
/// a mismatch (one byte changed) or bytes out of order is an Integrity error naming the digests.
#[test]
fn integrity_is_computed_over_the_bytes_fed() {
    use webllama::format::integrity::Integrity;
    let bytes = valid();
    let hex = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let feed = |data: &[u8], chunk: usize| {
        let mut check = Integrity::new(&hex).unwrap();
        for (i, c) in data.chunks(chunk).enumerate() {
            check.update((i * chunk) as u64, c)?;
        }
        check.check()
    };
    assert!(feed(&bytes, 1000).is_ok());
    assert!(feed(&bytes, 7).is_ok());
    let mut tampered = bytes.clone();
    *tampered.last_mut().unwrap() ^= 0x40;
    let e = feed(&tampered, 1000).unwrap_err();
    assert!(matches!(&e, Error::Integrity(m) if m.contains("has SHA-256") && m.contains(&hex)), "{e}");
    assert!(feed(&bytes[..bytes.len() - 1], 1000).is_err(), "a byte short");
    let mut check = Integrity::new(&hex).unwrap();
    check.update(0, &bytes[..10]).unwrap();
    assert!(matches!(check.update(20, &bytes[20..30]), Err(Error::Integrity(m)) if m.contains("out of order")));
    assert!(matches!(Integrity::new("abc"), Err(Error::InvalidRequest(_))));
}

/// A byte-level vocabulary of 32 one-letter tokens (no merges) for files that must get as far as
/// the tokenizer and the chat template.
fn with_vocab(m: &mut Vec<(&'static str, Value)>) {
    let tokens: Vec<String> =
        (0..32u8).map(|i| ((b'a' + i % 26) as char).to_string().repeat(1 + i as usize / 26)).collect();
    m.push(("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))));
    m.push(("tokenizer.ggml.merges", Value::Array(Array::String(vec![]))));
    m.push(("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; 32]))));
}

/// What a CLI run took: the wall-clock time, and the CPU time (user and system) of its process as
/// /proc/<pid>/stat last showed it (sampled every 5 ms; in USER_HZ ticks, 100 a second on Linux).
#[derive(Debug)]
struct Took {
    wall: std::time::Duration,
    cpu: std::time::Duration,
}

/// Runs the CLI on `args`; (exit ok, stderr, peak resident bytes as /proc sampled it every 5 ms,
/// what it took).
fn run_cli(args: &[&str]) -> (bool, String, u64, Took) {
    use std::io::Read;
    let t = Instant::now();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_webllama"))
        .args(args)
        .env("XDG_RUNTIME_DIR", "/tmp")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let stat_file = format!("/proc/{}/stat", child.id());
    let (mut peak, mut ticks) = (0u64, 0u64);
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            let hwm = s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().strip_suffix("kB"));
            peak = peak.max(hwm.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0) * 1024);
        }
        // After the command's closing parenthesis: the state, ..., utime (12th) and stime (13th).
        if let Some((_, rest)) = std::fs::read_to_string(&stat_file).ok().as_deref().and_then(|s| s.rsplit_once(')')) {
            let f: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse().ok()).collect();
            ticks = ticks.max(f.iter().sum());
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed().as_secs() < 60, "{args:?} still running after 60 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    let cpu = std::time::Duration::from_millis(ticks * 10);
    (status.success(), stderr, peak, Took { wall: t.elapsed(), cpu })
}

/// Runs the CLI on `args` and checks that it refuses: a non-zero exit, no panic or failed
/// allocation, one error line that mentions `want`. (That line, the time, the peak resident bytes.)
fn refused_by_cli(name: &str, args: &[&str], want: &str) -> (String, Took, u64) {
    let (ok, stderr, peak, took) = run_cli(args);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(!ok, "{name}: succeeded");
    assert!(!stderr.contains("panicked") && !stderr.contains("memory allocation"), "{name}: {stderr}");
    assert_eq!(lines.len(), 1, "{name}: one error line, got {stderr:?}");
    assert!(lines[0].contains(want), "{name}: {:?} should mention {want:?}", lines[0]);
    (lines[0].to_string(), took, peak)
}

/// Every hostile file of the hardening review, through `webllama generate`: a non-zero exit with one
/// error line naming the problem, in under 30 s and under 2 GB of memory; never a panic, a hang or
/// an out-of-memory abort.
#[test]
fn hostile_files_get_a_named_error_fast_and_in_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("webllama-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let q8 = |rows: u64| (vec![64, rows], 8u32, QuantType::Q8_0.quantize(&vec![0.5; rows as usize * 64]).unwrap());
    let spm_bomb = tiny(
        |m| {
            let mut tokens = vec!["<unk>".to_string(), "<s>".to_string(), "</s>".to_string()];
            tokens.extend((1..=3000).map(|k| "a".repeat(k)));
            m.retain(|(k, _)| *k != "tokenizer.ggml.model");
            m.push(("tokenizer.ggml.model", Value::String("llama".into())));
            m.push(("tokenizer.ggml.scores", Value::Array(Array::F32(vec![0.0; tokens.len()]))));
            m.push(("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1; tokens.len()]))));
            m.push(("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))));
        },
        |t| (t[0].1, t[0].2, t[0].3) = q8(3003),
    );
    let template = |source: &'static str| {
        tiny(
            move |m| {
                with_vocab(m);
                m.push(("tokenizer.chat_template", Value::String(source.into())));
            },
            |_| {},
        )
    };
    let loops = template("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}");
    let indent = template("{{ messages | tojson(indent=1000000000) }}");
    // 48 MiB of U8 metadata (three arrays at the length limit): ~1.6 GB when each element was a Value.
    let u8_blob = tiny(
        |m| {
            for k in ["general.blob0", "general.blob1", "general.blob2"] {
                m.push((k, Value::Array(Array::U8(vec![7; 16 << 20]))));
            }
        },
        |_| {},
    );
    // Three million tokens for a token_embd of 32 rows: refused before the tokenizer is built.
    let many_tokens = tiny(
        |m| m.push(("tokenizer.ggml.tokens", Value::Array(Array::String(vec![String::new(); 3_000_000])))),
        |_| {},
    );
    let big = "x".repeat(12 << 20);
    let huge_header = tiny(
        |m| {
            for k in ["general.big0", "general.big1", "general.big2", "general.big3", "general.big4", "general.big5"] {
                m.push((k, Value::String(big.clone())));
            }
        },
        |_| {},
    );
    // (name, file, words of the error, most memory in MB: 2 GB, or well under what it took before).
    let cases: Vec<(&str, Vec<u8>, &str, u64)> = vec![
        ("spm-bomb", spm_bomb, "bytes long", 2000),
        ("template-loops", loops, "chat template", 2000),
        ("template-indent", indent, "chat template", 2000),
        ("u8-blob", u8_blob, "tokenizer.ggml.tokens", 600),
        ("many-tokens", many_tokens, "3000000 tokens", 2000),
        ("huge-header", huge_header, "header size", 2000),
    ];
    for (name, bytes, want, most_mb) in cases {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        let path = path.to_str().unwrap();
        let args = ["generate", "--model", path, "--chat", "hi", "--max-tokens", "1", "--ctx", "64"];
        let (line, took, peak) = refused_by_cli(name, &args, want);
        assert!(took.wall.as_secs() < 30, "{name}: took {took:?}");
        assert!(peak < most_mb * 1_000_000, "{name}: peak memory {peak} bytes");
        eprintln!("{name}: {took:?}, peak {:.0} MB: {line}", peak as f64 / 1e6);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A split model's later parts are checked as each is read: its number, the tensors held so far
/// (at most split::MAX_TENSORS), and offsets that would pass 2^64 once placed after the parts
/// before it (a part's length is the server's Content-Length) are refused by name, not wrapped.
#[test]
fn split_parts_are_checked_as_they_are_read() {
    use webllama::format::split::{self, Part, MAX_TENSORS};
    let part = |no: u16, name: &str| {
        let meta = [("split.no", Value::U16(no)), ("split.count", Value::U16(2))];
        Gguf::parse_complete(&writer::build(&meta, &[(name, vec![4], 0, vec![0; 16])])).unwrap()
    };
    let bad = |r: Result<Gguf, Error>, want: &str| match r {
        Err(e) => assert!(e.to_string().contains(want), "{want}: {e}"),
        Ok(_) => panic!("{want}: taken"),
    };
    assert!(Part::read(part(1, "b"), 2, 100, 1).is_err(), "part 1 read as part 2");
    let held = Part::read(part(1, "b"), 1, 100, MAX_TENSORS).map(|_| ());
    assert!(matches!(held, Err(Error::BadMetadata { msg, .. }) if msg.contains("over 65536 tensors")));
    let second = || Part::read(part(1, "b"), 1, 100, 1).unwrap();
    bad(split::merge(part(0, "a"), vec![second()], u64::MAX - 8), "part 1 ends past 2^64 bytes");
    let whole = split::merge(part(0, "a"), vec![second()], 1000).unwrap();
    assert_eq!(whole.tensor("b").unwrap().offset, 1000 + part(1, "b").tensor("b").unwrap().offset);
}

/// The tokenizer and chat template are checked from the header, before the weights: a file whose
/// template does not compile is refused as such before a byte of it is uploaded (in the page, before
/// its download; before, after it).
#[test]
fn a_broken_template_is_refused_before_the_weights() {
    let bytes = tiny(
        |m| {
            with_vocab(m);
            m.push(("tokenizer.chat_template", Value::String("{% for %}".into())));
        },
        |_| {},
    );
    let path = std::env::temp_dir().join(format!("webllama-broken-template-{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes).unwrap();
    // A device of its own: nothing else allocates on it meanwhile.
    let gpu = std::sync::Arc::new(pollster::block_on(webllama::Gpu::new()).unwrap());
    let layout = webllama::Layout::of(&gpu);
    let r = webllama::Session::load_file(gpu.clone(), layout, path.to_str().unwrap(), Some(16));
    std::fs::remove_file(&path).ok();
    match r {
        Err(Error::Template(m)) => assert!(m.contains("syntax"), "{m}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("taken"),
    }
    assert_eq!(gpu.bytes_allocated(), 0, "no weight uploaded");
}
