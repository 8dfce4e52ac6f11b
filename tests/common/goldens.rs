//! llama.cpp's generation goldens for the default model (SmolLM2-135M-Instruct): the cases, how
//! far a greedy run must follow them (up to the first near-tie) and the comparison of a run's ids
//! and logits with them (tests/generation.rs).

use serde_json::Value;
use webllama::format::weights;
use webllama::{Model, Tokenizer};

/// Greedy steps each golden holds.
pub const STEPS: usize = 32;

/// One golden generation: its prompt, greedy ids and top-5 logits per step.
pub struct Case {
    pub name: String,
    pub prompt: String,
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub top5: Vec<Vec<(u32, f32)>>,
    pub text_until_eog: String,
}

/// The cases of a golden file's list.
pub fn cases(v: &Value) -> Vec<Case> {
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_string(),
            prompt: c["prompt"].as_str().unwrap().to_string(),
            prompt_ids: ids(&c["prompt_ids"]),
            ids: ids(&c["generated_ids"]),
            top5: c["top5_per_step"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    s.as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
                        .collect()
                })
                .collect(),
            text_until_eog: c["generated_text_until_eog"].as_str().unwrap().to_string(),
        })
        .collect()
}

/// SmolLM2's goldens: (variant, logit tolerance, cases).
pub fn goldens() -> Vec<(&'static str, f32, Vec<Case>)> {
    let q = super::golden("smollm2/generation_q4_1.json");
    let v = super::golden("smollm2/generation_variants.json");
    vec![("F32", 0.05, cases(&v["variants"]["F32"])), ("Q4_1", 1.5, cases(&q["results"]))]
}

/// The first step of `c` whose top two golden logits are within `tol` (a near-tie: the greedy ids
/// may differ from there on), at most STEPS.
pub fn cutoff(c: &Case, tol: f32) -> usize {
    (0..STEPS).find(|&i| c.top5[i][0].1 - c.top5[i][1].1 < tol).unwrap_or(STEPS)
}

/// The decode steps a comparison with `c` reads: up to and including the near-tie, at most `cap`.
pub fn steps_for(c: &Case, tol: f32, cap: usize) -> usize {
    (cutoff(c, tol) + 1).min(cap).min(STEPS)
}

/// Compares one run with one golden over the steps run; returns the largest logit deviation seen.
pub fn compare(who: &str, variant: &str, tol: f32, c: &Case, ids: &[u32], logits: &[Vec<f32>]) -> f32 {
    let cutoff = cutoff(c, tol).min(logits.len());
    let mut worst = 0f32;
    for i in 0..logits.len().min(cutoff + 1) {
        for &(id, want) in &c.top5[i] {
            let got = logits[i][id as usize];
            worst = worst.max((got - want).abs());
            assert!(
                (got - want).abs() <= tol,
                "{who} vs {variant} golden, {}: step {i}, logit of id {id} is {got}, golden {want} (tolerance {tol})",
                c.name
            );
        }
        if i < cutoff {
            assert_eq!(ids[i], c.ids[i], "{who} vs {variant} golden, {}: greedy id at step {i}", c.name);
        }
    }
    eprintln!(
        "{who} vs {variant} {}: ids equal for {cutoff} steps (first near-tie), max logit deviation {worst:.4}",
        c.name
    );
    worst
}

/// Greedy run of `steps` steps on the GPU from a fresh cache: (ids, logits per step).
pub fn run_gpu(model: &mut Model, prompt: &[u32], steps: usize) -> (Vec<u32>, Vec<Vec<f32>>) {
    model.truncate(0);
    let (last, head) = prompt.split_last().unwrap();
    for &t in head {
        model.enqueue(t).unwrap();
    }
    let (mut ids, mut all) = (vec![], vec![]);
    let mut tok = *last;
    for _ in 0..steps {
        let out = pollster::block_on(model.step(tok, true)).unwrap();
        let logits = out.logits.unwrap();
        assert_eq!(out.id, webllama::engine::sampler::argmax(&logits), "GPU argmax vs CPU argmax of the same logits");
        tok = out.id;
        ids.push(tok);
        all.push(logits);
    }
    (ids, all)
}

/// The tokenizer of a GGUF file.
pub fn tokenizer(path: &str) -> Tokenizer {
    Tokenizer::from_gguf(&weights::read_header(path).unwrap()).unwrap()
}
