//! The model's pre-flight before any upload: a declared size allocates only for the bytes that
//! came, and activations or an expert grid past what the adapter binds or dispatches are refused by
//! name before the first weight byte.

mod common;

use webllama::format::gguf::{Gguf, Parsed, Value};
use webllama::format::gguf_write::header;
use webllama::format::weights;
use webllama::{Error, ModelBuilder, QuantType};

/// A header that declares a giant model (a 4.3 GB token_embd, no file length, as a chunked download
/// gives it) costs GPU memory only as its bytes come: after 8 MiB, at most those bytes and one part
/// of a binding are allocated; the file ending there is a Truncated error naming the tensor.
#[test]
fn a_declared_giant_model_allocates_only_for_the_bytes_that_came() {
    let (dim, ffn, vocab, layers) = (4096u64, 14336u64, 1_000_000u64, 2usize);
    let mut meta: Vec<(String, Value)> = [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.context_length", Value::U32(4096)),
        ("llama.embedding_length", Value::U32(dim as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(32)),
        ("llama.attention.head_count_kv", Value::U32(8)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    meta.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
    let mut tensors = vec![
        ("token_embd.weight".to_string(), vec![dim, vocab], QuantType::Q8_0),
        ("output_norm.weight".to_string(), vec![dim], QuantType::F32),
    ];
    for l in 0..layers {
        for (s, shape, ty) in [
            ("attn_norm.weight", vec![dim], QuantType::F32),
            ("attn_q.weight", vec![dim, dim], QuantType::Q8_0),
            ("attn_k.weight", vec![dim, 1024], QuantType::Q8_0),
            ("attn_v.weight", vec![dim, 1024], QuantType::Q8_0),
            ("attn_output.weight", vec![dim, dim], QuantType::Q8_0),
            ("ffn_norm.weight", vec![dim], QuantType::F32),
            ("ffn_gate.weight", vec![dim, ffn], QuantType::Q8_0),
            ("ffn_up.weight", vec![dim, ffn], QuantType::Q8_0),
            ("ffn_down.weight", vec![ffn, dim], QuantType::Q8_0),
        ] {
            tensors.push((weights::layer(l, s), shape, ty));
        }
    }
    let (head, _) = header(&meta, &tensors).unwrap();
    let Parsed::Done(g) = Gguf::parse(&head, None).unwrap() else { panic!("the header is whole") };
    assert!(g.data_end() > 4 << 30);
    let gpu = std::sync::Arc::new(pollster::block_on(webllama::Gpu::new()).unwrap());
    let layout = webllama::Layout::of(&gpu);
    let part = 64u64 << 20;
    let before = gpu.bytes_allocated();
    let mut b = ModelBuilder::new(gpu.clone(), layout, &g, Some(16)).unwrap().with_max_part_bytes(part);
    let chunk = vec![0u8; 1 << 20];
    for i in 0..8u64 {
        b.feed(g.data_offset + i * chunk.len() as u64, &chunk).unwrap();
    }
    let allocated = gpu.bytes_allocated() - before;
    assert!(allocated <= (8 << 20) + part, "{allocated} bytes allocated for 8 MiB received");
    let e = b.finish().err().expect("the file ended");
    assert!(matches!(&e, Error::Truncated { what, .. } if what.contains("token_embd")), "{e}");
}

/// The parsed header of a one-layer llama model of width `dim` (feed-forward `ffn`, `heads` and
/// `kv_heads` heads) with `more` metadata, a 32-token F32 embedding and `layer`'s F32 tensors
/// (suffixes and shapes), without tensor data.
fn one_layer_header(
    dim: u64,
    ffn: u64,
    heads: u64,
    kv_heads: u64,
    more: Vec<(&str, Value)>,
    layer: Vec<(&str, Vec<u64>)>,
) -> Gguf {
    let meta: Vec<(String, Value)> = common::one_layer_llama(dim, ffn, heads, kv_heads)
        .into_iter()
        .chain([("tokenizer.ggml.model", Value::String("gpt2".into()))])
        .chain(more)
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let mut tensors = vec![
        ("token_embd.weight".to_string(), vec![dim, 32], QuantType::F32),
        ("output_norm.weight".to_string(), vec![dim], QuantType::F32),
    ];
    tensors.extend(layer.into_iter().map(|(s, shape)| (weights::layer(0, s), shape, QuantType::F32)));
    let (head, _) = header(&meta, &tensors).unwrap();
    let Parsed::Done(g) = Gguf::parse(&head, None).unwrap() else { panic!("the header is whole") };
    *g
}

/// A small header whose widths make activations no GPU buffer binding holds (131,072 heads of 4:
/// q alone is 2 MiB a row) is refused by name before any byte is uploaded, not at the end of the
/// load (nor as a device error).
#[test]
fn activations_over_a_binding_are_refused_before_the_upload() {
    let (dim, heads) = (64u64, 1u64 << 17);
    let more = vec![("llama.attention.key_length", Value::U32(4)), ("llama.attention.value_length", Value::U32(4))];
    let g = one_layer_header(
        dim,
        128,
        heads,
        1,
        more,
        vec![
            ("attn_norm.weight", vec![dim]),
            ("attn_q.weight", vec![dim, 4 * heads]),
            ("attn_k.weight", vec![dim, 4]),
            ("attn_v.weight", vec![dim, 4]),
            ("attn_output.weight", vec![4 * heads, dim]),
            ("ffn_norm.weight", vec![dim]),
            ("ffn_gate.weight", vec![dim, 128]),
            ("ffn_up.weight", vec![dim, 128]),
            ("ffn_down.weight", vec![128, dim]),
        ],
    );
    // A device of its own: nothing else allocates on it meanwhile.
    let gpu = std::sync::Arc::new(pollster::block_on(webllama::Gpu::new()).unwrap());
    let before = gpu.bytes_allocated();
    for layout in [webllama::Layout::of(&gpu), webllama::Layout::family(&gpu, webllama::Family::Gpu)] {
        match ModelBuilder::new(gpu.clone(), layout, &g, Some(16)) {
            Err(Error::OutOfMemory(m)) => assert!(m.contains("activations take") && m.contains("binding"), "{m}"),
            Err(e) => panic!("{layout}: another error: {e}"),
            Ok(_) => panic!("{layout}: taken"),
        }
    }
    assert_eq!(gpu.bytes_allocated(), before, "nothing allocated");
}

/// A mixture of experts whose prompt-chunk expert matmul would need more than 65,535 workgroups in
/// a grid dimension (256 experts, all used a token) is refused by name before the upload (its
/// first prompt was refused by the device).
#[test]
fn an_expert_grid_past_a_dispatch_is_refused_before_the_upload() {
    let (dim, ffn, experts) = (64u64, 64u64, 256u64);
    let more = vec![
        ("llama.expert_count", Value::U32(experts as u32)),
        ("llama.expert_used_count", Value::U32(experts as u32)),
    ];
    let g = one_layer_header(
        dim,
        ffn,
        4,
        2,
        more,
        vec![
            ("attn_norm.weight", vec![dim]),
            ("attn_q.weight", vec![dim, dim]),
            ("attn_k.weight", vec![dim, dim / 2]),
            ("attn_v.weight", vec![dim, dim / 2]),
            ("attn_output.weight", vec![dim, dim]),
            ("ffn_norm.weight", vec![dim]),
            ("ffn_gate_inp.weight", vec![dim, experts]),
            ("ffn_gate_exps.weight", vec![dim, ffn, experts]),
            ("ffn_up_exps.weight", vec![dim, ffn, experts]),
            ("ffn_down_exps.weight", vec![ffn, dim, experts]),
        ],
    );
    for layout in [common::layout(), common::gpu_family()] {
        match ModelBuilder::new(common::gpu(), layout, &g, Some(16)) {
            Err(Error::InvalidRequest(m)) => assert!(m.contains("over the 65,535 a dispatch allows"), "{m}"),
            Err(e) => panic!("{layout}: another error: {e}"),
            Ok(_) => panic!("{layout}: taken"),
        }
    }
}
