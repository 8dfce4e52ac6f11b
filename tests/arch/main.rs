//! The weight types and architectures of tests/fixtures/arch (qwen2, qwen3, phi3, granite, gemma2, gemma3, smollm3, llama biases and
//! mixtures of experts, IQ4 types, split files; made with llama.cpp by
//! scripts/make_arch_fixtures.py) against their exact goldens (llama.cpp's F32 math on the
//! dequantized weights): greedy ids and top-8 logits within 0.05 (0.25 on the GPU family's f16 KV
//! cache), on the GPU with both kernel families and in reference.rs; the mixture-of-experts
//! kernels against reference.rs for every supported quant type; and a random-weight model whose
//! rows the CPU family pads past their blocks, against reference.rs.

#[path = "../common/mod.rs"]
mod common;
mod gemma;

use common::exact::{check_exact, check_exact_within, gpu_start, logit_tolerance, reference_start, WHOLE};
use common::kernels::*;
use common::Rng;
use std::cell::RefCell;
use webllama::format::quant::{QuantType, SUPPORTED};
use webllama::format::weights;
use webllama::kernels::{self, MoeMatmulParams, MoeMatvecParams, MoeRouteParams, QuantMatrix};
use webllama::reference;
use webllama::reference::RefModel;
use webllama::{Family, Model};

fn fixture(file: &str) -> String {
    common::repo_file(&format!("tests/fixtures/arch/{file}"))
}

/// The model in `file` against `name`'s exact golden on both kernel families and in the reference.
fn exact_everywhere(file: &str, name: &str) {
    let path = fixture(file);
    let golden = format!("arch/{name}.exact.json");
    for layout in [common::layout(), common::gpu_family()] {
        exact_on(layout, &path, &golden);
    }
    let (g, mut source) = weights::open_model(&path).unwrap();
    let m = RefCell::new(RefModel::load(&g, &mut source).unwrap());
    check_exact("reference", &golden, WHOLE, &mut reference_start(&m), &mut |t| m.borrow_mut().forward(t));
}

/// The tolerance of `layout`'s logits for the model at `path`: logit_tolerance, divided by
/// granite's divisor of the logits (the errors come before it).
fn tolerance(layout: &webllama::Layout, path: &str) -> f32 {
    let cfg = webllama::Config::from_gguf(&weights::read_header(path).unwrap()).unwrap();
    logit_tolerance(layout) / cfg.multipliers.logit_scale
}

/// The model at `path`, laid out for `layout`, decoding the exact golden's tokens.
fn exact_on(layout: webllama::Layout, path: &str, golden: &str) {
    let who = format!("gpu ({layout})");
    let model = RefCell::new(Model::load_file(common::gpu(), layout, path, Some(128)).unwrap());
    let tol = tolerance(&layout, path);
    check_exact_within(&who, golden, WHOLE, tol, &mut gpu_start(&model), &mut |t| {
        pollster::block_on(model.borrow_mut().step(t, true)).unwrap().logits.unwrap()
    });
}

/// The model in `file` with each prompt of `name`'s exact golden prefilled as one batch (the batch
/// graph's matmul kernels), then 4 decode steps on that cache fed the golden's tokens: the top-8
/// logits of each within logit_tolerance (0.05 on an f32 KV cache), on both kernel families.
fn prefill_everywhere(file: &str, name: &str) {
    prefill_on(&[common::layout(), common::gpu_family()], file, name);
}

/// prefill_everywhere's check on each of `layouts`.
fn prefill_on(layouts: &[webllama::Layout], file: &str, name: &str) {
    let golden = common::golden(&format!("arch/{name}.exact.json"));
    for &layout in layouts {
        let mut model = Model::load_file(common::gpu(), layout, &fixture(file), Some(128)).unwrap();
        let tol = tolerance(&layout, &fixture(file));
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

/// A llama file with every bias llama.cpp's llama graph adds (IBM Granite Code's layout): q, k, v
/// before RoPE, Wo's into the residual, gate and up before SwiGLU, down's into the residual.
#[test]
fn llama_biases_match_the_exact_golden() {
    exact_everywhere("tiny-llama-bias-Q8_0.gguf", "tiny-llama-bias-Q8_0");
    prefill_everywhere("tiny-llama-bias-Q8_0.gguf", "tiny-llama-bias-Q8_0");
    // With every matrix apart (no fused group): gate and up in hb and hb2, their biases each.
    for layout in [common::layout(), common::gpu_family()] {
        let apart = webllama::Layout { fuse: false, ..layout };
        exact_on(apart, &fixture("tiny-llama-bias-Q8_0.gguf"), "arch/tiny-llama-bias-Q8_0.exact.json");
    }
}

/// phi3 (Phi-3.5's layout): q | k | v stored in one matrix, gate | up in ffn_up, NEOX RoPE with
/// LongRoPE's long factors (the context, 128 here and 512 in llama.cpp's run, is above the file's
/// original 64) and its attention factor (Phi-3.5-mini's 1.19, on the rotated q and k).
#[test]
fn phi3_matches_the_exact_golden() {
    exact_everywhere("tiny-phi3-Q8_0.gguf", "tiny-phi3-Q8_0");
    prefill_everywhere("tiny-phi3-Q8_0.gguf", "tiny-phi3-Q8_0");
}

/// phi3's reading: the fused matrices, LongRoPE's divisors chosen by the context (llama.cpp's
/// rule: long ones above the original context), the attention factor in the attention's scale; a
/// lone set of factors is refused by name.
#[test]
fn phi3_long_or_short_factors_follow_the_context() {
    use webllama::format::config::Config;
    let path = fixture("tiny-phi3-Q8_0.gguf");
    let cfg = Config::from_gguf(&weights::read_header(&path).unwrap()).unwrap();
    assert!(cfg.phi3_layout.fused_qkv && cfg.phi3_layout.packed_gate_up);
    assert_eq!(cfg.rope_long_short, Some(64));
    // llama.cpp rounds the context up to 256 first: above 64 from the first position.
    assert_eq!(cfg.rope_factors_for(0), Some(weights::ROPE_FACTORS_SHORT));
    assert_eq!(cfg.rope_factors_for(1), Some(weights::ROPE_FACTORS_LONG));
    let factor = cfg.rope_attn_factor;
    assert!((factor - 1.190).abs() < 1e-3, "{factor}");
    assert!((cfg.attention_scale() - factor * factor / 32f32.sqrt()).abs() < 1e-7);
    assert_eq!(weights::graph_name(&cfg, 128, "blk.1.attn_qkv.weight"), "blk.1.attn_qkv");
    assert_eq!(weights::graph_name(&cfg, 128, "blk.1.ffn_up.weight"), "blk.1.ffn_gate_up");
    assert_eq!(weights::graph_name(&cfg, 128, weights::ROPE_FACTORS_LONG), weights::ROPE_FREQS);
    assert_eq!(weights::graph_name(&cfg, 0, weights::ROPE_FACTORS_SHORT), weights::ROPE_FREQS);
    // The file with its original context set to 4096 (a real Phi-3.5's): contexts up to 4096 take
    // the short factors, the model's and the reference's (which uses 4096) alike.
    let bytes = std::fs::read(&path).unwrap();
    let key = b"phi3.rope.scaling.original_context_length";
    let at = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len();
    assert_eq!(bytes[at..at + 8], [4, 0, 0, 0, 64, 0, 0, 0], "a u32 64");
    let mut short = bytes.clone();
    short[at + 4..at + 8].copy_from_slice(&4096u32.to_le_bytes());
    let short_path = std::env::temp_dir().join(format!("webllama-phi3-short-{}.gguf", std::process::id()));
    std::fs::write(&short_path, &short).unwrap();
    let short_path = short_path.to_str().unwrap().to_string();
    let (g, mut source) = weights::open_model(&short_path).unwrap();
    assert_eq!(Config::from_gguf(&g).unwrap().rope_factors_for(4096), Some(weights::ROPE_FACTORS_SHORT));
    let mut reference = RefModel::load(&g, &mut source).unwrap();
    let tokens = [1u32, 415, 5565, 302, 4843, 349, 17, 900];
    let want: Vec<Vec<f32>> = tokens.iter().map(|&t| reference.forward(t)).collect();
    for layout in [common::layout(), common::gpu_family()] {
        let mut model = Model::load_file(common::gpu(), layout, &short_path, Some(128)).unwrap();
        let tol = logit_tolerance(&layout);
        for (i, &t) in tokens.iter().enumerate() {
            let got = pollster::block_on(model.step(t, true)).unwrap().logits.unwrap();
            let worst = got.iter().zip(&want[i]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst <= tol, "{layout}: short factors, token {i}: a logit {worst} from the reference's");
        }
    }
    // The same positions with the long factors differ: the choice is seen.
    let long = pollster::block_on(async {
        let mut m = Model::load_file(common::gpu(), common::layout(), &path, Some(128)).unwrap();
        let mut last = vec![];
        for &t in &tokens {
            last = m.step(t, true).await.unwrap().logits.unwrap();
        }
        last
    });
    let apart = long.iter().zip(&want[tokens.len() - 1]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(apart > 1.0, "long and short factors gave logits within {apart}");
    std::fs::remove_file(&short_path).ok();
    let lone = replace_all(&std::fs::read(&path).unwrap(), b"rope_factors_short", b"rope_factors_shorx");
    let e = Config::from_gguf(&webllama::format::gguf::Gguf::parse_complete(&lone).unwrap()).unwrap_err();
    assert!(e.to_string().contains("come as a pair"), "{e}");
}

/// A phi3 file with q, k and v apart (llama.cpp's phi3 reads them so too): the tiny phi3 file with
/// its attn_qkv split into attn_q, attn_k and attn_v gives the fused file's logits on both families
/// (the builder groups the three as the file had them).
#[test]
fn phi3_with_q_k_v_apart_runs_as_the_fused_file() {
    use webllama::format::gguf::{Gguf, Value};
    let path = fixture("tiny-phi3-Q8_0.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse_complete(&bytes).unwrap();
    let cfg = webllama::Config::from_gguf(&g).unwrap();
    let (q, kv) = (cfg.q_dim() as u64, cfg.kv_dim() as u64);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut tensors: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = vec![];
    for t in &g.tensors {
        let data = &bytes[t.offset as usize..(t.offset + t.n_bytes) as usize];
        let Some(layer) = t.name.strip_suffix("attn_qkv.weight") else {
            tensors.push((leak(t.name.clone()), t.dims.clone(), t.ty.ggml_id(), data.to_vec()));
            continue;
        };
        let row = (t.n_bytes / t.dims[1]) as usize;
        for (suffix, r0, rows) in [("attn_q.weight", 0, q), ("attn_k.weight", q, kv), ("attn_v.weight", q + kv, kv)] {
            let part = data[r0 as usize * row..(r0 + rows) as usize * row].to_vec();
            tensors.push((leak(format!("{layer}{suffix}")), vec![t.dims[0], rows], t.ty.ggml_id(), part));
        }
    }
    let meta: Vec<(&str, Value)> = g.metadata.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let apart = std::env::temp_dir().join(format!("webllama-phi3-apart-{}.gguf", std::process::id()));
    std::fs::write(&apart, webllama::format::gguf_write::build(&meta, &tensors)).unwrap();
    let apart = apart.to_str().unwrap().to_string();
    let split_cfg = webllama::Config::from_gguf(&weights::read_header(&apart).unwrap()).unwrap();
    assert!(!split_cfg.phi3_layout.fused_qkv && split_cfg.phi3_layout.packed_gate_up);
    let tokens = [1u32, 415, 5565, 302, 4843, 349, 17, 900];
    for layout in [common::layout(), common::gpu_family()] {
        let run = |file: &str| -> Vec<Vec<f32>> {
            let mut model = Model::load_file(common::gpu(), layout, file, Some(128)).unwrap();
            tokens.iter().map(|&t| pollster::block_on(model.step(t, true)).unwrap().logits.unwrap()).collect()
        };
        let (fused, split) = (run(&path), run(&apart));
        for (i, (a, b)) in fused.iter().zip(&split).enumerate() {
            let worst = common::max_abs_diff(a, b);
            assert!(worst <= 1e-4, "{layout}: position {i}: q, k, v apart give logits {worst} from the fused file's");
        }
    }
    std::fs::remove_file(apart).unwrap();
}

/// granite (IBM Granite 3.x): the embedding times 12, each block's output times 0.22 into the
/// residual, attention scores q k^T / head_dim, logits / 8.
#[test]
fn granite_matches_the_exact_golden() {
    exact_everywhere("tiny-granite-Q8_0.gguf", "tiny-granite-Q8_0");
    prefill_everywhere("tiny-granite-Q8_0.gguf", "tiny-granite-Q8_0");
}

/// granite past attention's first split (64 positions), on both families and with every matrix
/// apart, against reference.rs: its attention's output is scaled before Wo, so the GPU family's Wo
/// does not merge the splits (merging them there would skip the scale).
#[test]
fn granite_decodes_past_one_attention_split() {
    decodes_as_the_reference(&fixture("tiny-granite-Q8_0.gguf"), 96);
}

/// The model at `path` decoding `n` random tokens on both families, fused and with every matrix
/// apart, each position's logits within the family's tolerance of reference.rs's.
fn decodes_as_the_reference(path: &str, n: usize) {
    let (g, mut source) = weights::open_model(path).unwrap();
    let mut reference = RefModel::load(&g, &mut source).unwrap();
    let mut rng = Rng(0x6a5);
    let tokens: Vec<u32> = (0..n).map(|_| rng.next_u32() % 8000).collect();
    let want: Vec<Vec<f32>> = tokens.iter().map(|&t| reference.forward(t)).collect();
    for layout in [common::layout(), common::gpu_family()] {
        for layout in [layout, webllama::Layout { fuse: false, ..layout }] {
            let mut model = Model::load_file(common::gpu(), layout, path, Some(256)).unwrap();
            let tol = tolerance(&layout, path);
            for (i, &t) in tokens.iter().enumerate() {
                let got = pollster::block_on(model.step(t, true)).unwrap().logits.unwrap();
                let worst = got.iter().zip(&want[i]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(worst <= tol, "{layout}: position {i}, a logit {worst} from the reference's (tolerance {tol})");
            }
        }
    }
}

/// smollm3 (SmolLM3): LLaMA's decoder in which layer 3 of 4 rotates neither q nor k, as llama.cpp's
/// smollm3 graph has it (every 4th layer); decoding 96 positions against reference.rs besides.
#[test]
fn smollm3_matches_the_exact_golden() {
    exact_everywhere("tiny-smollm3-Q8_0.gguf", "tiny-smollm3-Q8_0");
    prefill_everywhere("tiny-smollm3-Q8_0.gguf", "tiny-smollm3-Q8_0");
    decodes_as_the_reference(&fixture("tiny-smollm3-Q8_0.gguf"), 96);
    let cfg = webllama::Config::from_gguf(&weights::read_header(&fixture("tiny-smollm3-Q8_0.gguf")).unwrap()).unwrap();
    assert_eq!((0..4).map(|l| cfg.layer_ropes(l)).collect::<Vec<_>>(), [true, true, true, false]);
}

/// The n-candidates path (one weight pass for several rows at one position, each row's own branch
/// of the cache) on the new architectures' steps (biases, phi3's fused matrices, granite's
/// multipliers): two steps of 3 candidates after a prompt give each row the logits that row's
/// tokens give alone, on both families.
#[test]
fn candidates_run_the_new_architectures() {
    let names = [
        "tiny-llama-bias-Q8_0",
        "tiny-phi3-Q8_0",
        "tiny-granite-Q8_0",
        "tiny-gemma3-Q8_0",
        "tiny-gemma2-Q8_0",
        "tiny-smollm3-Q8_0",
    ];
    for name in names {
        let path = fixture(&format!("{name}.gguf"));
        // 12 tokens: past gemma3's window of 8 before the candidates' steps.
        let prompt = [1u32, 415, 5565, 302, 4843, 349, 7705, 1236, 302, 793, 349, 3162];
        let rows = [[17u32, 900], [3000, 4], [512, 7000]];
        for layout in [common::layout(), common::gpu_family()] {
            let mut model = Model::load_file(common::gpu(), layout, &path, Some(128)).unwrap();
            let tol = tolerance(&layout, &path);
            let mut alone = vec![];
            for row in &rows {
                model.truncate(0);
                pollster::block_on(model.prefill(&prompt, false)).unwrap();
                alone.push(row.map(|t| pollster::block_on(model.step(t, true)).unwrap().logits.unwrap()));
            }
            model.truncate(0);
            pollster::block_on(model.prefill(&prompt, false)).unwrap();
            pollster::block_on(model.reserve_candidates(3, 4)).unwrap();
            for offset in 0..2 {
                let tokens: Vec<u32> = rows.iter().map(|r| r[offset]).collect();
                let out = pollster::block_on(model.candidates_step(&tokens, offset, true)).unwrap();
                for (r, o) in out.iter().enumerate() {
                    let got = o.logits.as_ref().unwrap();
                    let want = &alone[r][offset];
                    let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                    assert!(
                        worst <= tol,
                        "{name} {layout}: candidate {r} step {offset}: a logit {worst} from its own run"
                    );
                }
            }
        }
    }
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
    let html = std::fs::read_to_string(common::repo_file("www/index.html")).unwrap();
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

/// The mixture-of-experts kernels on both families: the GPU family pads blocks and reads whole
/// words (kernels::gpu), the CPU family does not.
#[test]
fn moe_route_and_moe_matvec_match() {
    for f in [Family::Gpu, Family::Cpu] {
        moe_kernels_match(family(f));
    }
}

fn moe_kernels_match(g: On) {
    let mut rng = Rng(23);
    let (n_experts, n_used, tokens) = (8usize, 2usize, 3usize);
    let logits = rng.vec(tokens * n_experts);
    let lb = g.storage_with("router logits", bytemuck::cast_slice(&logits));
    let route = g.storage("route", 8 * (tokens * n_used) as u64);
    let p = MoeRouteParams { n_experts: n_experts as u32, n_used: n_used as u32, rows: tokens as u32, _pad: 0 };
    kernels::submit(&g, &[kernels::moe_route(g.t(), &lb, &route, p).unwrap()]);
    let got = pollster::block_on(g.gpu.read_f32(&route, 0, 2 * (tokens * n_used) as u64)).unwrap();
    let mut routes = vec![];
    for t in 0..tokens {
        let want = reference::moe_route(&logits[t * n_experts..(t + 1) * n_experts], n_used);
        for (j, &(e, w)) in want.iter().enumerate() {
            let (id, weight) = (got[2 * (t * n_used + j)].to_bits() as usize, got[2 * (t * n_used + j) + 1]);
            assert_eq!(id, e, "moe_route token {t} slot {j}");
            assert!((weight - w).abs() < 1e-5, "moe_route token {t} slot {j}: weight {weight}, reference {w}");
        }
        routes.push(want);
    }
    // Router logits no softmax ranks (every one NaN; one finite among NaNs; one +inf): every slot
    // still names an expert in range, no expert twice in a token, every weight finite.
    let mut odd = vec![f32::NAN; tokens * n_experts];
    odd[n_experts + 3] = 0.5;
    odd[2 * n_experts..].copy_from_slice(&logits[2 * n_experts..]);
    odd[2 * n_experts + 5] = f32::INFINITY;
    let ob = g.storage_with("router logits", bytemuck::cast_slice(&odd));
    kernels::submit(&g, &[kernels::moe_route(g.t(), &ob, &route, p).unwrap()]);
    let got = pollster::block_on(g.gpu.read_f32(&route, 0, 2 * (tokens * n_used) as u64)).unwrap();
    for t in 0..tokens {
        let slot = |j: usize| (got[2 * (t * n_used + j)].to_bits() as usize, got[2 * (t * n_used + j) + 1]);
        let ids: Vec<usize> = (0..n_used).map(|j| slot(j).0).collect();
        assert!(ids.iter().all(|&e| e < n_experts) && ids[0] != ids[1], "token {t}: experts {ids:?}");
        assert!(
            (0..n_used).all(|j| slot(j).1.is_finite()),
            "token {t}: weights {:?}",
            (0..n_used).map(slot).collect::<Vec<_>>()
        );
    }
    assert_eq!(got[2 * n_used].to_bits(), 3, "the one finite logit first");
    assert_eq!(got[4 * n_used].to_bits(), 5, "+inf first");
    // Put back the routes the matvecs below read.
    kernels::submit(&g, &[kernels::moe_route(g.t(), &lb, &route, p).unwrap()]);
    for &ty in SUPPORTED {
        let (rows, cols) = (40usize, width(ty, 256));
        let (bytes, w) = random_matrix(ty, n_experts * rows, cols, &mut rng);
        let wb = g.storage_with("experts", &gpu_blocks(&g, ty, &bytes));
        let m = QuantMatrix::stored(&g.layout, ty, &wb, (n_experts * rows) as u32, cols as u32);
        let x = rng.vec(tokens * cols);
        let acc = rng.vec(tokens * rows);
        let (xb, out) =
            (g.storage_with("x", bytemuck::cast_slice(&x)), g.storage_with("out", bytemuck::cast_slice(&acc)));
        let p = MoeMatvecParams {
            rows: rows as u32,
            x_stride: cols as u32,
            out_stride: rows as u32,
            n_used: n_used as u32,
            ..Default::default()
        };
        // out = W_e0 x (slot 0), then out += w_e1 W_e1 x (slot 1).
        let plain = kernels::moe_matvec(g.t(), &m, &xb, &out, &route, p, tokens as u32).unwrap();
        let weighted = MoeMatvecParams { slot: 1, weighted: 1, ..p };
        let weighted = kernels::moe_matvec(g.t(), &m, &xb, &out, &route, weighted, tokens as u32).unwrap();
        kernels::submit(&g, &[plain, weighted]);
        let mut want = vec![];
        for (t, r) in routes.iter().enumerate() {
            let xt = &x[t * cols..(t + 1) * cols];
            let (e0, (e1, w1)) = (r[0].0, r[1]);
            let y0 = reference::matvec_rows(&w, e0 * rows, rows, xt);
            let y1 = reference::matvec_rows(&w, e1 * rows, rows, xt);
            want.extend(y0.iter().zip(&y1).map(|(a, b)| a + w1 * b));
        }
        check(
            "moe_matvec",
            ty.name(),
            &format!("{} [{n_experts}x{rows}x{cols}] {tokens} tokens", g.layout),
            &read(&out, tokens * rows),
            &want,
        );

        // Grouped by expert: out[i] = W_e x[token of i] per (token, slot) item, then per item's own
        // input (the down projection's form), then x[t] += the items' weighted sum (moe_sum).
        let n_items = tokens * n_used;
        let shape = format!("{} [{n_experts}x{rows}x{cols}] {n_items} items", g.layout);
        let items = g.storage("items", 4 * (n_items * rows) as u64);
        let p = MoeMatmulParams {
            rows: rows as u32,
            x_stride: cols as u32,
            n_items: n_items as u32,
            n_used: n_used as u32,
            per_token: 1,
            ..Default::default()
        };
        let d = kernels::moe_matmul(g.t(), &m, &xb, &items, &route, p, n_experts as u32).unwrap();
        kernels::submit(&g, &[d]);
        let expert = |i: usize| routes[i / n_used][i % n_used].0;
        let want: Vec<f32> = (0..n_items)
            .flat_map(|i| reference::matvec_rows(&w, expert(i) * rows, rows, &x[i / n_used * cols..][..cols]))
            .collect();
        check("moe_matmul", ty.name(), &shape, &read(&items, n_items * rows), &want);
        let per_item = rng.vec(n_items * cols);
        let pb = g.storage_with("per item", bytemuck::cast_slice(&per_item));
        let d = kernels::moe_matmul(
            g.t(),
            &m,
            &pb,
            &items,
            &route,
            MoeMatmulParams { per_token: 0, ..p },
            n_experts as u32,
        );
        let acc_b = g.storage_with("acc", bytemuck::cast_slice(&acc));
        let sum = kernels::moe_sum(g.t(), &items, &route, &acc_b, rows as u32, n_used as u32, tokens as u32).unwrap();
        kernels::submit(&g, &[d.unwrap(), sum]);
        let mut want = acc.clone();
        for i in 0..n_items {
            let y = reference::matvec_rows(&w, expert(i) * rows, rows, &per_item[i * cols..][..cols]);
            let weight = routes[i / n_used][i % n_used].1;
            want[i / n_used * rows..][..rows].iter_mut().zip(y).for_each(|(o, y)| *o += weight * y);
        }
        check("moe_matmul + moe_sum", ty.name(), &shape, &read(&acc_b, tokens * rows), &want);
    }
}

/// A one-layer random-weight llama model of width `dim` (4 heads, 2 KV heads), feed-forward width
/// `ffn`, vocabulary 64, its matrices of `ty` (the feed-forward's gate and up of `gate_up`), against
/// reference.rs on both kernel families: 5 tokens one by one, then the same as a batched prefill.
/// The loader's layouts (padded blocks, padded rows, fused groups, textures) meet the kernels here.
fn random_model_against_reference(ty: QuantType, gate_up: QuantType, dim: u64, ffn: u64) {
    use webllama::format::gguf_write as writer;
    let vocab = 64u64;
    let meta = common::one_layer_llama(dim, ffn, 4, 2);
    let mut rng = Rng(0x5eed_0000 ^ dim ^ (ty.ggml_id() as u64) << 20);
    // The largest root-mean-square value of the matrices.
    let mut rms = 0f32;
    let mut matrix = |ty: QuantType, rows: u64, cols: u64| {
        let (bytes, mat) = random_matrix(ty, rows as usize, cols as usize, &mut rng);
        rms = rms.max((mat.data.iter().map(|v| v * v).sum::<f32>() / mat.data.len() as f32).sqrt());
        (vec![cols, rows], ty.ggml_id(), bytes)
    };
    let mut tensors: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = [
        ("token_embd.weight", matrix(ty, vocab, dim)),
        ("blk.0.attn_q.weight", matrix(ty, dim, dim)),
        ("blk.0.attn_k.weight", matrix(ty, dim / 2, dim)),
        ("blk.0.attn_v.weight", matrix(ty, dim / 2, dim)),
        ("blk.0.attn_output.weight", matrix(ty, dim, dim)),
        ("blk.0.ffn_gate.weight", matrix(gate_up, ffn, dim)),
        ("blk.0.ffn_up.weight", matrix(gate_up, ffn, dim)),
        ("blk.0.ffn_down.weight", matrix(ty, dim, ffn)),
    ]
    .into_iter()
    .map(|(name, (dims, ty, data))| (name, dims, ty, data))
    .collect();
    // Norm weights of 1 / (sqrt(dim) rms) keep each matrix's products near 1, as in a real model
    // (random blocks hold values far larger than trained ones: their products would pass f16's
    // range, which the GPU family's tiles hold).
    let scale = 1.0 / ((dim as f32).sqrt() * rms);
    for name in ["output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"] {
        tensors.push((name, vec![dim], 0, bytemuck::cast_slice(&vec![scale; dim as usize]).to_vec()));
    }
    let path = std::env::temp_dir().join(format!("webllama-random-{}-{dim}-{}.gguf", ty.name(), std::process::id()));
    std::fs::write(&path, writer::build(&meta, &tensors)).unwrap();
    let path = path.to_str().unwrap().to_string();
    let tokens = [3u32, 17, 40, 63, 8];
    let (g, mut source) = weights::open_model(&path).unwrap();
    let mut reference = RefModel::load(&g, &mut source).unwrap();
    let want: Vec<Vec<f32>> = tokens.iter().map(|&t| reference.forward(t)).collect();
    // Every logit within tol of the reference's, scaled by the largest (NaN fails).
    let close = |who: &str, got: &[f32], want: &[f32], tol: f32| {
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        if let Some(i) =
            (0..want.len()).find(|&i| (got[i] - want[i]).is_nan() || (got[i] - want[i]).abs() > tol * scale)
        {
            panic!("{who}: logit {i} is {} against the reference's {} (scale {scale})", got[i], want[i]);
        }
    };
    for layout in [common::layout(), common::gpu_family()] {
        let mut model = Model::load_file(common::gpu(), layout, &path, Some(64)).unwrap();
        // One layer, five tokens: the error is the kernels' rounding, not a model's drift. Measured
        // on lavapipe (every type, both widths): at most 4.8e-6 of the largest logit with an f32
        // KV cache, 1.7e-3 with the GPU family's f16 cache and tiles. A block misread is far more.
        let tol = if webllama::model::kv_cache::elem_bytes(&layout) == 4 { 1e-4 } else { 1e-2 };
        for (i, &t) in tokens.iter().enumerate() {
            let got = pollster::block_on(model.step(t, true)).unwrap().logits.unwrap();
            close(&format!("{} {layout} step {i}", ty.name()), &got, &want[i], tol);
        }
        model.truncate(0);
        let got = pollster::block_on(model.prefill(&tokens, true)).unwrap().logits.unwrap();
        close(&format!("{} {layout} prefill", ty.name()), &got, &want[tokens.len() - 1], tol);
    }
    std::fs::remove_file(&path).ok();
}

/// Rows whose stored blocks don't fill whole 16-byte steps load as the kernels read them: in the
/// CPU family, Q4_0 rows of 96 values (3 blocks, stored at 20 bytes: 60) lie 64 bytes apart and
/// Q5_0's (3 at 24: 72) 80 apart (they were written packed, and the model gave NaN).
#[test]
fn rows_padded_past_their_blocks_load_as_the_kernels_read_them() {
    random_model_against_reference(QuantType::Q4_0, QuantType::Q5_0, 96, 192);
}

/// Every supported type through the loader on both kernel families: rows of 3 blocks (an odd count:
/// padding and alignment edges), a model of each type against reference.rs.
#[test]
fn every_type_loads_as_its_kernels_read_it() {
    for &ty in SUPPORTED {
        let dim = 3 * ty.block_elems().max(32);
        random_model_against_reference(ty, ty, dim, 2 * dim);
    }
}
