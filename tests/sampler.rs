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

/// The sampler's definition, written the plain way: every finite logit sorted (larger first, lower
/// id on ties), top-k, weights exp((l - best) / T), top-p's smallest prefix reaching top_p of the
/// weight, min-p's floor, then the inverse of the kept distribution at `r`.
fn by_definition(logits: &[f32], c: &SamplerConfig, r: f64) -> (Vec<(u32, f32)>, u32) {
    let mut all: Vec<(u32, f32)> =
        logits.iter().enumerate().filter(|(_, l)| l.is_finite()).map(|(i, &l)| (i as u32, l)).collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if c.top_k > 0 {
        all.truncate(c.top_k);
    }
    let w: Vec<f64> = all.iter().map(|x| ((x.1 - all[0].1) / c.temperature).exp() as f64).collect();
    let total: f64 = w.iter().sum();
    let mut keep = 0;
    let mut acc = 0.0;
    while keep < all.len() && (keep == 0 || w[keep] >= c.min_p as f64) {
        acc += w[keep];
        keep += 1;
        if c.top_p < 1.0 && acc >= c.top_p as f64 * total {
            break;
        }
    }
    let mass: f64 = w[..keep].iter().sum();
    let kept: Vec<(u32, f32)> = (0..keep).map(|i| (all[i].0, (w[i] / mass) as f32)).collect();
    let mut acc = 0.0;
    let pick = (0..keep).find(|&i| {
        acc += w[i];
        r * mass < acc
    });
    (kept, all[pick.unwrap_or(keep - 1)].0)
}

/// SplitMix64's draws as the sampler makes them (one per sampled token).
fn draws(seed: u64, n: usize) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f64 / (1u64 << 24) as f64
        })
        .collect()
}

/// The sampler ranks lazily (only the ranks a draw passes are sorted, top-k found in one pass): on
/// vocabularies with peaked and flat logits, ties, masked tokens and every kind of cut, it keeps
/// the same tokens with the same probabilities and draws the same ids as the plain definition.
#[test]
fn lazy_ranking_keeps_and_draws_what_a_full_sort_does() {
    let mut s = 7u64;
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 40) as f32 / 16777216.0
    };
    let vocab = 20_000;
    let peaked: Vec<f32> =
        (0..vocab).map(|i| if i % 997 == 3 { 12.0 - (i / 997) as f32 * 0.5 } else { next() * 6.0 }).collect();
    let flat: Vec<f32> = (0..vocab).map(|_| next() * 2.0).collect();
    // Coarse values: many ties, so ranks depend on ids. Every third token masked.
    let tied: Vec<f32> =
        (0..vocab).map(|i| if i % 3 == 0 { f32::NEG_INFINITY } else { (next() * 8.0).floor() }).collect();
    let configs = [
        (1.0, 0, 1.0, 0.0),
        (0.7, 0, 0.9, 0.0),
        (1.3, 40, 0.95, 0.0),
        (0.8, 0, 1.0, 0.05),
        (1.0, 3, 1.0, 0.0),
        (2.0, 500, 0.5, 0.01),
        (0.5, 7000, 1.0, 0.0),
    ];
    for (name, logits) in [("peaked", &peaked), ("flat", &flat), ("tied", &tied)] {
        for (temperature, top_k, top_p, min_p) in configs {
            let c = SamplerConfig { temperature, top_k, top_p, min_p, seed: 11, ..Default::default() };
            let mut sampler = Sampler::new(c.clone());
            let kept = sampler.candidates(logits);
            let (want, _) = by_definition(logits, &c, 0.0);
            let what = format!("{name} logits, T {temperature} top_k {top_k} top_p {top_p} min_p {min_p}");
            assert_eq!(kept.len(), want.len(), "{what}: kept");
            for (a, b) in kept.iter().zip(&want) {
                assert!(a.0 == b.0 && (a.1 - b.1).abs() <= 1e-6 * b.1.max(1e-3), "{what}: {a:?} vs {b:?}");
            }
            for (i, r) in draws(11, 40).into_iter().enumerate() {
                assert_eq!(sampler.sample(logits, &[]), by_definition(logits, &c, r).1, "{what}: draw {i}");
            }
        }
    }
}

/// How long one sampled choice takes on the CPU, per vocabulary size and cut (BENCH.md, "Sampling
/// on the CPU"): `cargo test --release --test sampler -- --ignored --nocapture`.
#[test]
#[ignore]
fn sampling_time_per_token() {
    let mut s = 12345u64;
    for vocab in [49152usize, 151936] {
        // Model-like logits: normal(0, 2.5), a few tokens far above.
        let mut logits: Vec<f32> = (0..vocab)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = ((s >> 40) as f32 / 16777216.0).max(1e-7);
                let v = ((s >> 16) & 0xff_ffff) as f32 / 16777216.0;
                (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos() * 2.5
            })
            .collect();
        for i in 0..8 {
            logits[i * 977] = 14.0 - i as f32;
        }
        for (top_k, top_p) in [(0usize, 1.0f32), (0, 0.9), (40, 0.95)] {
            let mut sampler = Sampler::new(SamplerConfig { temperature: 0.7, top_k, top_p, ..Default::default() });
            let t = std::time::Instant::now();
            for _ in 0..50 {
                std::hint::black_box(sampler.sample(&logits, &[]));
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / 50.0;
            eprintln!("vocab {vocab}, temperature 0.7, top_k {top_k}, top_p {top_p}: {ms:.2} ms a token");
        }
    }
}
