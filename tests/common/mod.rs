//! Helpers shared by the integration tests: the GPU, the default model's path, golden files, a
//! seeded RNG.
#![allow(dead_code)]

pub mod exact;
pub mod goldens;
pub mod kernels;
pub mod schema;
pub mod tiny_gguf;

use std::sync::{Arc, OnceLock};
use webllama::{Family, Gpu, Layout};

/// One GPU for the whole test binary (lavapipe on CI).
pub fn gpu() -> Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| Arc::new(pollster::block_on(Gpu::new()).expect("a wgpu adapter (on CI: Mesa lavapipe)"))).clone()
}

/// The shared GPU's own layout (the CPU family on lavapipe).
pub fn layout() -> Layout {
    Layout::of(&gpu())
}

/// The GPU family's layout on the shared GPU, whatever the adapter: the path real GPUs take,
/// checked end to end on lavapipe too.
pub fn gpu_family() -> Layout {
    Layout::family(&gpu(), Family::Gpu)
}

/// The default model (SmolLM2-135M-Instruct Q4_1) in the cache, as `make model` puts it. Absent
/// outside CI: the caller skips, loudly. On CI (CI set) its absence is a failure.
pub fn default_model() -> Option<String> {
    let base = std::env::var("WEBLLAMA_CACHE")
        .unwrap_or_else(|_| format!("{}/.cache/webllama", std::env::var("HOME").unwrap_or_default()));
    let p = format!("{base}/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if std::path::Path::new(&p).exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("the default model is missing at {p} on CI: `make test` runs `make model` first");
    }
    eprintln!("SKIPPED: the default model is not at {p}; run `make model` to run this test");
    None
}

/// A file from ../shared/fixtures (model files too big to copy into the repo; or from
/// WEBLLAMA_SHARED_FIXTURES), or None with a loud skip. On CI (CI set), where ../shared is beside the clone, its absence is a failure.
pub fn shared_fixture(rel: &str) -> Option<String> {
    // WEBLLAMA_SHARED_FIXTURES: another directory (bench/device.sh writes random-weight stand-ins
    // of the same shape on a machine without ../shared).
    let dir = std::env::var("WEBLLAMA_SHARED_FIXTURES")
        .unwrap_or_else(|_| format!("{}/../shared/fixtures", env!("CARGO_MANIFEST_DIR")));
    let p = format!("{dir}/{rel}");
    if std::path::Path::new(&p).exists() {
        return Some(p);
    }
    if std::env::var_os("CI").is_some() {
        panic!("{p} is missing on CI: ../shared/fixtures must be beside the clone");
    }
    eprintln!("SKIPPED: {p} is absent (../shared/fixtures is not checked out beside the repo)");
    None
}

/// A file of the repository (`rel` from its root): the built tree's, or (a test binary carried to
/// another machine, bench/device.sh) the one under the working directory.
pub fn repo_file(rel: &str) -> String {
    let built = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    match std::path::Path::new(&built).exists() {
        true => built,
        false => rel.to_string(),
    }
}

/// A golden JSON file from tests/fixtures (repo_file).
pub fn golden(rel: &str) -> serde_json::Value {
    let p = repo_file(&format!("tests/fixtures/{rel}"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).expect("valid JSON")
}

/// The largest |a - b| over two runs' values; NaN where either has a NaN (so `d < bound` fails;
/// f32::max would skip it).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "as many values");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, |m, d| if m.is_nan() || d.is_nan() { f32::NAN } else { m.max(d) })
}

/// The metadata of a one-layer llama model of width `dim`, feed-forward width `ffn`, `heads`
/// attention heads and `kv_heads` key-value heads (context 64), for files tests write.
pub fn one_layer_llama(
    dim: u64,
    ffn: u64,
    heads: u64,
    kv_heads: u64,
) -> Vec<(&'static str, webllama::format::gguf::Value)> {
    use webllama::format::gguf::Value;
    vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(64)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ]
}

/// A small seeded generator for test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        self.next_u32() as f32 / 2147483648.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// The tiny Llama 3 fixture's header with `added` tokens (text, GGUF token type: 3 control, 4
/// user-defined) appended to its vocabulary, or None with a loud skip (shared_fixture).
pub fn tiny_llama3_with_tokens(added: &[(&str, i32)]) -> Option<webllama::Gguf> {
    use webllama::format::gguf::{Array, Value};
    let path = shared_fixture("tiny/tiny-llama3-Q4_K_M.gguf")?;
    let mut header = webllama::format::weights::read_header(&path).unwrap();
    for (key, value) in header.metadata.iter_mut() {
        match (key.as_str(), value) {
            ("tokenizer.ggml.tokens", Value::Array(Array::String(t))) => {
                t.extend(added.iter().map(|(text, _)| text.to_string()))
            }
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(t))) => t.extend(added.iter().map(|&(_, ty)| ty)),
            ("tokenizer.ggml.token_type", Value::Array(Array::U32(t))) => {
                t.extend(added.iter().map(|&(_, ty)| ty as u32))
            }
            ("tokenizer.ggml.scores", Value::Array(Array::F32(t))) => t.extend(added.iter().map(|_| 0.0)),
            _ => {}
        }
    }
    Some(header)
}
