//! The exact-golden check shared by the generation tests: a model's logits against llama.cpp's
//! F32 math on the tiny fixture models.

/// What of a tiny model's exact golden a run checks: every prompt and step, or the first prompts
/// and steps.
#[derive(Clone, Copy)]
pub struct Span {
    pub prompts: usize,
    pub steps: usize,
}

pub const WHOLE: Span = Span { prompts: usize::MAX, steps: usize::MAX };

/// How far a top-8 logit may be from the exact (f32 math, f32 KV cache) goldens with `layout`'s KV
/// cache: 0.05 with an f32 cache; 0.25 with the GPU family's f16 cache (fixtures/arch/README.md
/// measured llama.cpp's own f16-instead-of-f32 cache at up to 0.18 on these models).
pub fn logit_tolerance(layout: &webllama::Layout) -> f32 {
    if webllama::model::kv_cache::elem_bytes(layout) == 4 {
        0.05
    } else {
        0.25
    }
}

/// Runs the prompts of a tiny model's `*.exact.json` golden (`golden`: its path under tests/fixtures) (as many as `span` says) from their
/// prompt ids, with `start` giving the logits after a prompt from an empty cache (a batched prefill
/// where the caller has one) and `logits_of` those after feeding one more token: ids up to the
/// first margin under 0.1, top-8 logits within 0.05. Returns the largest deviation.
pub fn check_exact(
    who: &str,
    golden: &str,
    span: Span,
    start: &mut dyn FnMut(&[u32]) -> Vec<f32>,
    logits_of: &mut dyn FnMut(u32) -> Vec<f32>,
) -> f32 {
    check_exact_within(who, golden, span, 0.05, start, logits_of)
}

/// check_exact with top-8 logits within `tol`, running free only while the golden's margin between
/// its top two is at least 2 tol (and 0.1).
pub fn check_exact_within(
    who: &str,
    golden: &str,
    span: Span,
    tol: f32,
    start: &mut dyn FnMut(&[u32]) -> Vec<f32>,
    logits_of: &mut dyn FnMut(u32) -> Vec<f32>,
) -> f32 {
    let golden_json = super::golden(golden);
    let mut worst_all = 0f32;
    for p in golden_json["prompts"].as_array().unwrap().iter().take(span.prompts) {
        let name = p["name"].as_str().unwrap();
        let prompt: Vec<u32> = p["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let steps = p["steps"].as_array().unwrap();
        let mut logits = start(&prompt);
        let mut worst = 0f32;
        let mut free_run = true;
        for (i, s) in steps.iter().enumerate().take(span.steps) {
            for t in s["top"].as_array().unwrap() {
                let (id, want) = (t[0].as_u64().unwrap() as usize, t[1].as_f64().unwrap() as f32);
                worst = worst.max((logits[id] - want).abs());
                assert!(
                    (logits[id] - want).abs() <= tol,
                    "{who} {golden} {name} step {i}: logit of {id} is {}, golden {want}",
                    logits[id]
                );
            }
            let id = webllama::engine::sampler::argmax(&logits);
            if s["margin_top1_top2"].as_f64().unwrap() < (2.0 * tol as f64).max(0.1) {
                free_run = false;
            }
            if free_run {
                assert_eq!(id, s["token"].as_u64().unwrap() as u32, "{who} {golden} {name}: greedy id at step {i}");
            } else {
                break;
            }
            // No step past the last one checked (a GPU-family step on lavapipe costs ~1.7 s).
            if i + 1 == span.steps.min(steps.len()) {
                break;
            }
            logits = logits_of(id);
        }
        eprintln!("{who} vs {golden} {name}: max logit deviation {worst:.5}");
        worst_all = worst_all.max(worst);
    }
    worst_all
}

/// `start` for a GPU model: the cache emptied, the prompt prefilled in batches, its last logits.
pub fn gpu_start<'a>(model: &'a std::cell::RefCell<webllama::Model>) -> impl FnMut(&[u32]) -> Vec<f32> + 'a {
    move |prompt| {
        let mut m = model.borrow_mut();
        m.truncate(0);
        pollster::block_on(m.prefill(prompt, true)).unwrap().logits.unwrap()
    }
}

/// `start` for the reference: reset, then the prompt token by token.
pub fn reference_start<'a>(
    model: &'a std::cell::RefCell<webllama::reference::RefModel>,
) -> impl FnMut(&[u32]) -> Vec<f32> + 'a {
    move |prompt| {
        let mut m = model.borrow_mut();
        m.reset();
        prompt.iter().map(|&t| m.forward(t)).last().expect("a prompt")
    }
}
