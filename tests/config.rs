//! Model configs read from GGUF headers: keys missing or inconsistent, files that would load and
//! compute something other than their model, and each architecture's own keys (granite's
//! multipliers, gemma3's windows): every refusal a named error.

mod common;

use common::tiny_gguf::{load, tiny};
use webllama::format::gguf::{Array, Value};
use webllama::Error;

#[test]
fn missing_and_inconsistent_llama_keys() {
    let drop = |key: &'static str| tiny(move |m| m.retain(|(k, _)| *k != key), |_| {});
    assert!(matches!(load(&drop("llama.block_count")), Err(Error::MissingKey(k)) if k == "llama.block_count"));
    assert!(matches!(load(&drop("general.architecture")), Err(Error::MissingKey(_))));
    let set = |key: &'static str, v: Value| {
        tiny(move |m| m.iter_mut().filter(|(k, _)| *k == key).for_each(|e| e.1 = v.clone()), |_| {})
    };
    assert!(
        matches!(load(&set("general.architecture", Value::String("gemma".into()))), Err(Error::UnsupportedArch(a)) if a == "gemma")
    );
    assert!(matches!(load(&set("llama.attention.head_count_kv", Value::U32(3))), Err(Error::BadConfig(_))));
    assert!(matches!(load(&set("llama.block_count", Value::I32(-1))), Err(Error::BadMetadata { .. })));
    assert!(matches!(load(&set("llama.block_count", Value::String("1".into()))), Err(Error::BadMetadata { .. })));
    assert!(matches!(load(&set("llama.embedding_length", Value::U32(0))), Err(Error::BadConfig(_))));
    assert!(matches!(load(&set("llama.rope.freq_base", Value::F32(f32::NAN))), Err(Error::BadConfig(_))));
    // Two layers declared, one present.
    let e = load(&set("llama.block_count", Value::U32(2))).unwrap_err();
    assert!(matches!(&e, Error::MissingTensor(t) if t == "blk.1.attn_norm.weight"), "{e}");
    // A tensor shaped against the config (its bytes as many as the config's shape would take).
    let e = load(&tiny(|_| {}, |t| t[4].1 = vec![32, 64])).unwrap_err();
    assert!(matches!(&e, Error::BadTensor { tensor, .. } if tensor == "blk.0.attn_k.weight"), "{e}");
    // A partial rotation, which llama.cpp refuses in a llama file; the whole head is accepted.
    let e = load(&tiny(|m| m.push(("llama.rope.dimension_count", Value::U32(8))), |_| {})).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("dimension_count is 8")), "{e}");
    assert_eq!(load(&tiny(|m| m.push(("llama.rope.dimension_count", Value::U32(16))), |_| {})).unwrap().n_rot, 16);
    // Duplicate keys.
    let e = load(&tiny(|m| m.push(("llama.block_count", Value::U32(1))), |_| {})).unwrap_err();
    assert!(matches!(&e, Error::BadMetadata { msg, .. } if msg.contains("twice")), "{e}");
}

/// Files that would load and then compute something other than their model are refused by name:
/// a tensor the decoder would not read (a classifier), a group of a llama file's biases in part,
/// experts stored apart (Mixtral conversions of 2023), an embedding or reranking model, a file with
/// no RMSNorm epsilon (families differ). The 2023 key of linear RoPE scaling is read.
#[test]
fn files_the_decoder_would_misread_are_refused_by_name() {
    let f32s = |n: u64| (vec![n], 0u32, vec![0u8; 4 * n as usize]);
    let with = |name: &'static str, n: u64| {
        tiny(
            |_| {},
            move |t| {
                let (dims, ty, bytes) = f32s(n);
                t.push((name, dims, ty, bytes))
            },
        )
    };
    let e = load(&with("cls.output.weight", 64)).unwrap_err();
    assert!(
        matches!(&e, Error::BadTensor { tensor, msg } if tensor == "cls.output.weight" && msg.contains("not part")),
        "{e}"
    );
    // A llama file's biases are read in groups (q, k, v; Wo; gate, up, down): a group's first bias
    // asks for the rest by name; a whole group loads.
    for (name, missing) in [("blk.0.attn_q.bias", "blk.0.attn_k.bias"), ("blk.0.ffn_down.bias", "blk.0.ffn_gate.bias")]
    {
        let e = load(&with(name, 64)).unwrap_err();
        assert!(matches!(&e, Error::MissingTensor(t) if t == missing), "{name}: {e}");
    }
    let biases = load(&with("blk.0.attn_output.bias", 64)).unwrap().biases;
    assert!(biases.out && !biases.qkv && !biases.ffn, "{biases:?}");
    let e = load(&with("blk.0.attn_output.bias", 32)).unwrap_err();
    assert!(matches!(&e, Error::BadTensor { tensor, .. } if tensor == "blk.0.attn_output.bias"), "{e}");
    let e = load(&with("blk.0.ffn_gate.3.weight", 64)).unwrap_err();
    assert!(
        matches!(&e, Error::BadConfig(m) if m.contains("blk.0.ffn_gate.3.weight") && m.contains("newer conversion")),
        "{e}"
    );
    let e = load(&tiny(|m| m.push(("llama.pooling_type", Value::U32(3))), |_| {})).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("pooling_type is 3")), "{e}");
    assert!(load(&tiny(|m| m.push(("llama.pooling_type", Value::U32(0))), |_| {})).is_ok());
    let e = load(&tiny(|m| m.retain(|(k, _)| !k.ends_with("rms_epsilon")), |_| {})).unwrap_err();
    assert!(matches!(&e, Error::MissingKey(k) if k == "llama.attention.layer_norm_rms_epsilon"), "{e}");
    // Linear scaling: the old key alone, the new keys, a type with no factor.
    let scale = |edit: fn(&mut Vec<(&'static str, Value)>)| load(&tiny(edit, |_| {})).unwrap().rope_freq_scale;
    assert_eq!(scale(|m| m.push(("llama.rope.scale_linear", Value::F32(4.0)))), 0.25);
    assert_eq!(
        scale(|m| m.extend([
            ("llama.rope.scaling.type", Value::String("linear".into())),
            ("llama.rope.scaling.factor", Value::F32(4.0))
        ])),
        0.25
    );
    assert_eq!(scale(|m| m.push(("llama.rope.scaling.type", Value::String("linear".into())))), 1.0);
    assert_eq!(scale(|_| {}), 1.0);
    // A factor with no type beside rope_freqs is LLaMA-3's, carried by the divisors: not applied twice.
    let llama3 = tiny(
        |m| m.push(("llama.rope.scaling.factor", Value::F32(8.0))),
        |t| t.push(("rope_freqs.weight", vec![8], 0, bytemuck::cast_slice(&[1f32; 8]).to_vec())),
    );
    assert_eq!(load(&llama3).unwrap().rope_freq_scale, 1.0);
    let e = load(&tiny(|m| m.push(("llama.rope.scaling.type", Value::U32(1))), |_| {})).unwrap_err();
    assert!(matches!(&e, Error::BadMetadata { key, .. } if key == "llama.rope.scaling.type"), "{e}");
}

/// granite's multipliers: logit_scale required, the others optional (0 reads as none, as in
/// llama.cpp), a negative or NaN one refused by name, a granite model without RoPE refused.
#[test]
fn granite_multipliers_are_read_and_checked() {
    let granite = |extra: Vec<(&'static str, Value)>| {
        tiny(
            move |m| {
                for (k, v) in m.iter_mut() {
                    if let Some(rest) = k.strip_prefix("llama.") {
                        *k = Box::leak(format!("granite.{rest}").into_boxed_str());
                    }
                    if *k == "general.architecture" {
                        *v = Value::String("granite".into());
                    }
                }
                for (key, value) in extra {
                    match m.iter_mut().find(|(k, _)| *k == key) {
                        Some(entry) => entry.1 = value,
                        None => m.push((key, value)),
                    }
                }
            },
            |_| {},
        )
    };
    let e = load(&granite(vec![])).unwrap_err();
    assert!(matches!(&e, Error::MissingKey(k) if k == "granite.logit_scale"), "{e}");
    let c = load(&granite(vec![
        ("granite.logit_scale", Value::F32(8.0)),
        ("granite.residual_scale", Value::F32(0.0)),
        ("granite.embedding_scale", Value::F32(12.0)),
    ]))
    .unwrap();
    assert_eq!(
        (c.multipliers.logit_scale, c.multipliers.residual_scale, c.multipliers.embedding_scale),
        (8.0, 1.0, 12.0)
    );
    assert_eq!(c.multipliers.attention_scale, None);
    assert_eq!(c.attention_scale(), 0.25, "1 / sqrt(head_dim 16) where the file names no scale");
    let c =
        load(&granite(vec![("granite.logit_scale", Value::F32(8.0)), ("granite.attention.scale", Value::F32(0.0625))]));
    assert_eq!(c.unwrap().attention_scale(), 0.0625);
    let e = load(&granite(vec![
        ("granite.logit_scale", Value::F32(8.0)),
        ("granite.residual_scale", Value::F32(f32::NAN)),
    ]))
    .unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("granite.residual_scale")), "{e}");
    // Granite 4.0's dense files give the KV heads per layer: the same in every layer loads.
    let scale = ("granite.logit_scale", Value::F32(8.0));
    let kv = |counts: Vec<u32>| ("granite.attention.head_count_kv", Value::Array(Array::U32(counts)));
    let c = load(&granite(vec![scale.clone(), kv(vec![2])])).unwrap();
    assert_eq!(c.n_kv_heads, 2);
    let e = load(&granite(vec![scale, kv(vec![2, 4])])).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("differs between layers")), "{e}");
    for bad in [-1.0, 0.0, 1e-30, 1e7] {
        let e = load(&granite(vec![("granite.logit_scale", Value::F32(bad))])).unwrap_err();
        assert!(matches!(&e, Error::BadConfig(m) if m.contains("granite.logit_scale")), "{bad}: {e}");
    }
    let e = load(&granite(vec![
        ("granite.logit_scale", Value::F32(8.0)),
        ("granite.rope.scaling.finetuned", Value::Bool(false)),
    ]))
    .unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("without RoPE")), "{e}");
}

/// The tiny model as a `layers`-layer gemma3 file (q and k norms, post-norms), with `extra` keys
/// set or added.
fn gemma3(layers: usize, extra: Vec<(&'static str, Value)>) -> Vec<u8> {
    gemma3_without(layers, extra, "")
}

/// gemma3's file without the tensor `missing`.
fn gemma3_without(layers: usize, extra: Vec<(&'static str, Value)>, missing: &'static str) -> Vec<u8> {
    gemma_file("gemma3", layers, extra, move |t| t.retain(|x| x.0 != missing))
}

/// A tensor list's edit.
type Tensors = Vec<(&'static str, Vec<u64>, u32, Vec<u8>)>;

/// The tiny model as a `layers`-layer file of `arch` (gemma2, or gemma3 with q and k norms) with its
/// post-norms, `extra` keys set or added, and `edit` made to its tensors last.
fn gemma_file(
    arch: &'static str,
    layers: usize,
    extra: Vec<(&'static str, Value)>,
    edit: impl FnOnce(&mut Tensors),
) -> Vec<u8> {
    tiny(
        move |m| {
            for (k, v) in m.iter_mut() {
                if let Some(rest) = k.strip_prefix("llama.") {
                    *k = Box::leak(format!("{arch}.{rest}").into_boxed_str());
                }
                if *k == "general.architecture" {
                    *v = Value::String(arch.into());
                }
                if k.ends_with(".block_count") {
                    *v = Value::U32(layers as u32);
                }
            }
            for (key, value) in extra {
                match m.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = value,
                    None => m.push((key, value)),
                }
            }
        },
        move |t| {
            let f32v = |n: u64| (vec![n], 0u32, vec![0u8; 4 * n as usize]);
            for (name, n) in [
                ("blk.0.attn_q_norm.weight", 16),
                ("blk.0.attn_k_norm.weight", 16),
                ("blk.0.post_attention_norm.weight", 64),
                ("blk.0.post_ffw_norm.weight", 64),
            ] {
                let (dims, ty, data) = f32v(n);
                t.push((name, dims, ty, data));
            }
            let layer0: Vec<_> = t.iter().filter(|x| x.0.starts_with("blk.0.")).cloned().collect();
            for l in 1..layers {
                for (name, dims, ty, data) in &layer0 {
                    let name = Box::leak(name.replace("blk.0.", &format!("blk.{l}.")).into_boxed_str());
                    t.push((name, dims.clone(), *ty, data.clone()));
                }
            }
            let qk_norm = |name: &str| name.ends_with("attn_q_norm.weight") || name.ends_with("attn_k_norm.weight");
            t.retain(|x| arch == "gemma3" || !qk_norm(x.0));
            edit(t);
        },
    )
}

/// gemma2's defaults as llama.cpp's gemma2 has them: a window of 4096 on every other layer, both
/// kinds of layer rotating alike (its linear scaling too), scores and logits soft-capped at 50 and
/// 30; a cap of 0 and an untied output refused by name.
#[test]
fn gemma2_defaults_are_llama_cpps() {
    let c = load(&gemma_file("gemma2", 3, vec![], |_| {})).unwrap();
    assert_eq!((0..3).map(|l| c.window(l)).collect::<Vec<_>>(), [4096, 0, 4096]);
    assert_eq!(c.softcaps(), (50.0, 30.0));
    assert!(c.ffn_gelu() && c.post_norms() && !c.traits.qk_norm);
    let scaled = vec![
        ("gemma2.rope.scaling.type", Value::String("linear".into())),
        ("gemma2.rope.scaling.factor", Value::F32(4.0)),
        ("gemma2.attention.sliding_window", Value::U32(16)),
        ("gemma2.attn_logit_softcapping", Value::F32(20.0)),
    ];
    let c = load(&gemma_file("gemma2", 2, scaled, |_| {})).unwrap();
    assert_eq!((c.layer_rope(0), c.layer_rope(1)), ((10000.0, 0.25), (10000.0, 0.25)));
    assert_eq!((c.window(0), c.softcaps()), (16, (20.0, 30.0)));
    // A factor under scaling type "none": llama.cpp's global layers ignore it, its sliding ones not.
    let unscaled = vec![
        ("gemma2.rope.scaling.type", Value::String("none".into())),
        ("gemma2.rope.scaling.factor", Value::F32(4.0)),
    ];
    let c = load(&gemma_file("gemma2", 2, unscaled, |_| {})).unwrap();
    assert_eq!((c.layer_rope(0), c.layer_rope(1)), ((10000.0, 0.25), (10000.0, 1.0)));
    let e =
        load(&gemma_file("gemma2", 1, vec![("gemma2.attn_logit_softcapping", Value::F32(0.0))], |_| {})).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("attn_logit_softcapping")), "{e}");
    let untied = gemma_file("gemma2", 1, vec![], |t| {
        let embd = t.iter().find(|x| x.0 == "token_embd.weight").unwrap().clone();
        t.push(("output.weight", embd.1, embd.2, embd.3));
    });
    let e = load(&untied).unwrap_err();
    assert!(matches!(&e, Error::BadTensor { tensor, .. } if tensor == "output.weight"), "{e}");
}

/// gemma3's keys as llama.cpp's gemma3 reads them: the sliding window and its layers (every 6th
/// layer global where the file says nothing; a period, or a flag a layer), the sliding layers' RoPE
/// base (10000 by default) without the global layers' linear scaling, the embedding times
/// sqrt(n_embd) and q k^T / sqrt(head_dim); Gemma 2's soft-capped logits and a missing post-norm
/// refused by name.
#[test]
fn gemma3_windows_and_rope_are_read_as_llama_cpp_reads_them() {
    let window = ("gemma3.attention.sliding_window", Value::U32(512));
    let c = load(&gemma3(7, vec![window.clone()])).unwrap();
    let windows: Vec<usize> = (0..7).map(|l| c.window(l)).collect();
    assert_eq!(windows, [512, 512, 512, 512, 512, 0, 512], "every 6th layer global");
    assert_eq!((c.multipliers.embedding_scale, c.attention_scale()), (8.0, 0.25));
    assert!(c.ffn_gelu() && c.post_norms());
    assert_eq!((c.layer_rope(0), c.layer_rope(5)), ((10000.0, 1.0), (10000.0, 1.0)));
    let scaled = vec![
        window.clone(),
        ("gemma3.rope.freq_base", Value::F32(1e6)),
        ("gemma3.rope.freq_base_swa", Value::F32(20000.0)),
        ("gemma3.rope.scaling.type", Value::String("linear".into())),
        ("gemma3.rope.scaling.factor", Value::F32(8.0)),
    ];
    let c = load(&gemma3(7, scaled)).unwrap();
    assert_eq!((c.layer_rope(0), c.layer_rope(5)), ((20000.0, 1.0), (1e6, 0.125)), "sliding, global");
    let pattern = |p: Value| vec![window.clone(), ("gemma3.attention.sliding_window_pattern", p)];
    let windows = |bytes: Vec<u8>| -> Vec<usize> {
        let c = load(&bytes).unwrap();
        (0..c.n_layers).map(|l| c.window(l)).collect()
    };
    assert_eq!(windows(gemma3(4, pattern(Value::U32(2)))), [512, 0, 512, 0]);
    assert_eq!(windows(gemma3(3, pattern(Value::U32(1)))), [0, 0, 0], "a period of 1: none slides");
    assert_eq!(windows(gemma3(3, pattern(Value::U32(0)))), [512, 512, 512], "0: every layer slides");
    let flags = Value::Array(Array::Bool(vec![false, true, true]));
    assert_eq!(windows(gemma3(3, pattern(flags))), [0, 512, 512]);
    assert_eq!(windows(gemma3(3, pattern(Value::Array(Array::I32(vec![1, 0, 1]))))), [512, 0, 512]);
    assert_eq!(windows(gemma3(2, vec![])), [0, 0], "no window: every layer global");
    let e = load(&gemma3(3, pattern(Value::Array(Array::Bool(vec![true]))))).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("sliding_window_pattern")), "{e}");
    // A final soft-cap where a gemma3 file names one (llama.cpp applies it); none by default.
    assert_eq!(load(&gemma3(1, vec![])).unwrap().softcaps(), (0.0, 0.0));
    let capped = load(&gemma3(1, vec![("gemma3.final_logit_softcapping", Value::F32(30.0))])).unwrap();
    assert_eq!(capped.softcaps(), (0.0, 30.0));
    let e = load(&gemma3(1, vec![("gemma3.final_logit_softcapping", Value::F32(-1.0))])).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("final_logit_softcapping")), "{e}");
    let e = load(&gemma3(1, vec![("gemma3.rope.freq_base_swa", Value::F32(0.5))])).unwrap_err();
    assert!(matches!(&e, Error::BadConfig(m) if m.contains("freq_base_swa")), "{e}");
    let e = load(&gemma3_without(1, vec![], "blk.0.post_ffw_norm.weight")).unwrap_err();
    assert!(matches!(&e, Error::MissingTensor(t) if t == "blk.0.post_ffw_norm.weight"), "{e}");
}
