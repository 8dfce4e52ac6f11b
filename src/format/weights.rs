//! The LLaMA-family tensor map: GGUF tensor names verbatim, their expected shapes, and where bytes come from.

use crate::error::{Error, Result};
use crate::format::config::Config;
use crate::format::gguf::{Gguf, TensorInfo};

/// Per-layer tensors, by their GGUF name suffix after `blk.{i}.`.
pub const ATTN_NORM: &str = "attn_norm.weight";
pub const ATTN_Q: &str = "attn_q.weight";
pub const ATTN_K: &str = "attn_k.weight";
pub const ATTN_V: &str = "attn_v.weight";
pub const ATTN_OUT: &str = "attn_output.weight";
pub const FFN_NORM: &str = "ffn_norm.weight";
/// Mixture of experts (Mixtral layout): the router ([dim, n_experts]) and the experts' matrices
/// stacked ([dim, ffn, n_experts], [ffn, dim, n_experts]: expert e's rows follow expert e-1's).
pub const FFN_GATE_INP: &str = "ffn_gate_inp.weight";
pub const FFN_GATE_EXPS: &str = "ffn_gate_exps.weight";
pub const FFN_UP_EXPS: &str = "ffn_up_exps.weight";
pub const FFN_DOWN_EXPS: &str = "ffn_down_exps.weight";
/// Whether `name` is a stacked matrix of experts (one buffer, read by the moe kernels, which take
/// only the routed experts' rows).
pub fn is_experts(name: &str) -> bool {
    name.ends_with("_exps.weight")
}

/// Biases of the q, k, v projections ([q_dim], [kv_dim], [kv_dim]): qwen2's, and a llama file's
/// where it has them (Config::biases).
pub const ATTN_Q_BIAS: &str = "attn_q.bias";
pub const ATTN_K_BIAS: &str = "attn_k.bias";
pub const ATTN_V_BIAS: &str = "attn_v.bias";
/// A llama file's other biases, where it has them: Wo's ([dim]), the feed-forward's ([ffn_dim],
/// [ffn_dim], [dim]).
pub const ATTN_OUT_BIAS: &str = "attn_output.bias";
pub const FFN_GATE_BIAS: &str = "ffn_gate.bias";
pub const FFN_UP_BIAS: &str = "ffn_up.bias";
pub const FFN_DOWN_BIAS: &str = "ffn_down.bias";
/// qwen3: per-head RMSNorm weights of q and k ([head_dim]).
pub const ATTN_Q_NORM: &str = "attn_q_norm.weight";
pub const ATTN_K_NORM: &str = "attn_k_norm.weight";
/// gemma2, gemma3: RMSNorm weights of the attention's output and of the feed-forward's ([dim]), applied
/// before each is added to x.
pub const ATTN_POST_NORM: &str = "post_attention_norm.weight";
pub const FFN_POST_NORM: &str = "post_ffw_norm.weight";
/// phi3: q | k | v in one matrix ([dim, q_dim + 2 kv_dim]); ffn_up holds gate | up there.
pub const ATTN_QKV: &str = "attn_qkv.weight";
pub const FFN_GATE: &str = "ffn_gate.weight";
pub const FFN_UP: &str = "ffn_up.weight";
pub const FFN_DOWN: &str = "ffn_down.weight";
/// Model-level tensors.
pub const TOKEN_EMBD: &str = "token_embd.weight";
pub const OUTPUT_NORM: &str = "output_norm.weight";
pub const OUTPUT: &str = "output.weight";
/// Per-frequency divisors of the RoPE angles (LLaMA-3.1/3.2), [n_rot / 2]; the graph reads Phi-3's
/// long or short factors under this name (Config::rope_factors_for).
pub const ROPE_FREQS: &str = "rope_freqs.weight";
pub const ROPE_FACTORS_LONG: &str = "rope_factors_long.weight";
pub const ROPE_FACTORS_SHORT: &str = "rope_factors_short.weight";

/// The name the graph reads tensor `name` by, for a context of `ctx` positions: a phi3 file's fused
/// matrices as the groups the builder would fuse (weights::FUSED: "blk.N.attn_qkv",
/// "blk.N.ffn_gate_up"), the RoPE divisors chosen for the context as ROPE_FREQS; else the name.
pub fn graph_name(cfg: &Config, ctx: usize, name: &str) -> String {
    if cfg.rope_factors_for(ctx) == Some(name) {
        return ROPE_FREQS.to_string();
    }
    let fused = |suffix: &str, group: &str| {
        name.strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .filter(|(l, s)| *s == suffix && l.parse::<usize>().is_ok())
            .map(|(l, _)| format!("blk.{l}.{group}"))
    };
    let p = cfg.phi3_layout;
    let grouped = if p.fused_qkv { fused(ATTN_QKV, "attn_qkv") } else { None };
    let grouped = grouped.or_else(|| if p.packed_gate_up { fused(FFN_UP, "ffn_gate_up") } else { None });
    grouped.unwrap_or_else(|| name.to_string())
}

/// Whether the file stores `name` fused (phi3): one matrix the fused kernels read whole.
pub fn stored_fused(cfg: &Config, name: &str) -> bool {
    let read_as = graph_name(cfg, 0, name);
    read_as.ends_with(".attn_qkv") || read_as.ends_with(".ffn_gate_up")
}

/// Per-layer matrices that are uploaded into one buffer (rows concatenated, in this order) when they
/// share a type, so that one fused kernel reads them: (group suffix, member suffixes).
pub const FUSED: &[(&str, &[&str])] = &[("attn_qkv", &[ATTN_Q, ATTN_K, ATTN_V]), ("ffn_gate_up", &[FFN_GATE, FFN_UP])];

/// The GGUF name of a layer tensor.
pub fn layer(i: usize, suffix: &str) -> String {
    format!("blk.{i}.{suffix}")
}

/// Every tensor the decoder reads, with its expected ggml shape ([row length, rows] or [len]).
pub fn expected(cfg: &Config) -> Vec<(String, Vec<u64>)> {
    let (d, q, kv, f, v) =
        (cfg.dim as u64, cfg.q_dim() as u64, cfg.kv_dim() as u64, cfg.ffn_dim as u64, cfg.vocab_size as u64);
    let mut out = vec![(TOKEN_EMBD.to_string(), vec![d, v]), (OUTPUT_NORM.to_string(), vec![d])];
    if !cfg.tied_output {
        out.push((OUTPUT.to_string(), vec![d, v]));
    }
    if cfg.rope_freqs {
        out.push((ROPE_FREQS.to_string(), vec![cfg.n_rot as u64 / 2]));
    }
    if cfg.rope_long_short.is_some() {
        for name in [ROPE_FACTORS_LONG, ROPE_FACTORS_SHORT] {
            out.push((name.to_string(), vec![cfg.n_rot as u64 / 2]));
        }
    }
    let phi3 = cfg.phi3_layout;
    for i in 0..cfg.n_layers {
        let attention = match phi3.fused_qkv {
            true => vec![(ATTN_QKV, vec![d, q + 2 * kv])],
            false => vec![(ATTN_Q, vec![d, q]), (ATTN_K, vec![d, kv]), (ATTN_V, vec![d, kv])],
        };
        for (suffix, shape) in
            [(ATTN_NORM, vec![d])].into_iter().chain(attention).chain([(ATTN_OUT, vec![q, d]), (FFN_NORM, vec![d])])
        {
            out.push((layer(i, suffix), shape));
        }
        let ffn = match cfg.n_experts as u64 {
            0 if phi3.packed_gate_up => [(FFN_UP, vec![d, 2 * f]), (FFN_DOWN, vec![f, d])].to_vec(),
            0 => [(FFN_GATE, vec![d, f]), (FFN_UP, vec![d, f]), (FFN_DOWN, vec![f, d])].to_vec(),
            e => [
                (FFN_GATE_INP, vec![d, e]),
                (FFN_GATE_EXPS, vec![d, f, e]),
                (FFN_UP_EXPS, vec![d, f, e]),
                (FFN_DOWN_EXPS, vec![f, d, e]),
            ]
            .to_vec(),
        };
        out.extend(ffn.into_iter().map(|(suffix, shape)| (layer(i, suffix), shape)));
        let biases = [
            (cfg.biases.qkv, vec![(ATTN_Q_BIAS, q), (ATTN_K_BIAS, kv), (ATTN_V_BIAS, kv)]),
            (cfg.biases.out, vec![(ATTN_OUT_BIAS, d)]),
            (cfg.biases.ffn, vec![(FFN_GATE_BIAS, f), (FFN_UP_BIAS, f), (FFN_DOWN_BIAS, d)]),
        ];
        for (suffix, n) in biases.into_iter().filter(|b| b.0).flat_map(|b| b.1) {
            out.push((layer(i, suffix), vec![n]));
        }
        if cfg.traits.qk_norm {
            for suffix in [ATTN_Q_NORM, ATTN_K_NORM] {
                out.push((layer(i, suffix), vec![cfg.head_dim as u64]));
            }
        }
        if cfg.post_norms() {
            for suffix in [ATTN_POST_NORM, FFN_POST_NORM] {
                out.push((layer(i, suffix), vec![d]));
            }
        }
    }
    out
}

/// Checks that every tensor the decoder needs is present, shaped as the config says, and of a
/// supported type, and that the vocabulary has a token for each row of token_embd (before any
/// upload, and before the tokenizer is built from it).
pub fn check(g: &Gguf, cfg: &Config) -> Result<()> {
    if let Some(tokens) = g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array()) {
        if tokens.len() != cfg.vocab_size {
            return Err(Error::BadConfig(format!(
                "the vocabulary has {} tokens but token_embd has {} rows",
                tokens.len(),
                cfg.vocab_size
            )));
        }
    }
    let expected = expected(cfg);
    // A tensor the decoder would not read changes what the model computes (llama.cpp refuses such
    // files too): a reranker's classifier, a bias llama.cpp's graph of the architecture has not.
    let read: std::collections::HashSet<&str> = expected.iter().map(|(name, _)| name.as_str()).collect();
    if let Some(t) = g.tensors.iter().find(|t| !read.contains(t.name.as_str())) {
        return Err(Error::BadTensor {
            tensor: t.name.clone(),
            msg: format!("is not part of the {} decoder webllama runs, which would run without it", cfg.arch),
        });
    }
    for (name, shape) in expected {
        let t = g.tensor(&name).ok_or_else(|| Error::MissingTensor(name.clone()))?;
        // The type first: a type webllama does not decode is what the user needs to hear of.
        t.ty.check_supported(&name)?;
        if t.dims != shape {
            return Err(Error::BadTensor {
                tensor: name,
                msg: format!("has shape {:?}, expected {:?}", t.dims, shape),
            });
        }
    }
    Ok(())
}

/// Where tensor bytes come from (a file natively; a stream in the browser feeds the builder directly).
pub trait TensorSource {
    /// `n` bytes of the file from `offset`.
    fn read_at(&mut self, offset: u64, n: u64) -> Result<Vec<u8>>;
    /// The `t.n_bytes` bytes of tensor `t`.
    fn read(&mut self, t: &TensorInfo) -> Result<Vec<u8>> {
        self.read_at(t.offset, t.n_bytes)
    }
}

/// Tensor bytes read from a GGUF file on disk, or from the parts of a split one read as one file.
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    /// (file, its path, its offset in the whole, its length).
    parts: Vec<(std::fs::File, String, u64, u64)>,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    /// One file.
    pub fn open(path: &str) -> Result<FileSource> {
        Self::open_parts(&[path.to_string()])
    }

    /// Files read one after the other as one.
    pub fn open_parts(paths: &[String]) -> Result<FileSource> {
        let mut parts = vec![];
        let mut base = 0;
        for path in paths {
            let io = |source| Error::Io { path: path.clone(), source };
            let file = std::fs::File::open(path).map_err(io)?;
            let len = file.metadata().map_err(io)?.len();
            parts.push((file, path.clone(), base, len));
            base += len;
        }
        Ok(FileSource { parts })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl TensorSource for FileSource {
    fn read_at(&mut self, offset: u64, n: u64) -> Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut buf = vec![0u8; n as usize];
        let mut done = 0u64;
        for (file, path, base, len) in &mut self.parts {
            let (at, end) = (offset + done, offset + n);
            if done == n || at >= *base + *len || end <= *base {
                continue;
            }
            let take = (end.min(*base + *len) - at) as usize;
            let io = |source| Error::Io { path: path.clone(), source };
            file.seek(SeekFrom::Start(at - *base)).map_err(io)?;
            file.read_exact(&mut buf[done as usize..done as usize + take]).map_err(io)?;
            done += take as u64;
        }
        if done < n {
            let path = self.parts.last().map_or(String::new(), |p| p.1.clone());
            let source = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file ends before these bytes");
            return Err(Error::Io { path, source });
        }
        Ok(buf)
    }
}

/// The model at `path`: its header and its bytes. A split model (`name-00001-of-0000N.gguf`, with
/// split.count in its header) is given by its first part; the others are read from beside it.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_model(path: &str) -> Result<(Gguf, FileSource)> {
    use crate::format::split;
    let first = read_header(path)?;
    let count = split::parts_of(&first, 0)?;
    if count == 1 {
        return Ok((first, FileSource::open(path)?));
    }
    let paths: Vec<String> = (0..count)
        .map(|no| {
            split::part_path(path, no, count).ok_or_else(|| Error::BadMetadata {
                key: "split.count".into(),
                msg: format!("is {count}, but {path:?} is not named like a first part (NAME-00001-of-{count:05}.gguf)"),
            })
        })
        .collect::<Result<_>>()?;
    let source = FileSource::open_parts(&paths)?;
    let mut held = first.tensors.len();
    let mut rest = vec![];
    for (no, (p, part)) in paths[1..].iter().zip(&source.parts[1..]).enumerate() {
        let part = split::Part::read(read_header(p)?, no as u64 + 1, part.3, held)?;
        held += part.tensors();
        rest.push(part);
    }
    Ok((split::merge(first, rest, source.parts[0].3)?, source))
}

/// Reads and parses the header of the GGUF file at `path`, reading only as many bytes as it needs.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_header(path: &str) -> Result<Gguf> {
    use crate::format::gguf::Parsed;
    use std::io::{Read, Seek, SeekFrom};
    let io = |source| Error::Io { path: path.to_string(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut buf = Vec::new();
    let mut want: u64 = 1 << 20;
    loop {
        let target = want.min(len);
        file.seek(SeekFrom::Start(buf.len() as u64)).map_err(io)?;
        let mut more = vec![0u8; (target - buf.len() as u64) as usize];
        file.read_exact(&mut more).map_err(io)?;
        buf.extend_from_slice(&more);
        match Gguf::parse(&buf, Some(len))? {
            Parsed::Done(g) => return Ok(*g),
            // `needed` is bounded by the file length, so this never reads past what the file holds.
            Parsed::NeedMore { needed } => want = needed.max(want * 2),
        }
    }
}
