//! `webllama random-model`: writes a GGUF with random weights, for benchmarks of models whose real
//! weights are not at hand. The metadata (tokenizer, chat template) comes from another GGUF's header;
//! the shape is that file's own, or a preset such as Llama-3.2-1B with llama.cpp's Q4_K_M type mix.
//! Speed does not depend on weight values, so blocks are drawn from a small pool of quantized
//! random normals (scales ~1e-3, so activations stay finite).

use anyhow::{bail, Context, Result};
use std::io::{BufWriter, Read, Write};
use webllama::format::gguf::{Gguf, Parsed, Value};
use webllama::format::gguf_write as writer;
use webllama::format::quant::QuantType;
use webllama::format::weights;

/// A preset shape: llama.* keys to set, and the Q4_K_M rule for each tensor's type.
struct Shape {
    layers: u64,
    dim: u64,
    heads: u64,
    kv_heads: u64,
    ffn: u64,
}

const LLAMA_3_2_1B: Shape = Shape { layers: 16, dim: 2048, heads: 32, kv_heads: 8, ffn: 8192 };

/// Writes the model; `shape` is "same" (the `like` file's tensors and types) or "llama-3.2-1b".
pub fn random_model(like: &str, shape: &str, out: &str, seed: u64) -> Result<()> {
    let header = read_header_prefix(like)?;
    let (metadata, tensors) = match shape {
        "same" => {
            (header.metadata.clone(), header.tensors.iter().map(|t| (t.name.clone(), t.dims.clone(), t.ty)).collect())
        }
        "llama-3.2-1b" => preset(&header, &LLAMA_3_2_1B)?,
        other => bail!("unknown shape {other:?} (same, llama-3.2-1b)"),
    };
    // Written beside `out` and renamed into place once whole: a run that fails leaves nothing.
    let part = format!("{out}.part");
    let written = write_model(&part, &metadata, &tensors, seed).and_then(|bytes| {
        std::fs::rename(&part, out).with_context(|| format!("renaming {part} to {out}"))?;
        Ok(bytes)
    });
    let weight_bytes = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e.context(format!("writing {out}")));
        }
    };
    eprintln!("wrote {out}: {} tensors, {:.1} MB of weights", tensors.len(), weight_bytes as f64 / 1e6);
    Ok(())
}

/// The model file at `part`: the header, then each tensor's random blocks (norms and RoPE divisors
/// of 1), each padded to 32 bytes; the bytes of the tensors' data.
fn write_model(part: &str, metadata: &[(String, Value)], tensors: &TensorList, seed: u64) -> Result<u64> {
    let file = std::fs::File::create(part).with_context(|| format!("creating {part}"))?;
    let mut w = BufWriter::with_capacity(8 << 20, file);
    let Some((head, sizes)) = writer::header(metadata, tensors) else {
        bail!("a tensor's values are not whole blocks of its type");
    };
    w.write_all(&head)?;
    let mut rng = seed ^ 0x9E37_79B9_7F4A_7C15;
    for ((name, _, ty), &bytes) in tensors.iter().zip(&sizes) {
        if (name.ends_with("norm.weight") || name.starts_with("rope_")) && matches!(ty, QuantType::F32 | QuantType::F16)
        {
            // Norm gains and RoPE divisors of 1.
            let one: &[u8] = if *ty == QuantType::F32 { &[0, 0, 0x80, 0x3f] } else { &[0, 0x3c] };
            for _ in 0..bytes / one.len() as u64 {
                w.write_all(one)?;
            }
        } else {
            let pool = block_pool(*ty, &mut rng)?;
            let mut left = bytes as usize;
            while left > 0 {
                let start =
                    (next(&mut rng) as usize % (pool.len() / ty.block_bytes() as usize)) * ty.block_bytes() as usize;
                let n = left.min(pool.len() - start);
                w.write_all(&pool[start..start + n])?;
                left -= n;
            }
        }
        let pad = bytes.div_ceil(32) * 32 - bytes;
        w.write_all(&vec![0u8; pad as usize])?;
    }
    w.flush()?;
    Ok(sizes.iter().map(|b| b.div_ceil(32) * 32).sum())
}

/// Parses the header of `path` from its first bytes only (the file may hold nothing after it).
fn read_header_prefix(path: &str) -> Result<Gguf> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    let mut buf = vec![];
    loop {
        let want = (buf.len() * 2).max(1 << 20);
        let got = Read::by_ref(&mut file).take((want - buf.len()) as u64).read_to_end(&mut buf)?;
        match Gguf::parse(&buf, None).with_context(|| format!("{path} is not a GGUF file"))? {
            Parsed::Done(g) => return Ok(*g),
            Parsed::NeedMore { .. } if got > 0 => continue,
            Parsed::NeedMore { .. } => bail!("{path}: the file ends inside its GGUF header"),
        }
    }
}

type TensorList = Vec<(String, Vec<u64>, QuantType)>;

/// The preset's metadata (the `like` file's, llama.* shape keys replaced) and tensors, typed as
/// llama.cpp's Q4_K_M does: Q6_K for the (tied) embedding, and for attn_v and ffn_down in the first
/// and last eighth of the layers and every third one between; Q4_K elsewhere.
fn preset(like: &Gguf, s: &Shape) -> Result<(Vec<(String, Value)>, TensorList)> {
    let embd = like.tensor(weights::TOKEN_EMBD).context("the --like file has no token_embd.weight")?;
    let vocab = *embd.dims.get(1).context("the --like file's token_embd.weight is not a matrix")?;
    if like.get_str("general.architecture").ok() != Some("llama") {
        bail!("--shape llama-3.2-1b writes llama.* keys: --like must be a llama file (a header of another architecture would keep its own shape keys)");
    }
    let head_dim = s.dim / s.heads;
    let set: Vec<(&str, u64)> = vec![
        ("llama.block_count", s.layers),
        ("llama.embedding_length", s.dim),
        ("llama.attention.head_count", s.heads),
        ("llama.attention.head_count_kv", s.kv_heads),
        ("llama.feed_forward_length", s.ffn),
        ("llama.rope.dimension_count", head_dim),
        ("llama.attention.key_length", head_dim),
        ("llama.attention.value_length", head_dim),
    ];
    let mut metadata: Vec<(String, Value)> =
        like.metadata.iter().filter(|(k, _)| !set.iter().any(|(s, _)| s == k)).cloned().collect();
    metadata.extend(set.iter().map(|(k, v)| (k.to_string(), Value::U32(*v as u32))));
    let more_bits = |i: u64| i < s.layers / 8 || i >= 7 * s.layers / 8 || (i - s.layers / 8) % 3 == 2;
    let mut tensors: TensorList = vec![
        (weights::TOKEN_EMBD.into(), vec![s.dim, vocab], QuantType::Q6K),
        (weights::OUTPUT_NORM.into(), vec![s.dim], QuantType::F32),
    ];
    if like.tensor(weights::ROPE_FREQS).is_some() {
        tensors.push((weights::ROPE_FREQS.into(), vec![head_dim / 2], QuantType::F32));
    }
    let (q, kv) = (s.heads * head_dim, s.kv_heads * head_dim);
    for i in 0..s.layers {
        let big = if more_bits(i) { QuantType::Q6K } else { QuantType::Q4K };
        for (suffix, dims, ty) in [
            (weights::ATTN_NORM, vec![s.dim], QuantType::F32),
            (weights::ATTN_Q, vec![s.dim, q], QuantType::Q4K),
            (weights::ATTN_K, vec![s.dim, kv], QuantType::Q4K),
            (weights::ATTN_V, vec![s.dim, kv], big),
            (weights::ATTN_OUT, vec![q, s.dim], QuantType::Q4K),
            (weights::FFN_NORM, vec![s.dim], QuantType::F32),
            (weights::FFN_GATE, vec![s.dim, s.ffn], QuantType::Q4K),
            (weights::FFN_UP, vec![s.dim, s.ffn], QuantType::Q4K),
            (weights::FFN_DOWN, vec![s.ffn, s.dim], big),
        ] {
            tensors.push((weights::layer(i as usize, suffix), dims, ty));
        }
    }
    Ok((metadata, tensors))
}

/// 4096 random blocks of `ty`: quantized normals where a quantizer exists, else random bytes with
/// small scales.
fn block_pool(ty: QuantType, rng: &mut u64) -> Result<Vec<u8>> {
    let (be, bb) = (ty.block_elems() as usize, ty.block_bytes() as usize);
    let mut pool = Vec::with_capacity(4096 * bb);
    let mut x = vec![0f32; be];
    for _ in 0..4096 {
        for v in x.iter_mut() {
            // Sum of four uniforms: roughly normal, sd 0.02.
            *v = ((0..4).map(|_| (next(rng) >> 40) as f32 / (1u64 << 24) as f32).sum::<f32>() - 2.0) * 0.035;
        }
        if ty.quantize_block(&x, &mut pool).is_err() {
            let start = pool.len();
            pool.extend((0..bb).map(|_| next(rng) as u8));
            let block = &mut pool[start..];
            ty.sanitize_block(block);
            small_scales(ty, block);
        }
    }
    Ok(pool)
}

/// Replaces a K-quant block's f16 super-block scales with ~1e-3 (sanitize_block's are up to 0.25).
fn small_scales(ty: QuantType, block: &mut [u8]) {
    let at: &[usize] = match ty {
        QuantType::Q4K | QuantType::Q5K => &[0, 2],
        QuantType::Q6K => &[208],
        QuantType::Q2K => &[80, 82],
        QuantType::Q3K => &[108],
        _ => &[],
    };
    for &a in at {
        block[a..a + 2].copy_from_slice(&half::f16::from_f32(1e-3).to_le_bytes());
    }
}

/// SplitMix64.
fn next(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
