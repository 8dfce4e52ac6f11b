//! The sampler on fixture logits (SmolLM2's first step after "The capital of France is", from the
//! llama.cpp golden): each parameter does what it says, and the same seed gives the same choices.

mod common;

use webllama::engine::sampler::{Sampler, SamplerConfig};

/// A vocabulary-sized logit vector: the golden's top-5 at step 0, everything else far below.
fn fixture_logits() -> (Vec<f32>, Vec<(u32, f32)>) {
    let g = common::golden("smollm2/generation_q4_1.json");
    let case = g["results"].as_array().unwrap().iter().find(|r| r["name"] == "raw_capital").unwrap();
    let top: Vec<(u32, f32)> = case["top5_per_step"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap() as f32))
        .collect();
    let mut logits = vec![-10.0f32; 49152];
    for &(id, l) in &top {
        logits[id as usize] = l;
    }
    (logits, top)
}

fn cfg(f: impl FnOnce(&mut SamplerConfig)) -> SamplerConfig {
    let mut c = SamplerConfig { temperature: 1.0, ..Default::default() };
    f(&mut c);
    c
}

#[test]
fn greedy_and_top_k_1_take_the_argmax() {
    let (logits, top) = fixture_logits();
    assert_eq!(Sampler::new(cfg(|c| c.temperature = 0.0)).sample(&logits, &[]), top[0].0);
    let mut s = Sampler::new(cfg(|c| {
        c.temperature = 5.0;
        c.top_k = 1;
    }));
    for _ in 0..20 {
        assert_eq!(s.sample(&logits, &[]), top[0].0);
    }
}

#[test]
fn top_k_keeps_k_and_top_p_keeps_the_smallest_set_reaching_p() {
    let (logits, top) = fixture_logits();
    let k3 = Sampler::new(cfg(|c| c.top_k = 3)).candidates(&logits);
    assert_eq!(k3.iter().map(|c| c.0).collect::<Vec<_>>(), top[..3].iter().map(|t| t.0).collect::<Vec<_>>());
    // Probabilities at temperature 1 over all candidates.
    let all = Sampler::new(cfg(|_| {})).candidates(&logits);
    for p in [0.5f32, 0.9, 0.99] {
        let kept = Sampler::new(cfg(|c| c.top_p = p)).candidates(&logits);
        let mass_before_last: f32 = all[..kept.len() - 1].iter().map(|c| c.1).sum();
        let mass: f32 = all[..kept.len()].iter().map(|c| c.1).sum();
        assert!(mass >= p - 1e-6 && mass_before_last < p, "top_p {p}: kept {} with mass {mass}", kept.len());
        assert!((kept.iter().map(|c| c.1).sum::<f32>() - 1.0).abs() < 1e-5, "renormalized");
    }
}

#[test]
fn min_p_drops_tokens_below_a_fraction_of_the_best() {
    let (logits, _) = fixture_logits();
    let all = Sampler::new(cfg(|_| {})).candidates(&logits);
    let kept = Sampler::new(cfg(|c| c.min_p = 0.05)).candidates(&logits);
    let want = all.iter().filter(|c| c.1 >= 0.05 * all[0].1).count();
    assert_eq!(kept.len(), want);
    assert!(want >= 1 && want < all.len());
}

#[test]
fn penalties_and_logit_bias_change_the_logits_as_specified() {
    let (logits, top) = fixture_logits();
    let (a, b) = (top[0].0, top[1].0);
    // llama.cpp: positive logits divided by the repeat penalty, then count * frequency + presence subtracted.
    let s = Sampler::new(cfg(|c| {
        c.repetition_penalty = 1.3;
        c.frequency_penalty = 0.5;
        c.presence_penalty = 0.25;
        c.logit_bias.insert(b, 2.0);
        c.logit_bias.insert(7, -1.0);
    }));
    let mut l = logits.clone();
    s.apply_penalties(&mut l, &[a, a, 999]);
    assert!((l[a as usize] - (logits[a as usize] / 1.3 - 2.0 * 0.5 - 0.25)).abs() < 1e-5);
    assert!((l[999] - (logits[999] * 1.3 - 0.5 - 0.25)).abs() < 1e-5, "negative logits are multiplied");
    assert!((l[b as usize] - (logits[b as usize] + 2.0)).abs() < 1e-6);
    assert!((l[7] - (logits[7] - 1.0)).abs() < 1e-6);
    // Only the last penalty_last_n tokens count.
    let s = Sampler::new(cfg(|c| {
        c.presence_penalty = 1.0;
        c.penalty_last_n = 1;
    }));
    let mut l = logits.clone();
    s.apply_penalties(&mut l, &[a, 999]);
    assert_eq!(l[a as usize], logits[a as usize]);
    // A large enough bias makes greedy pick the biased token.
    let mut s = Sampler::new(SamplerConfig { logit_bias: [(b, 10.0)].into_iter().collect(), ..Default::default() });
    assert_eq!(s.sample(&logits, &[]), b);
    assert!(!s.cfg.gpu_argmax_suffices());
}

#[test]
fn the_same_seed_gives_the_same_choices() {
    let (logits, _) = fixture_logits();
    let draw = |seed| {
        let mut s = Sampler::new(cfg(|c| {
            c.temperature = 1.5;
            c.seed = seed;
        }));
        (0..64).map(|_| s.sample(&logits, &[])).collect::<Vec<_>>()
    };
    assert_eq!(draw(42), draw(42));
    assert_ne!(draw(42), draw(43));
    assert!(draw(42).iter().collect::<std::collections::HashSet<_>>().len() > 1, "temperature 1.5 varies");
}

/// Every numeric option is checked before a generation starts: NaN, infinities and out-of-range
/// values are an InvalidRequest naming the option (they used to become 0, divide by zero or yield a
/// token for max_tokens 0).
#[test]
fn options_out_of_range_are_refused_by_name() {
    use webllama::{Error, GenerateOptions};
    let with = |f: &dyn Fn(&mut GenerateOptions)| {
        let mut o = GenerateOptions::default();
        f(&mut o);
        o.check()
    };
    assert!(with(&|_| {}).is_ok());
    assert!(with(&|o| o.sampler.frequency_penalty = -2.0).is_ok());
    type Edit = Box<dyn Fn(&mut GenerateOptions)>;
    let cases: Vec<(Edit, &str)> = vec![
        (Box::new(|o| o.sampler.frequency_penalty = f32::NAN), "frequency_penalty"),
        (Box::new(|o| o.sampler.presence_penalty = 3.0), "presence_penalty"),
        (Box::new(|o| o.sampler.repetition_penalty = 0.0), "repetition_penalty"),
        (Box::new(|o| o.sampler.temperature = f32::INFINITY), "temperature"),
        (Box::new(|o| o.sampler.top_p = 1.5), "top_p"),
        (Box::new(|o| o.sampler.min_p = -0.1), "min_p"),
        (Box::new(|o| _ = o.sampler.logit_bias.insert(7, f32::NAN)), "logit_bias of token 7"),
        (Box::new(|o| o.max_tokens = 0), "max_tokens"),
        (Box::new(|o| o.stop = vec![String::new()]), "stop string"),
    ];
    for (edit, name) in cases {
        match with(&*edit) {
            Err(Error::InvalidRequest(msg)) => assert!(msg.contains(name), "{name}: {msg}"),
            other => panic!("{name}: expected InvalidRequest, got {other:?}"),
        }
    }
}
