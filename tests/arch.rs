//! The weight types and architectures of tests/fixtures/arch (made with llama.cpp by
//! scripts/make_arch_fixtures.py) against their exact goldens (llama.cpp's F32 math on the
//! dequantized weights): greedy ids and top-8 logits within 0.05, on the GPU with both kernel
//! families and in reference.rs.

mod common;

use common::exact::{check_exact, check_exact_within, logit_tolerance, WHOLE};
use std::cell::RefCell;
use webllama::format::weights;
use webllama::reference::RefModel;
use webllama::Model;

fn fixture(file: &str) -> String {
    format!("{}/tests/fixtures/arch/{file}", env!("CARGO_MANIFEST_DIR"))
}

/// The model in `file` against `name`'s exact golden on both kernel families and in the reference.
fn exact_everywhere(file: &str, name: &str) {
    let path = fixture(file);
    let golden = format!("arch/{name}.exact.json");
    for layout in [common::layout(), common::gpu_family()] {
        let who = format!("gpu ({layout})");
        let model = RefCell::new(Model::load_file(common::gpu(), layout, &path, Some(128)).unwrap());
        let tol = logit_tolerance(&layout);
        check_exact_within(&who, &golden, WHOLE, tol, &mut || model.borrow_mut().truncate(0), &mut |t| {
            pollster::block_on(model.borrow_mut().step(t, true)).unwrap().logits.unwrap()
        });
    }
    let (g, mut source) = weights::open_model(&path).unwrap();
    let m = RefCell::new(RefModel::load(&g, &mut source).unwrap());
    check_exact("reference", &golden, WHOLE, &mut || m.borrow_mut().reset(), &mut |t| m.borrow_mut().forward(t));
}

/// The model in `file` with each prompt of `name`'s exact golden prefilled as one batch (the batch
/// graph's matmul kernels), then 4 decode steps on that cache fed the golden's tokens: the top-8
/// logits of each within logit_tolerance (0.05 on an f32 KV cache), on both kernel families.
fn prefill_everywhere(file: &str, name: &str) {
    let golden = common::golden(&format!("arch/{name}.exact.json"));
    for layout in [common::layout(), common::gpu_family()] {
        let mut model = Model::load_file(common::gpu(), layout, &fixture(file), Some(128)).unwrap();
        let tol = logit_tolerance(&layout);
        for p in golden["prompts"].as_array().unwrap() {
            let ids = |v: &serde_json::Value| -> Vec<u32> {
                v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
            };
            let prompt = ids(&p["prompt_ids"]);
            model.truncate(0);
            let mut logits = pollster::block_on(model.prefill(&prompt, true)).unwrap().logits.unwrap();
            for (i, step) in p["steps"].as_array().unwrap().iter().take(5).enumerate() {
                for t in step["top"].as_array().unwrap() {
                    let (id, want) = (t[0].as_u64().unwrap() as usize, t[1].as_f64().unwrap() as f32);
                    let got = logits[id];
                    assert!(
                        (got - want).abs() <= tol,
                        "{layout} {name} {} step {i}: logit of {id} is {got}, golden {want}",
                        p["name"]
                    );
                }
                let token = step["token"].as_u64().unwrap() as u32;
                logits = pollster::block_on(model.step(token, true)).unwrap().logits.unwrap();
            }
        }
    }
}

/// qwen2: q, k, v biases; NEOX RoPE; a byte-level BPE vocabulary with the qwen2 pre-tokenizer.
#[test]
fn qwen2_matches_the_exact_golden() {
    exact_everywhere("tiny-qwen2-Q8_0.gguf", "tiny-qwen2-Q8_0");
    prefill_everywhere("tiny-qwen2-Q8_0.gguf", "tiny-qwen2-Q8_0");
}

/// qwen3: per-head q and k RMSNorm before NEOX RoPE; head_dim 64 with n_embd 128 (q wider than x).
#[test]
fn qwen3_matches_the_exact_golden() {
    exact_everywhere("tiny-qwen3-Q5_0.gguf", "tiny-qwen3-Q5_0");
    prefill_everywhere("tiny-qwen3-Q5_0.gguf", "tiny-qwen3-Q5_0");
}

/// A Mixtral-style mixture of experts in a llama file: 8 experts, 2 used (router softmax, top 2,
/// renormalized), decode and batched prefill.
#[test]
fn moe_matches_the_exact_golden() {
    exact_everywhere("tiny-moe-Q8_0.gguf", "tiny-moe-Q8_0");
    prefill_everywhere("tiny-moe-Q8_0.gguf", "tiny-moe-Q8_0");
}

/// Decode of the mixture reads only the routed experts' bytes: the model's weight bytes per token
/// count 2 of the 8 experts of each stacked matrix.
#[test]
fn moe_decode_reads_only_the_used_experts() {
    let path = fixture("tiny-moe-Q8_0.gguf");
    let model = Model::load_file(common::gpu(), common::layout(), &path, Some(64)).unwrap();
    let (g, _) = weights::open_model(&path).unwrap();
    let all: u64 = g.tensors.iter().map(|t| t.n_bytes).sum();
    let experts: u64 = g.tensors.iter().filter(|t| t.name.ends_with("_exps.weight")).map(|t| t.n_bytes).sum();
    assert!(experts > all / 2, "the fixture's weights are mostly experts");
    assert_eq!(model.weight_bytes, all - experts + experts / 8 * 2);
}

#[test]
fn iq4_nl_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_NL.gguf", "tiny-llama-IQ4_NL");
}

#[test]
fn iq4_xs_weights_match_the_exact_golden() {
    exact_everywhere("tiny-llama-IQ4_XS.gguf", "tiny-llama-IQ4_XS");
}

/// A model in 3 parts (gguf-split), given by its first part, loads as one file.
#[test]
fn a_split_model_loads_from_its_first_part() {
    exact_everywhere("tiny-split-Q4_1-00001-of-00003.gguf", "tiny-split-Q4_1");
}

/// A missing part, or parts that do not belong together, are named errors.
#[test]
fn a_split_model_with_a_part_missing_or_foreign_is_refused_by_name() {
    let dir = std::env::temp_dir().join(format!("webllama-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let part = |k: u32| format!("tiny-split-Q4_1-0000{k}-of-00003.gguf");
    let first = dir.join(part(1));
    std::fs::copy(fixture(&part(1)), &first).unwrap();
    std::fs::copy(fixture(&part(2)), dir.join(part(2))).unwrap();
    let e = weights::open_model(first.to_str().unwrap()).err().expect("part 3 is missing");
    assert!(e.to_string().contains(&part(3)), "{e}");
    // Part 2 given as part 3: its split.no says otherwise.
    std::fs::copy(fixture(&part(2)), dir.join(part(3))).unwrap();
    let e = weights::open_model(first.to_str().unwrap()).err().expect("part 3 is part 2");
    assert!(e.to_string().contains("split.no"), "{e}");
    // A first part not named like one.
    let renamed = dir.join("model.gguf");
    std::fs::copy(fixture(&part(1)), &renamed).unwrap();
    let e = weights::open_model(renamed.to_str().unwrap()).err().expect("no part names");
    assert!(e.to_string().contains("00001-of-00003"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An architecture that does not load names itself; so does a mixture of experts outside a llama
/// file.
#[test]
fn unsupported_architectures_are_named() {
    let bytes = std::fs::read(fixture("tiny-qwen2-Q8_0.gguf")).unwrap();
    let moe = std::fs::read(fixture("tiny-moe-Q8_0.gguf")).unwrap();
    // Relabelled files (same lengths, so the headers' offsets stay right): qwen2 as gemma, the
    // llama MoE as qwen2 (whose files have no experts).
    let gemma =
        replace_all(&replace_all(&bytes, b"qwen2.", b"gemma."), b"\x05\0\0\0\0\0\0\0qwen2", b"\x05\0\0\0\0\0\0\0gemma");
    let qwen_moe =
        replace_all(&replace_all(&moe, b"llama.", b"qwen2."), b"\x05\0\0\0\0\0\0\0llama", b"\x05\0\0\0\0\0\0\0qwen2");
    for (name, file, want) in [
        ("gemma", gemma, "unsupported architecture \"gemma\""),
        ("qwen2-moe", qwen_moe, "ffn_gate_inp.weight\" (8 experts): mixture-of-experts qwen2 files are not supported"),
    ] {
        let path = std::env::temp_dir().join(format!("webllama-{name}-{}.gguf", std::process::id()));
        std::fs::write(&path, file).unwrap();
        let e = Model::load_file(common::gpu(), common::layout(), path.to_str().unwrap(), Some(64)).err();
        std::fs::remove_file(&path).ok();
        let e = e.expect(name).to_string();
        assert!(e.contains(want), "{name}: {e}");
    }
}

/// `bytes` with every `from` replaced by `to` (of the same length).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    out
}

/// The page's model panel names every weight type and architecture webllama loads.
#[test]
fn the_page_lists_every_supported_type() {
    let html = std::fs::read_to_string(format!("{}/www/index.html", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let at = html.find("id=\"supported\"").expect("the page's list of what loads");
    let list = &html[at..at + html[at..].find("</p>").unwrap()];
    let words: Vec<&str> = list.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).collect();
    for ty in webllama::format::quant::SUPPORTED {
        assert!(words.contains(&ty.name()), "{} is not in the page's list", ty.name());
    }
    for arch in webllama::format::config::ARCHITECTURES {
        assert!(list.contains(&format!("<code>{}</code>", arch.name)), "{} is not in the page's list", arch.name);
    }
}
