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
    assert!(!s.cfg.gpu_chooses());
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

/// The GPU sampler (kernels::sample) against the CPU's: for each row of logits, settings and
/// uniform r, the GPU's token must be the one `candidates` and `pick` give, up to rounding: r lies
/// in that token's stretch of the CPU's running probability, give or take 1e-4. Rows: spread
/// logits, a peaked row, NaN and infinities, a grammar's mask, ties past the kernel's bucket (every
/// logit the same), a mask that allows nothing; several draws from one row (a prompt's row serving
/// n candidates). On both kernel families.
#[test]
fn the_gpu_sampler_draws_what_the_cpu_sampler_picks() {
    use common::kernels::{family, read_on};
    use webllama::engine::constraint::apply_mask;
    use webllama::engine::sampler::pick;
    use webllama::kernels::{self, SampleDraw};
    use webllama::Family;
    let settings: [(f32, usize, f32, f32); 7] = [
        (1.0, 0, 1.0, 0.0),
        (0.7, 40, 1.0, 0.0),
        (1.0, 0, 0.9, 0.0),
        (1.5, 0, 1.0, 0.05),
        (0.8, 50, 0.95, 0.02),
        (2.0, 3, 1.0, 0.0),
        (0.05, 0, 0.5, 0.0),
    ];
    let (mut checked, mut exact) = (0, 0);
    for g in [family(Family::Gpu), family(Family::Cpu)] {
        let mut rng = common::Rng(77);
        for n in [5usize, 49159] {
            let words = kernels::mask_words(n as u32) as usize;
            // Rows: 0 spread, 1 peaked with NaN and infinities, 2 spread under a mask, 3 all the same,
            // 4 all the same under a mask, 5 masked to nothing.
            let rows = 6;
            let mut x: Vec<f32> = rng.vec(n * rows).iter().map(|v| v * 6.0).collect();
            x[n + n / 2] = 30.0;
            x[n + 1] = f32::NAN;
            x[n + 2] = f32::INFINITY;
            x[n + 3] = f32::NEG_INFINITY;
            x[3 * n..5 * n].fill(0.5);
            let mut mask = vec![u32::MAX; rows * words];
            for w in 0..words {
                mask[2 * words + w] = rng.next_u32() | rng.next_u32();
                mask[4 * words + w] = rng.next_u32();
                mask[5 * words + w] = 0;
            }
            for &(temperature, top_k, top_p, min_p) in &settings {
                let draws: Vec<(usize, f32)> =
                    (0..rows).flat_map(|r| [0.0, 0.999, (rng.f32() + 1.0) / 2.0].map(|u| (r, u))).collect();
                // One dispatch per logits row: its 3 draws all read it (rows = 1). Rows 2, 4 and 5 are
                // masked; the others get a mask that allows nothing, which must be left unread.
                for r in 0..rows {
                    let is_masked = [2, 4, 5].contains(&r);
                    let mine: Vec<&(usize, f32)> = draws.iter().filter(|d| d.0 == r).collect();
                    let ds: Vec<SampleDraw> = mine
                        .iter()
                        .map(|&&(_, u)| SampleDraw {
                            r: u,
                            temperature,
                            top_p,
                            min_p,
                            top_k: top_k as u32,
                            masked: is_masked as u32,
                            _pad: [0; 2],
                        })
                        .collect();
                    let row_mask: Vec<u32> = (0..ds.len())
                        .flat_map(
                            |_| if is_masked { mask[r * words..(r + 1) * words].to_vec() } else { vec![0; words] },
                        )
                        .collect();
                    let row = g.storage_with("row", bytemuck::cast_slice(&x[r * n..(r + 1) * n]));
                    let mb = g.storage_with("mask", bytemuck::cast_slice(&row_mask));
                    let db = g.storage_with("draws", bytemuck::cast_slice(&ds));
                    let ids = g.storage("ids", 4 * ds.len() as u64);
                    let d = kernels::sample(g.t(), &row, &mb, &db, &ids, n as u32, 1, ds.len() as u32).unwrap();
                    kernels::submit(&g, &[d]);
                    let got: Vec<u32> = read_on(&g, &ids, ds.len()).iter().map(|v| v.to_bits()).collect();
                    let mut masked = x[r * n..(r + 1) * n].to_vec();
                    apply_mask(&mask[r * words..(r + 1) * words], &mut masked);
                    let cfg = SamplerConfig { temperature, top_k, top_p, min_p, ..Default::default() };
                    let cand = Sampler::new(cfg).candidates(&masked);
                    for (&&(_, u), &id) in mine.iter().zip(&got) {
                        let what = format!(
                            "{} n {n} row {r} settings {:?} r {u}",
                            g.layout,
                            (temperature, top_k, top_p, min_p)
                        );
                        if cand.is_empty() {
                            assert_eq!(id, u32::MAX, "{what}: nothing allowed");
                            continue;
                        }
                        let at = cand.iter().position(|c| c.0 == id);
                        let at = at.unwrap_or_else(|| {
                            panic!("{what}: GPU chose {id}, not among the CPU's {} kept", cand.len())
                        });
                        let before: f64 = cand[..at].iter().map(|c| c.1 as f64).sum();
                        let (upto, u) = (before + cand[at].1 as f64, u as f64);
                        assert!(
                            before - 1e-4 <= u && u < upto + 1e-4,
                            "{what}: GPU chose {id}, position {at}, spanning {before}..{upto}; the CPU picks {}",
                            pick(&cand, u as f32)
                        );
                        checked += 1;
                        exact += (id == pick(&cand, u as f32)) as usize;
                    }
                }
            }
        }
    }
    assert!(exact * 100 >= checked * 97, "{exact} of {checked} draws exactly the CPU's");
}

/// A sampled generation chooses on the GPU (nothing but ids comes back, and one candidate's steps
/// are chained on the GPU) and picks what the CPU sampler picks from the same logits with the same
/// seed: a logit bias of 0 (which changes no logit) sends the same request down the CPU's path.
#[test]
fn sampled_generations_choose_on_the_gpu_as_the_cpu_sampler_would() {
    use webllama::{GenerateOptions, Layout, Session};
    let Some(path) = common::default_model() else { return };
    let gpu = common::gpu();
    // The adapter's own layout with the GPU sampler on (CPU adapters draw on the host by default).
    let layout = Layout { gpu_sampler: true, ..Layout::of(&gpu) };
    let mut s = Session::load_file(gpu.clone(), layout, &path, Some(256)).unwrap();
    let ids = s.tokenizer.encode("Once upon a time,", true).unwrap();
    // n = 3 with log-probabilities: each candidate's first draw reads the prompt's one row of logits,
    // and so does its log-softmax.
    for (n, sampler, logprobs) in [
        (1, SamplerConfig { temperature: 0.8, seed: 2, ..Default::default() }, None),
        (
            3,
            SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.02, seed: 5, ..Default::default() },
            Some(2),
        ),
    ] {
        assert!(sampler.gpu_chooses() && !sampler.is_greedy());
        let opts = GenerateOptions { max_tokens: 12, sampler: sampler.clone(), logprobs, ..Default::default() };
        let on_gpu = pollster::block_on(s.generate_n(&ids, n, &opts, &mut |_, _| true)).unwrap();
        let mut cpu_opts = opts.clone();
        cpu_opts.sampler.logit_bias.insert(0, 0.0);
        assert!(!cpu_opts.sampler.gpu_chooses());
        let on_cpu = pollster::block_on(s.generate_n(&ids, n, &cpu_opts, &mut |_, _| true)).unwrap();
        let greedy = pollster::block_on(s.generate(
            &ids,
            &GenerateOptions { max_tokens: 12, ..Default::default() },
            &mut |_| true,
        ))
        .unwrap();
        for (c, (g, want)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            assert_eq!(g.ids, want.ids, "n {n} candidate {c}: the GPU's draws against the CPU's");
            assert_eq!(g.logprobs.len(), want.logprobs.len());
            for (i, (a, b)) in g.logprobs.iter().zip(&want.logprobs).enumerate() {
                assert!(
                    a.id == b.id && (a.logprob - b.logprob).abs() < 1e-4 && a.top.len() == b.top.len(),
                    "n {n} candidate {c} step {i}: logprobs {a:?} against {b:?}"
                );
            }
        }
        assert!(on_gpu.iter().any(|g| g.ids != greedy.ids), "n {n}: sampling chose some token greedy would not");
        if n > 1 {
            assert!(on_gpu.iter().any(|g| g.ids != on_gpu[0].ids), "candidates draw apart from their first token");
        }
    }
}
