//! Model hyper-parameters read from the `<arch>.*` metadata keys, validated against each other; the
//! architectures that load (llama, qwen2, qwen3, phi3, granite, gemma2, gemma3, smollm3) and how each differs from
//! the LLaMA decoder.

use crate::error::{Error, Result};
use crate::format::gguf::{Array, Gguf};

/// How an architecture's attention input differs from LLaMA's: q = rope(Wq xb), k = rope(Wk xb).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchTraits {
    /// general.architecture.
    pub name: &'static str,
    /// RoPE rotates the two halves of each head's first n_rot dims, (x[i], x[i + n_rot/2]) (<arch>.cpp's
    /// NEOX mode), instead of adjacent pairs (x[2i], x[2i+1]).
    pub rope_neox: bool,
    /// q, k and v have biases, blk.N.attn_{q,k,v}.bias, added after the projections.
    pub qkv_bias: bool,
    /// q and k are RMS-normed per head (blk.N.attn_{q,k}_norm.weight, [head_dim]) before RoPE.
    pub qk_norm: bool,
}

/// The architectures that load: the LLaMA decoder with these differences.
pub const ARCHITECTURES: &[ArchTraits] = &[
    ArchTraits { name: "llama", rope_neox: false, qkv_bias: false, qk_norm: false },
    ArchTraits { name: "qwen2", rope_neox: true, qkv_bias: true, qk_norm: false },
    ArchTraits { name: "qwen3", rope_neox: true, qkv_bias: false, qk_norm: true },
    // Phi-3 and Phi-3.5 (llama.cpp's phi3 graph): LLaMA's decoder with NEOX RoPE, its matrices
    // stored fused (Config::phi3_layout), LongRoPE's factors (Config::rope_long_short).
    ArchTraits { name: "phi3", rope_neox: true, qkv_bias: false, qk_norm: false },
    // IBM Granite 3.x (llama.cpp's granite graph): LLaMA's decoder with its multipliers
    // (Config::multipliers).
    ArchTraits { name: "granite", rope_neox: false, qkv_bias: false, qk_norm: false },
    // Google Gemma 3 (llama.cpp's gemma3 graph, text only): qwen3's q and k with GeGLU, norms after
    // the attention and the feed-forward too, sliding-window layers (Config::gemma), the embedding
    // scaled by sqrt(dim).
    ArchTraits { name: "gemma3", rope_neox: true, qkv_bias: false, qk_norm: true },
    // Google Gemma 2 (llama.cpp's gemma2 graph): gemma3's layers without q and k norms, its
    // attention's scores and its logits soft-capped (Config::gemma).
    ArchTraits { name: "gemma2", rope_neox: true, qkv_bias: false, qk_norm: false },
    // Hugging Face SmolLM3 (llama.cpp's smollm3 graph): LLaMA's decoder in which every 4th layer
    // has no RoPE (Config::no_rope_step).
    ArchTraits { name: "smollm3", rope_neox: false, qkv_bias: false, qk_norm: false },
];

/// The projections that add a bias after their matrix: qwen2's q, k and v always; in a llama file
/// (IBM Granite Code 3B/8B, Bielik, llamafied Qwen-1) whichever group the file carries, as
/// llama.cpp's llama graph adds them. Each group's tensors are all there or the file is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Biases {
    /// blk.N.attn_{q,k,v}.bias ([q_dim], [kv_dim], [kv_dim]).
    pub qkv: bool,
    /// blk.N.attn_output.bias ([dim]), added with Wo's product.
    pub out: bool,
    /// blk.N.ffn_{gate,up}.bias ([ffn_dim], before SwiGLU) and ffn_down.bias ([dim]).
    pub ffn: bool,
}

/// A phi3 file's fused matrices: q | k | v in one attn_qkv.weight ([dim, q_dim + 2 kv_dim]) where the
/// file has it (llama.cpp also reads them apart), and gate | up always in ffn_up.weight ([dim,
/// 2 ffn_dim]: SwiGLU's gate is its first half).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phi3Layout {
    pub fused_qkv: bool,
    pub packed_gate_up: bool,
}

/// The decoder's multipliers: granite's (<arch>.embedding_scale, .residual_scale, .attention.scale,
/// .logit_scale), Gemma's (sqrt(dim) on the embedding, its query scale); 1, 1, none and 1 in other
/// files. x = embedding * embedding_scale; each layer adds residual_scale * its attention's and its
/// feed-forward's output to x; attention scores are q k^T * attention_scale (in place of
/// 1 / sqrt(head_dim)); logits are divided by logit_scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multipliers {
    pub embedding_scale: f32,
    pub residual_scale: f32,
    pub attention_scale: Option<f32>,
    pub logit_scale: f32,
}

impl Default for Multipliers {
    fn default() -> Multipliers {
        Multipliers { embedding_scale: 1.0, residual_scale: 1.0, attention_scale: None, logit_scale: 1.0 }
    }
}

/// Gemma 2's and 3's layers (llama.cpp's gemma2 and gemma3 graphs): each adds rmsnorm(its attention's output) *
/// post_attention_norm and rmsnorm(its feed-forward's) * post_ffw_norm to x, the feed-forward is GeGLU
/// (gelu(gate) * up, GELU's tanh form), and the sliding-window layers see only the last `window`
/// positions (their own included) and may rotate with their own RoPE base; Gemma 2 soft-caps its
/// attention's scores and its logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Gemma {
    /// Positions a sliding-window layer's query sees (<arch>.attention.sliding_window); 0: every
    /// layer sees all of them.
    pub window: usize,
    /// Per layer: a sliding-window one (<arch>.attention.sliding_window_pattern: one bool a layer,
    /// or a period n where every n-th layer is global; where the file gives neither, 6 in Gemma 3
    /// and 2 in Gemma 2).
    pub swa_layers: Vec<bool>,
    /// RoPE base of the sliding-window layers (<arch>.rope.freq_base_swa; default 10000 in Gemma 3,
    /// the global layers' in Gemma 2) and multiplier of their angles (1 in Gemma 3, the global
    /// layers' in Gemma 2).
    pub swa_rope_base: f32,
    pub swa_rope_scale: f32,
    /// Gemma 2's soft-caps (0: none): attention scores become c * tanh(s / c)
    /// (<arch>.attn_logit_softcapping, 50), and so do the logits (<arch>.final_logit_softcapping, 30).
    pub attn_softcap: f32,
    pub final_softcap: f32,
}

/// LLaMA-family hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// general.architecture ("llama", "qwen2", "qwen3", "phi3", "granite", "gemma2", "gemma3",
    /// "smollm3").
    pub arch: String,
    /// What the architecture changes in the decoder.
    pub traits: ArchTraits,
    /// Which projections add a bias (qwen2's q, k, v; any of the groups in a llama file).
    pub biases: Biases,
    /// How the file stores the layers' matrices where it fuses them (phi3).
    pub phi3_layout: Phi3Layout,
    /// Granite's and Gemma's multipliers (ones elsewhere).
    pub multipliers: Multipliers,
    /// Gemma 2's and 3's post-norms, GeGLU, sliding windows and soft-caps (None elsewhere).
    pub gemma: Option<Gemma>,
    /// Every this-many-th layer (layers step - 1, 2 step - 1, ...) rotates neither q nor k
    /// (SmolLM3's 4, as llama.cpp's smollm3 has it); 0: every layer rotates.
    pub no_rope_step: usize,
    /// Decoder blocks (<arch>.block_count).
    pub n_layers: usize,
    /// Residual stream width (<arch>.embedding_length).
    pub dim: usize,
    /// Query heads (<arch>.attention.head_count).
    pub n_heads: usize,
    /// Key/value heads; fewer than n_heads means grouped-query attention (<arch>.attention.head_count_kv).
    pub n_kv_heads: usize,
    /// Width of one head (<arch>.attention.key_length, else dim / n_heads).
    pub head_dim: usize,
    /// Hidden width of the SwiGLU feed-forward (<arch>.feed_forward_length).
    pub ffn_dim: usize,
    /// RoPE base frequency (<arch>.rope.freq_base, default 10000).
    pub rope_base: f32,
    /// Multiplier on RoPE angles: 1 / <arch>.rope.scaling.factor for linear scaling, else 1.
    pub rope_freq_scale: f32,
    /// True when the file has rope_freqs.weight: per-frequency divisors of the RoPE angles
    /// (LLaMA-3.1/3.2 rope scaling, precomputed by the converter).
    pub rope_freqs: bool,
    /// Phi-3's LongRoPE: the context it was trained for (<arch>.rope.scaling.original_context_length)
    /// when the file has rope_factors_long.weight and rope_factors_short.weight, the divisors for a
    /// context above it and for one within it (llama.cpp chooses by the context it runs with).
    pub rope_long_short: Option<usize>,
    /// Multiplier of the rotated dimensions of q and k (<arch>.rope.scaling.attn_factor, Phi-3.5's
    /// LongRoPE; 1 elsewhere): the attention's scores scale by its square.
    pub rope_attn_factor: f32,
    /// Leading dimensions of each head that RoPE rotates (<arch>.rope.dimension_count, default head_dim).
    pub n_rot: usize,
    /// RMSNorm epsilon (<arch>.attention.layer_norm_rms_epsilon).
    pub rms_eps: f32,
    /// Context length the model was trained for (<arch>.context_length).
    pub ctx_len: usize,
    /// Vocabulary size (rows of token_embd).
    pub vocab_size: usize,
    /// True when there is no output.weight: the output projection reuses token_embd.
    pub tied_output: bool,
    /// Experts per layer in a mixture-of-experts feed-forward (<arch>.expert_count; 0: dense).
    pub n_experts: usize,
    /// Experts each token runs (<arch>.expert_used_count).
    pub n_experts_used: usize,
}

/// Largest sizes accepted from metadata: far above any real LLaMA, low enough to keep arithmetic safe.
const MAX_WIDTH: u64 = 1 << 17;
const MAX_LAYERS: u64 = 1024;
const MAX_CTX: u64 = 1 << 24;
/// Most experts per layer: real mixtures have up to 256.
const MAX_EXPERTS: u64 = 256;
/// Largest vocabulary (rows of token_embd): real ones are under 300k.
const MAX_VOCAB: u64 = 1 << 24;

impl Config {
    /// Reads and validates the config of a file of one of the ARCHITECTURES.
    pub fn from_gguf(g: &Gguf) -> Result<Config> {
        let arch = g.get_str("general.architecture")?;
        let traits =
            *ARCHITECTURES.iter().find(|a| a.name == arch).ok_or_else(|| Error::UnsupportedArch(arch.to_string()))?;
        // Every hyper-parameter key is prefixed with the architecture's name.
        let k = |key: &str| format!("{arch}.{key}");
        // Mixture of experts (Mixtral's layout in a llama file): expert_count experts per layer,
        // expert_used_count of them run per token.
        let n_experts = g.opt_u64(&k("expert_count"))?.unwrap_or(0);
        let n_experts_used = g.opt_u64(&k("expert_used_count"))?.unwrap_or(0);
        let named = |part: &str| g.tensors.iter().find(|t| t.name.contains(part));
        let router = named("ffn_gate_inp").or_else(|| named("_exps"));
        if let Some(t) = router.filter(|_| n_experts == 0 || arch != "llama") {
            return Err(Error::BadConfig(format!(
                "{:?} ({n_experts} experts): mixture-of-experts {arch} files are not supported",
                t.name
            )));
        }
        // Mixtral conversions of late 2023 stored each expert apart (blk.0.ffn_gate.0.weight);
        // llama.cpp no longer reads them either.
        let per_expert = |name: &str| {
            ["ffn_gate.", "ffn_up.", "ffn_down."]
                .iter()
                .any(|m| name.split_once(m).is_some_and(|(_, rest)| rest.starts_with(|c: char| c.is_ascii_digit())))
        };
        if let Some(t) = g.tensors.iter().find(|t| per_expert(&t.name)) {
            return Err(Error::BadConfig(format!(
                "{:?} is one expert's matrix: this file stores experts apart, as Mixtral conversions before 2024 did; download a newer conversion (experts stacked in ffn_*_exps)",
                t.name
            )));
        }
        // Embedding and reranking models (Qwen3-Embedding, Qwen3-Reranker) pool the hidden states
        // instead of predicting tokens.
        if let Some(p) = g.opt_u64(&k("pooling_type"))?.filter(|&p| p != 0) {
            return Err(Error::BadConfig(format!(
                "{arch}.pooling_type is {p}: an embedding or reranking model, not one that generates text"
            )));
        }
        if n_experts > MAX_EXPERTS || (n_experts > 0 && !(1..=n_experts).contains(&n_experts_used)) {
            return Err(Error::BadConfig(format!(
                "expert_count {n_experts} and expert_used_count {n_experts_used}: expected at most {MAX_EXPERTS} experts, 1 or more used"
            )));
        }
        let get = |key: &str, max: u64| -> Result<usize> {
            let key = &k(key);
            let per_layer = ["attention.head_count", "attention.head_count_kv", "feed_forward_length"];
            let array = g.get(key).and_then(|v| v.as_array()).filter(|_| per_layer.iter().any(|p| key.ends_with(p)));
            let v = match array {
                // A per-layer count, as llama.cpp reads these three (Granite 4.0's dense files write
                // head counts so): one value for every layer, as this decoder's layers are alike.
                Some(a) => {
                    let first = a.int_at(0);
                    if a.is_empty() || (0..a.len()).any(|i| a.int_at(i) != first) {
                        return Err(Error::BadConfig(format!(
                            "{key} differs between layers (a hybrid model's): not supported"
                        )));
                    }
                    u64::try_from(first.unwrap_or(-1))
                        .map_err(|_| Error::BadMetadata { key: key.clone(), msg: "is not a count".into() })?
                }
                None => g.get_u64(key)?,
            };
            if v == 0 || v > max {
                return Err(Error::BadConfig(format!("{key} is {v}, expected 1 to {max}")));
            }
            Ok(v as usize)
        };
        let opt = |key: &str, max: u64| -> Result<Option<usize>> {
            if g.get(&k(key)).is_some() {
                get(key, max).map(Some)
            } else {
                Ok(None)
            }
        };
        let n_layers = get("block_count", MAX_LAYERS)?;
        let dim = get("embedding_length", MAX_WIDTH)?;
        let n_heads = get("attention.head_count", MAX_WIDTH)?;
        let n_kv_heads = opt("attention.head_count_kv", MAX_WIDTH)?.unwrap_or(n_heads);
        let ffn_dim = get("feed_forward_length", MAX_WIDTH * 4)?;
        let ctx_len = get("context_length", MAX_CTX)?;
        if dim % n_heads != 0 && g.get(&k("attention.key_length")).is_none() {
            return Err(Error::BadConfig(format!("embedding_length {dim} is not a multiple of head_count {n_heads}")));
        }
        let head_dim = opt("attention.key_length", MAX_WIDTH)?.unwrap_or(dim / n_heads);
        if let Some(v) = opt("attention.value_length", MAX_WIDTH)? {
            if v != head_dim {
                return Err(Error::BadConfig(format!("value_length {v} differs from key_length {head_dim}")));
            }
        }
        if n_heads % n_kv_heads != 0 {
            return Err(Error::BadConfig(format!(
                "head_count {n_heads} is not a multiple of head_count_kv {n_kv_heads}"
            )));
        }
        let n_rot = opt("rope.dimension_count", MAX_WIDTH)?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 {
            return Err(Error::BadConfig(format!(
                "rope.dimension_count {n_rot} must be even and at most the head width {head_dim}"
            )));
        }
        // llama.cpp refuses a partial rotation in a llama or granite file (its graphs rotate whole
        // heads there).
        if matches!(arch, "llama" | "granite" | "smollm3") && n_rot != head_dim {
            return Err(Error::BadConfig(format!(
                "{arch}.rope.dimension_count is {n_rot}: a {arch} file rotates the whole head ({head_dim})"
            )));
        }
        let phi3 = arch == "phi3";
        let phi3_layout =
            Phi3Layout { fused_qkv: phi3 && g.tensor("blk.0.attn_qkv.weight").is_some(), packed_gate_up: phi3 };
        if phi3 && g.tensor("rope_freqs.weight").is_some() {
            // llama.cpp's phi3 graph reads only LongRoPE's factors (and refuses the extra tensor).
            return Err(Error::BadConfig(
                "rope_freqs.weight in a phi3 file, which takes rope_factors_long/short".into(),
            ));
        }
        let rope_long_short = match (g.tensor("rope_factors_long.weight"), g.tensor("rope_factors_short.weight")) {
            (None, None) => None,
            // The trained context where the file names no original one, as llama.cpp reads it.
            (Some(_), Some(_)) if phi3 => {
                Some(opt("rope.scaling.original_context_length", MAX_CTX)?.unwrap_or(get("context_length", MAX_CTX)?))
            }
            _ => {
                return Err(Error::BadConfig(
                    "rope_factors_long and rope_factors_short come as a pair, in a phi3 file".into(),
                ))
            }
        };
        let rope_attn_factor = g.opt_f32(&k("rope.scaling.attn_factor"))?.unwrap_or(1.0);
        if !(1e-3..16.0).contains(&rope_attn_factor) {
            return Err(Error::BadConfig(format!(
                "rope.scaling.attn_factor is {rope_attn_factor}, expected a number from 0.001 to 16"
            )));
        }
        // The factor scales the rotated dimensions only: carried by the attention's scale, which
        // holds where every dimension rotates.
        if rope_attn_factor != 1.0 && n_rot != head_dim {
            return Err(Error::BadConfig(format!(
                "rope.scaling.attn_factor {rope_attn_factor} with a partial rotation ({n_rot} of {head_dim}) is not supported"
            )));
        }
        let multipliers = match arch {
            "granite" => {
                // A multiplier from 0.001 to a million, or 0 where it means "none" as llama.cpp reads
                // them (not for logit_scale, a divisor).
                let multiplier = |key: &str| -> Result<Option<f32>> {
                    match g.opt_f32(&k(key))? {
                        Some(v) if !((v == 0.0 && key != "logit_scale") || (1e-3..1e6).contains(&v)) => {
                            Err(Error::BadConfig(format!("{arch}.{key} is {v}, expected a number from 0.001 to 1e6")))
                        }
                        v => Ok(v.filter(|&v| v > 0.0)),
                    }
                };
                let logit_scale = multiplier("logit_scale")?.ok_or_else(|| Error::MissingKey(k("logit_scale")))?;
                if g.opt_bool(&k("rope.scaling.finetuned"))? == Some(false) {
                    return Err(Error::BadConfig(format!(
                        "{arch}.rope.scaling.finetuned is false: a granite model without RoPE is not supported"
                    )));
                }
                Multipliers {
                    embedding_scale: multiplier("embedding_scale")?.unwrap_or(1.0),
                    residual_scale: multiplier("residual_scale")?.unwrap_or(1.0),
                    attention_scale: multiplier("attention.scale")?,
                    logit_scale,
                }
            }
            // As llama.cpp's gemma2 and gemma3: 1 / sqrt(dim / n_heads) for the 27B models (Gemma 2's
            // 46 layers, Gemma 3's 62), as Google's reference code has it, else 1 / sqrt(head_dim).
            "gemma2" | "gemma3" => {
                let is_27b = matches!((arch, n_layers), ("gemma2", 46) | ("gemma3", 62));
                let width = if is_27b { dim / n_heads } else { head_dim };
                Multipliers {
                    embedding_scale: (dim as f32).sqrt(),
                    attention_scale: Some(1.0 / (width as f32).sqrt()),
                    ..Multipliers::default()
                }
            }
            _ => Multipliers::default(),
        };
        let rope_base = g.opt_f32(&k("rope.freq_base"))?.unwrap_or(10000.0);
        if !(rope_base.is_finite() && rope_base > 1.0) {
            return Err(Error::BadConfig(format!("rope.freq_base is {rope_base}, expected a finite number above 1")));
        }
        // llama.cpp's reading: the factor from rope.scaling.factor or the older rope.scale_linear
        // (convert.py's key in 2023), the type "linear" where a file names none.
        let scaling_factor = match g.opt_f32(&k("rope.scaling.factor"))? {
            Some(f) => Some(f),
            None => g.opt_f32(&k("rope.scale_linear"))?,
        };
        let rope_freqs = g.tensor("rope_freqs.weight").is_some();
        let scaling_type = match g.get(&k("rope.scaling.type")) {
            // A factor beside rope_freqs describes LLaMA-3's scaling, which the divisors carry (a
            // converter that writes no type for llama3 would have it applied twice).
            None if rope_freqs => "llama3",
            None => "linear",
            Some(v) => v
                .as_str()
                .ok_or_else(|| Error::BadMetadata { key: k("rope.scaling.type"), msg: "is not a string".into() })?,
        };
        let rope_freq_scale = match scaling_type {
            "none" => 1.0,
            "linear" => {
                let f = scaling_factor.unwrap_or(1.0);
                if !(f.is_finite() && f >= 1.0) {
                    return Err(Error::BadConfig(format!(
                        "the linear RoPE scaling factor is {f}, expected a finite number of at least 1"
                    )));
                }
                1.0 / f
            }
            // LLaMA-3 scaling is carried by rope_freqs.weight; its keys only describe it.
            "llama3" => 1.0,
            other => {
                return Err(Error::BadConfig(format!("rope.scaling.type {other:?} is not supported (linear, llama3)")))
            }
        };
        let gemma = match arch {
            // Gemma 2's sliding layers take the file's scaling factor whatever the scaling type (llama.cpp's
            // rope_freq_scale_train; 0 reads as 1).
            "gemma2" | "gemma3" => {
                let train_scale = scaling_factor.filter(|&f| f != 0.0).map_or(1.0, |f| 1.0 / f);
                Some(gemma(g, arch, n_layers, (rope_base, train_scale))?)
            }
            _ => None,
        };
        // Required, as llama.cpp requires it: families differ (LLaMA 1e-5 or 1e-6, Qwen 1e-6).
        let rms_eps = g
            .opt_f32(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| Error::MissingKey(k("attention.layer_norm_rms_epsilon")))?;
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
        if let Some(v) = opt("vocab_size", MAX_VOCAB)? {
            if v != vocab_size {
                return Err(Error::BadConfig(format!("vocab_size {v} differs from token_embd rows {vocab_size}")));
            }
        }
        let tied_output = g.tensor("output.weight").is_none();
        if arch == "gemma2" && !tied_output {
            // llama.cpp's gemma2 reads token_embd as the output and refuses the file.
            return Err(Error::BadTensor {
                tensor: "output.weight".into(),
                msg: "is in a gemma2 file, whose output is token_embd (llama.cpp refuses it too)".into(),
            });
        }
        let carries = |suffixes: &[&str]| {
            arch == "llama" && g.tensors.iter().any(|t| suffixes.iter().any(|s| t.name.ends_with(s)))
        };
        let biases = Biases {
            qkv: traits.qkv_bias || carries(&[".attn_q.bias", ".attn_k.bias", ".attn_v.bias"]),
            out: carries(&[".attn_output.bias"]),
            ffn: carries(&[".ffn_gate.bias", ".ffn_up.bias", ".ffn_down.bias"]),
        };
        if biases.ffn && n_experts > 0 {
            return Err(Error::BadConfig("feed-forward biases beside a mixture of experts (which llama.cpp does not read either) are not supported".into()));
        }
        Ok(Config {
            arch: arch.to_string(),
            traits,
            biases,
            phi3_layout,
            multipliers,
            gemma,
            no_rope_step: if arch == "smollm3" { 4 } else { 0 },
            n_layers,
            dim,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn_dim,
            rope_base,
            rope_freq_scale,
            rope_freqs,
            rope_long_short,
            rope_attn_factor,
            n_rot,
            rms_eps,
            ctx_len,
            vocab_size,
            tied_output,
            n_experts: n_experts as usize,
            n_experts_used: n_experts_used as usize,
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
    /// Width of one row of the fused projections' output, q | k | v (q_dim + 2 kv_dim).
    pub fn qkv_dim(&self) -> usize {
        self.q_dim() + 2 * self.kv_dim()
    }
    /// The tensor of RoPE divisors the graph reads for a context of `ctx` positions: rope_freqs,
    /// or Phi-3's long factors above its original context and short ones within it, as llama.cpp
    /// chooses (it rounds the context up to a multiple of 256 first).
    pub fn rope_factors_for(&self, ctx: usize) -> Option<&'static str> {
        match self.rope_long_short {
            Some(orig) if ctx.next_multiple_of(256) > orig => Some("rope_factors_long.weight"),
            Some(_) => Some("rope_factors_short.weight"),
            None => self.rope_freqs.then_some("rope_freqs.weight"),
        }
    }

    /// Layer l's RoPE base and multiplier of its angles: a sliding-window layer's own (Config::gemma),
    /// else the model's.
    pub fn layer_rope(&self, l: usize) -> (f32, f32) {
        match &self.gemma {
            Some(g) if self.window(l) > 0 => (g.swa_rope_base, g.swa_rope_scale),
            _ => (self.rope_base, self.rope_freq_scale),
        }
    }

    /// Whether layer l rotates q and k (all but SmolLM3's every 4th).
    pub fn layer_ropes(&self, l: usize) -> bool {
        self.no_rope_step == 0 || !(l + 1).is_multiple_of(self.no_rope_step)
    }

    /// The positions layer l's query sees, its own included: a sliding-window layer's window, else 0
    /// (all of them).
    pub fn window(&self, l: usize) -> usize {
        match &self.gemma {
            Some(g) if g.swa_layers.get(l) == Some(&true) => g.window,
            _ => 0,
        }
    }

    /// How many of the `n` positions up to a query's own (included) layer l's query sees: its
    /// window's, or all n.
    pub fn positions_seen(&self, l: usize, n: usize) -> usize {
        match self.window(l) {
            0 => n,
            w => n.min(w),
        }
    }

    /// Gemma 2's soft-caps of the attention's scores and of the logits (0: none).
    pub fn softcaps(&self) -> (f32, f32) {
        self.gemma.as_ref().map_or((0.0, 0.0), |g| (g.attn_softcap, g.final_softcap))
    }

    /// Whether the feed-forward is GeGLU, gelu(gate) * up (gemma2, gemma3), rather than SwiGLU.
    pub fn ffn_gelu(&self) -> bool {
        self.gemma.is_some()
    }

    /// Whether each block's output is RMS-normed (post_attention_norm, post_ffw_norm) before the residual
    /// add (gemma2, gemma3).
    pub fn post_norms(&self) -> bool {
        self.gemma.is_some()
    }

    /// The attention's scale of q k^T: granite's or Gemma's attention scale, else 1 / sqrt(head_dim); times
    /// the square of the RoPE attention factor that multiplied both q and k.
    pub fn attention_scale(&self) -> f32 {
        let scale = self.multipliers.attention_scale.unwrap_or(1.0 / (self.head_dim as f32).sqrt());
        self.rope_attn_factor * self.rope_attn_factor * scale
    }

    /// Whether q and k are LLaMA's, rope(W xb) with adjacent pairs: then the fused kernels that
    /// project and rotate in one pass (the GPU family's qkv, the CPU family's rope in attention) apply.
    pub fn llama_qk(&self) -> bool {
        let t = self.traits;
        !(t.rope_neox || self.biases.qkv || t.qk_norm || self.no_rope_step > 0)
    }
}

/// Gemma 2's and 3's sliding windows, soft-caps and RoPE, as llama.cpp's gemma2 and gemma3 read
/// them from a file of `arch` (`rope`: the model's base and the scale its scaling factor gives).
/// Gemma 2:
/// a window of 4096 on every other layer, rotating as the global ones do, scores and logits
/// soft-capped (50 and 30 by default). Gemma 3: the window and its layers only where the file gives
/// a window (every 6th layer global), base 10000 unscaled there, no caps.
fn gemma(g: &Gguf, arch: &str, n_layers: usize, rope: (f32, f32)) -> Result<Gemma> {
    let gemma2 = arch == "gemma2";
    let k = |key: &str| format!("{arch}.{key}");
    let cap = |key: &str, default: f32| -> Result<f32> {
        let key = k(key);
        match g.opt_f32(&key)?.unwrap_or(default) {
            // Gemma 3 names no cap (0: none); Gemma 2 divides by its caps.
            0.0 if !gemma2 => Ok(0.0),
            c if (0.1..=1e4).contains(&c) => Ok(c),
            c => Err(Error::BadConfig(format!("{key} is {c}, expected a number from 0.1 to 10000"))),
        }
    };
    let attn_softcap = if gemma2 { cap("attn_logit_softcapping", 50.0)? } else { 0.0 };
    let final_softcap = cap("final_logit_softcapping", if gemma2 { 30.0 } else { 0.0 })?;
    let window = g.opt_u64(&k("attention.sliding_window"))?.unwrap_or(if gemma2 { 4096 } else { 0 });
    if window > MAX_CTX {
        return Err(Error::BadConfig(format!(
            "{} is {window}, expected at most {MAX_CTX}",
            k("attention.sliding_window")
        )));
    }
    let key = k("attention.sliding_window_pattern");
    let swa_layers = match g.get(&key).and_then(|v| v.as_array()) {
        _ if window == 0 => vec![false; n_layers],
        // One flag a layer: bools, or integers (nonzero: sliding), as llama.cpp reads them.
        Some(a) => {
            let flags: Option<Vec<bool>> = match a {
                Array::Bool(b) => Some(b.clone()),
                _ => (0..a.len()).map(|i| a.int_at(i).map(|v| v != 0)).collect(),
            };
            match flags {
                Some(f) if f.len() == n_layers => f,
                _ => {
                    return Err(Error::BadConfig(format!(
                        "{key} is an array of {} elements of type {}, expected a bool per layer ({n_layers})",
                        a.len(),
                        a.elem_type()
                    )))
                }
            }
        }
        // A period n: every n-th layer global (n = 0 or 1: every layer sliding or none, as llama.cpp's
        // set_swa_pattern).
        _ => {
            let n = g.opt_u64(&key)?.unwrap_or(if gemma2 { 2 } else { 6 });
            if n > MAX_LAYERS {
                return Err(Error::BadConfig(format!("{key} is {n}, expected at most {MAX_LAYERS}")));
            }
            (0..n_layers as u64).map(|l| n == 0 || l % n < n - 1).collect()
        }
    };
    let swa_rope_base = g.opt_f32(&k("rope.freq_base_swa"))?.unwrap_or(if gemma2 { rope.0 } else { 10000.0 });
    if !(swa_rope_base.is_finite() && swa_rope_base > 1.0) {
        return Err(Error::BadConfig(format!(
            "{} is {swa_rope_base}, expected a finite number above 1",
            k("rope.freq_base_swa")
        )));
    }
    let swa_rope_scale = if gemma2 { rope.1 } else { 1.0 };
    if !(swa_rope_scale.is_finite() && swa_rope_scale > 0.0) {
        return Err(Error::BadConfig(format!(
            "{} gives the sliding-window layers a RoPE scale of {swa_rope_scale}, expected a positive number",
            k("rope.scaling.factor")
        )));
    }
    Ok(Gemma { window: window as usize, swa_layers, swa_rope_base, swa_rope_scale, attn_softcap, final_softcap })
}
