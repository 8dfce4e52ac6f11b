//! Model hyper-parameters read from the llama.* metadata keys, validated against each other.

use crate::error::{Error, Result};
use crate::format::gguf::Gguf;

/// LLaMA hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// general.architecture ("llama").
    pub arch: String,
    /// Decoder blocks (llama.block_count).
    pub n_layers: usize,
    /// Residual stream width (llama.embedding_length).
    pub dim: usize,
    /// Query heads (llama.attention.head_count).
    pub n_heads: usize,
    /// Key/value heads; fewer than n_heads means grouped-query attention (llama.attention.head_count_kv).
    pub n_kv_heads: usize,
    /// Width of one head (llama.attention.key_length, else dim / n_heads).
    pub head_dim: usize,
    /// Hidden width of the SwiGLU feed-forward (llama.feed_forward_length).
    pub ffn_dim: usize,
    /// RoPE base frequency (llama.rope.freq_base, default 10000).
    pub rope_base: f32,
    /// Multiplier on RoPE angles: 1 / llama.rope.scaling.factor for linear scaling, else 1.
    pub rope_freq_scale: f32,
    /// True when the file has rope_freqs.weight: per-frequency divisors of the RoPE angles
    /// (LLaMA-3.1/3.2 rope scaling, precomputed by the converter).
    pub rope_freqs: bool,
    /// Leading dimensions of each head that RoPE rotates (llama.rope.dimension_count, default head_dim).
    pub n_rot: usize,
    /// RMSNorm epsilon (llama.attention.layer_norm_rms_epsilon).
    pub rms_eps: f32,
    /// Context length the model was trained for (llama.context_length).
    pub ctx_len: usize,
    /// Vocabulary size (rows of token_embd).
    pub vocab_size: usize,
    /// True when there is no output.weight: the output projection reuses token_embd.
    pub tied_output: bool,
}

/// Largest sizes accepted from metadata: far above any real LLaMA, low enough to keep arithmetic safe.
const MAX_WIDTH: u64 = 1 << 17;
const MAX_LAYERS: u64 = 1024;
const MAX_CTX: u64 = 1 << 24;
/// Largest vocabulary (rows of token_embd): real ones are under 300k.
const MAX_VOCAB: u64 = 1 << 24;

impl Config {
    /// Reads and validates the config of an arch "llama" file.
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(Error::UnsupportedArch(arch.to_string()));
        }
        // Mixture of experts in a llama file (Mixtral's layout): named, not a missing ffn_gate.
        let experts = g.opt_u64("llama.expert_count")?.unwrap_or(0);
        let router = g.tensors.iter().find(|t| t.name.contains("ffn_gate_inp"));
        if let Some(t) = router.or_else(|| g.tensors.iter().find(|t| t.name.contains("_exps"))) {
            return Err(Error::BadConfig(format!(
                "{:?} ({experts} experts): mixture-of-experts llama files are not supported yet",
                t.name
            )));
        }
        let get = |key: &str, max: u64| -> Result<usize> {
            let v = g.get_u64(key)?;
            if v == 0 || v > max {
                return Err(Error::BadConfig(format!("{key} is {v}, expected 1 to {max}")));
            }
            Ok(v as usize)
        };
        let opt = |key: &str, max: u64| -> Result<Option<usize>> {
            if g.get(key).is_some() {
                get(key, max).map(Some)
            } else {
                Ok(None)
            }
        };
        let n_layers = get("llama.block_count", MAX_LAYERS)?;
        let dim = get("llama.embedding_length", MAX_WIDTH)?;
        let n_heads = get("llama.attention.head_count", MAX_WIDTH)?;
        let n_kv_heads = opt("llama.attention.head_count_kv", MAX_WIDTH)?.unwrap_or(n_heads);
        let ffn_dim = get("llama.feed_forward_length", MAX_WIDTH * 4)?;
        let ctx_len = get("llama.context_length", MAX_CTX)?;
        if dim % n_heads != 0 && g.get("llama.attention.key_length").is_none() {
            return Err(Error::BadConfig(format!("embedding_length {dim} is not a multiple of head_count {n_heads}")));
        }
        let head_dim = opt("llama.attention.key_length", MAX_WIDTH)?.unwrap_or(dim / n_heads);
        if let Some(v) = opt("llama.attention.value_length", MAX_WIDTH)? {
            if v != head_dim {
                return Err(Error::BadConfig(format!("value_length {v} differs from key_length {head_dim}")));
            }
        }
        if n_heads % n_kv_heads != 0 {
            return Err(Error::BadConfig(format!(
                "head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
            )));
        }
        let n_rot = opt("llama.rope.dimension_count", MAX_WIDTH)?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::BadConfig(format!(
                "rope.dimension_count {n_rot} must be even and at most the head width {head_dim}"
            )));
        }
        let rope_base = g.opt_f32("llama.rope.freq_base")?.unwrap_or(10000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(Error::BadConfig(format!("rope.freq_base is {rope_base}, expected a finite number above 1")));
        }
        let rope_freq_scale = match g.get("llama.rope.scaling.type").and_then(|v| v.as_str()) {
            None | Some("none") => 1.0,
            Some("linear") => {
                let f = g.opt_f32("llama.rope.scaling.factor")?.unwrap_or(1.0);
                if !(f.is_finite() && f >= 1.0) {
                    return Err(Error::BadConfig(format!(
                        "rope.scaling.factor is {f}, expected a finite number of at least 1"
                    )));
                }
                1.0 / f
            }
            // LLaMA-3 scaling is carried by rope_freqs.weight; its keys only describe it.
            Some("llama3") => 1.0,
            Some(other) => {
                return Err(Error::BadConfig(format!("rope.scaling.type {other:?} is not supported (linear, llama3)")))
            }
        };
        let rope_freqs = g.tensor("rope_freqs.weight").is_some();
        let rms_eps = g.opt_f32("llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
        if !(rms_eps.is_finite() && rms_eps > 0.0 && rms_eps < 1.0) {
            return Err(Error::BadConfig(format!("layer_norm_rms_epsilon is {rms_eps}, expected 0 < eps < 1")));
        }
        let embd = g.tensor("token_embd.weight").ok_or_else(|| Error::MissingTensor("token_embd.weight".into()))?;
        if embd.dims.len() != 2 || embd.dims[0] != dim as u64 {
            return Err(Error::BadConfig(format!(
                "token_embd.weight has shape {:?}, expected [{dim}, vocab]",
                embd.dims
            )));
        }
        if embd.dims[1] > MAX_VOCAB {
            return Err(Error::BadConfig(format!(
                "token_embd.weight has {} rows, over the {MAX_VOCAB} a vocabulary may have",
                embd.dims[1]
            )));
        }
        let vocab_size = embd.dims[1] as usize;
        if let Some(v) = opt("llama.vocab_size", MAX_VOCAB)? {
            if v != vocab_size {
                return Err(Error::BadConfig(format!(
                    "llama.vocab_size {v} differs from token_embd rows {vocab_size}"
                )));
            }
        }
        let tied_output = g.tensor("output.weight").is_none();
        Ok(Config {
            arch: arch.to_string(),
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rope_base,
            rope_freq_scale,
            rope_freqs,
            n_rot,
            rms_eps,
            ctx_len,
            vocab_size,
            tied_output,
        })
    }

    /// Width of the query projection (n_heads * head_dim).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    /// Width of one position's keys (or values) in the KV cache (n_kv_heads * head_dim).
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}
