//! A tiny valid llama GGUF in memory, edited per test, and its config: the header tests' file.

use std::time::Instant;
use webllama::format::gguf::{Array, Gguf, Value};
use webllama::format::gguf_write as writer;
use webllama::format::weights;
use webllama::{Config, Error, QuantType};

/// A small valid llama model: 1 layer, width 64, 4 heads (2 KV), ffn 128, vocab 32, Q8_0 matrices.
pub fn tiny(
    meta_edit: impl FnOnce(&mut Vec<(&'static str, Value)>),
    tensor_edit: impl FnOnce(&mut Vec<(&'static str, Vec<u64>, u32, Vec<u8>)>),
) -> Vec<u8> {
    let mut meta: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(64)),
        ("llama.feed_forward_length", Value::U32(128)),
        ("llama.attention.head_count", Value::U32(4)),
        ("llama.attention.head_count_kv", Value::U32(2)),
        ("llama.rope.freq_base", Value::F32(10000.0)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("general.tags", Value::Array(Array::Array(vec![Array::I8(vec![-1, 2]), Array::String(vec![])]))),
        ("general.misc", Value::Array(Array::U16(vec![1, 2]))),
        ("general.wide", Value::F64(1.5)),
        ("general.big", Value::I64(-7)),
        ("general.ok", Value::Bool(true)),
    ];
    let q8 = |rows: u64, cols: u64| {
        (vec![cols, rows], 8u32, QuantType::Q8_0.quantize(&vec![0.5; (rows * cols) as usize]).unwrap())
    };
    let f32v = |n: u64| (vec![n], 0u32, vec![0u8; 4 * n as usize]);
    let mut tensors: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = vec![];
    for (name, (dims, ty, data)) in [
        ("token_embd.weight", q8(32, 64)),
        ("output_norm.weight", f32v(64)),
        ("blk.0.attn_norm.weight", f32v(64)),
        ("blk.0.attn_q.weight", q8(64, 64)),
        ("blk.0.attn_k.weight", q8(32, 64)),
        ("blk.0.attn_v.weight", q8(32, 64)),
        ("blk.0.attn_output.weight", q8(64, 64)),
        ("blk.0.ffn_norm.weight", f32v(64)),
        ("blk.0.ffn_gate.weight", q8(128, 64)),
        ("blk.0.ffn_up.weight", q8(128, 64)),
        ("blk.0.ffn_down.weight", q8(64, 128)),
    ] {
        tensors.push((name, dims, ty, data));
    }
    meta_edit(&mut meta);
    tensor_edit(&mut tensors);
    writer::build(&meta, &tensors)
}

/// Parses a whole in-memory file and builds its config, timing it (a bound far above the time it
/// takes, to catch work that grows faster than the file, not to measure speed).
pub fn load(bytes: &[u8]) -> Result<Config, Error> {
    let t = Instant::now();
    let r = Gguf::parse_complete(bytes).and_then(|g| {
        let c = Config::from_gguf(&g)?;
        weights::check(&g, &c)?;
        Ok(c)
    });
    assert!(t.elapsed().as_millis() < 2000, "took {:?}", t.elapsed());
    r
}
