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
    assert!(s.cfg.logit_edits().is_some());
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
        (Box::new(|o| o.stop = vec!["x".into(); 17]), "17 stop strings: at most 16"),
        (Box::new(|o| o.stop = vec!["x".into(), "y".repeat(257)]), "stop string 1 is 257 bytes: at most 256"),
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
    let settings: [(f32, usize, f32, f32); 8] = [
        (1.0, 0, 1.0, 0.0),
        (0.7, 40, 1.0, 0.0),
        (1.0, 0, 0.9, 0.0),
        (1.5, 0, 1.0, 0.05),
        (0.8, 50, 0.95, 0.02),
        (2.0, 3, 1.0, 0.0),
        (0.05, 0, 0.5, 0.0),
        (0.05, 600, 0.3125, 0.5),
    ];
    let (mut checked, mut exact) = (0, 0);
    for g in [family(Family::Gpu), family(Family::Cpu)] {
        let mut rng = common::Rng(77);
        for n in [5usize, 49159] {
            let words = kernels::mask_words(n as u32) as usize;
            // Rows: 0 spread, 1 peaked with NaN and infinities, 2 spread under a mask, 3 all the same,
            // 4 all the same under a mask, 5 masked to nothing, 6 spread under a mask that allows
            // ~1/128 of the tokens (at most the 512 the GPU gathers at once, for n = 49159).
            let rows = 7;
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
                mask[6 * words + w] = (0..7).fold(u32::MAX, |m, _| m & rng.next_u32());
            }
            for &(temperature, top_k, top_p, min_p) in &settings {
                let draws: Vec<(usize, f32)> =
                    (0..rows).flat_map(|r| [0.0, 0.999, (rng.f32() + 1.0) / 2.0].map(|u| (r, u))).collect();
                // One dispatch per logits row: its 3 draws all read it (rows = 1). Rows 2, 4, 5 and 6 are
                // masked; the others get a mask that allows nothing, which must be left unread.
                for r in 0..rows {
                    let is_masked = [2, 4, 5, 6].contains(&r);
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
                    let spans = g.storage("spans", kernels::sample_spans_bytes(n as u32, ds.len() as u32));
                    let d = kernels::sample(g.t(), &row, &mb, &db, &spans, &ids, n as u32, (1, ds.len() as u32));
                    kernels::submit(&g, &d.unwrap());
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

/// The GPU's logit edits (kernels::edit_logits) against the CPU sampler's apply_penalties: each
/// choice's copy of its row with the bias and the penalties over its window applied, a repeated
/// token penalized once by its count, tokens and bias ids past the vocabulary ignored, choice 0's
/// windows ending with their fed tokens (a chained step's inputs), rows shared by several choices, NaN
/// and infinities kept; the raw rows untouched and the counts left at 0 (a second run gives the
/// same). On both kernel families.
#[test]
fn the_gpu_logit_edits_are_the_cpu_samplers() {
    use common::kernels::{family, read_on};
    use webllama::kernels::{self, EditBuffers, EditShape, EDIT_HEADER};
    use webllama::Family;
    let settings: [(f32, f32, f32, usize); 3] = [(1.3, 0.5, 0.25, 24), (0.8, -0.4, 1.0, 5), (1.0, 0.0, 0.0, 0)];
    for g in [family(Family::Gpu), family(Family::Cpu)] {
        let mut rng = common::Rng(91);
        for n in [7usize, 49159] {
            for (rows, choices) in [(1u32, 3u32), (3, 3)] {
                for (s, &(rep, freq, pres, last_n)) in settings.iter().enumerate() {
                    let mut x: Vec<f32> = rng.vec(n * rows as usize).iter().map(|v| v * 6.0).collect();
                    x[1] = f32::NAN;
                    x[2] = f32::INFINITY;
                    x[3] = f32::NEG_INFINITY;
                    x[4] = 0.0;
                    let below = |rng: &mut common::Rng, k: usize| rng.next_u32() as usize % k;
                    // Histories over a few tokens (repeats), now and then one past the vocabulary.
                    let histories: Vec<Vec<u32>> = (0..choices)
                        .map(|_| {
                            (0..below(&mut rng, 40))
                                .map(
                                    |_| if below(&mut rng, 9) == 0 { n as u32 + 3 } else { below(&mut rng, 12) as u32 },
                                )
                                .collect()
                        })
                        .collect();
                    let fed = [5u32, 6, 5];
                    let with_fed = s != 1;
                    let bias: Vec<(u32, f32)> = [(2, 1.5), (4, -3.0), (5, 0.5), (n as u32 + 1, 9.0)].into();
                    let bias = if s == 2 { bias[..1].to_vec() } else { bias };
                    let shape = EditShape { window: last_n as u32, biases: bias.len() as u32 + 1 };
                    let mut words = vec![0u32; shape.words(choices) as usize];
                    words[..5].copy_from_slice(&[
                        rep.to_bits(),
                        freq.to_bits(),
                        pres.to_bits(),
                        bias.len() as u32,
                        (with_fed && last_n > 0) as u32,
                    ]);
                    for (i, &(id, b)) in bias.iter().enumerate() {
                        let at = EDIT_HEADER as usize + 2 * i;
                        words[at..at + 2].copy_from_slice(&[id, b.to_bits()]);
                    }
                    // What each choice's window holds: the last last_n tokens, its fed one last where
                    // it applies.
                    let mut windows = vec![];
                    for (y, h) in histories.iter().enumerate() {
                        let fed_here = with_fed && last_n > 0;
                        let keep = last_n - fed_here as usize;
                        let w = &h[h.len().saturating_sub(keep)..];
                        let at = shape.window_at(y as u32) as usize;
                        words[at] = w.len() as u32;
                        words[at + 1..at + 1 + w.len()].copy_from_slice(w);
                        let mut all = w.to_vec();
                        all.extend(fed_here.then_some(fed[y]));
                        windows.push(all);
                    }
                    let logits = g.storage_with("logits", bytemuck::cast_slice(&x));
                    let edited = g.storage("edited", 4 * (n * choices as usize) as u64);
                    let edits = g.storage_with("edits", bytemuck::cast_slice(&words));
                    let counts = g.storage("counts", 4 * (n * choices as usize) as u64);
                    let fed_buf = g.storage_with("fed", bytemuck::cast_slice(&fed));
                    let d = || {
                        let b = EditBuffers {
                            logits: &logits,
                            edited: &edited,
                            edits: &edits,
                            counts: &counts,
                            fed: &fed_buf,
                        };
                        kernels::edit_logits(g.t(), b, n as u32, shape, (rows, choices)).unwrap()
                    };
                    kernels::submit(&g, &[d(), d()]);
                    let got = read_on(&g, &edited, n * choices as usize);
                    assert_eq!(
                        read_on(&g, &logits, x.len()).iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                        "the raw logits are left as they were"
                    );
                    assert!(
                        read_on(&g, &counts, n * choices as usize).iter().all(|c| c.to_bits() == 0),
                        "counts back at 0"
                    );
                    let cfg = SamplerConfig {
                        repetition_penalty: rep,
                        frequency_penalty: freq,
                        presence_penalty: pres,
                        penalty_last_n: usize::MAX,
                        logit_bias: bias.iter().copied().collect(),
                        ..Default::default()
                    };
                    for y in 0..choices as usize {
                        let row = y.min(rows as usize - 1);
                        let mut want = x[row * n..(row + 1) * n].to_vec();
                        let window = if last_n == 0 { &[][..] } else { &windows[y][..] };
                        Sampler::new(cfg.clone()).apply_penalties(&mut want, window);
                        for (i, (&a, &b)) in got[y * n..(y + 1) * n].iter().zip(&want).enumerate() {
                            let same = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 * b.abs().max(1.0);
                            assert!(
                                same,
                                "{} n {n} rows {rows} choice {y} settings {s} token {i}: {a} against {b}",
                                g.layout
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A sampled or penalized generation chooses on the GPU (nothing but ids comes back, and one
/// candidate's steps are chained on the GPU) and picks what the CPU sampler picks from the same
/// logits with the same seed: the same request on a session whose layout draws on the host.
/// Sampled, greedy and sampled with a logit bias and penalties (the chained steps' windows end
/// with a token the host has not read back yet), n = 1 and n = 3 (chained from their second step)
/// with log-probabilities.
#[test]
fn sampled_generations_choose_on_the_gpu_as_the_cpu_sampler_would() {
    use webllama::{Error, GenerateOptions, Layout, Session};
    let Some(path) = common::default_model() else { return };
    let gpu = common::gpu();
    // The adapter's own layout with the GPU sampler on and off (CPU adapters draw on the host by
    // default).
    let load = |gpu_sampler| {
        let layout = Layout { gpu_sampler, ..Layout::of(&gpu) };
        Session::load_file(gpu.clone(), layout, &path, Some(256)).unwrap()
    };
    let (mut on_gpu_session, mut on_host_session) = (load(true), load(false));
    let mut greedy = |prompt: &str| {
        let ids = on_gpu_session.tokenizer.encode(prompt, true).unwrap();
        let opts = GenerateOptions { max_tokens: 8, ..Default::default() };
        let g = pollster::block_on(on_gpu_session.generate(&ids, &opts, &mut |_| true)).unwrap();
        (ids, g.ids)
    };
    let (story, story_greedy) = greedy("Once upon a time,");
    // A window of 1 is the previous token alone (a chained step's input): boosted (a penalty under
    // 1, a negative presence), greedy repeats it.
    let (hello, hello_greedy) = greedy("Hello Hello Hello Hello Hello Hello Hello Hello");
    // An id past the vocabulary is refused.
    let past = GenerateOptions {
        sampler: SamplerConfig { logit_bias: [(60000, 3.0)].into(), ..Default::default() },
        ..Default::default()
    };
    match pollster::block_on(on_gpu_session.generate(&story, &past, &mut |_| true)) {
        Err(Error::InvalidRequest(m)) => {
            assert!(m.contains("logit_bias names token 60000, past the vocabulary"), "{m}")
        }
        other => panic!("a logit_bias id past the vocabulary: {:?}", other.map(|g| g.ids)),
    }
    // The bias turns greedy aside at its fifth token.
    let penalized = |c: SamplerConfig| SamplerConfig {
        repetition_penalty: 1.3,
        frequency_penalty: 0.4,
        presence_penalty: 0.2,
        penalty_last_n: 8,
        logit_bias: [(story_greedy[4], -5.0), (28, 1.5)].into(),
        ..c
    };
    let last_only =
        SamplerConfig { repetition_penalty: 0.5, presence_penalty: -2.0, penalty_last_n: 1, ..Default::default() };
    // n = 3 with log-probabilities: each candidate's first draw reads the prompt's one row of logits,
    // and so does its log-softmax.
    let sampled =
        SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.02, seed: 5, ..Default::default() };
    for (n, sampler, logprobs, (ids, greedy)) in [
        (1, SamplerConfig { temperature: 0.8, seed: 2, ..Default::default() }, None, (&story, &story_greedy)),
        (3, sampled.clone(), Some(2), (&story, &story_greedy)),
        (1, penalized(SamplerConfig::default()), None, (&story, &story_greedy)),
        (1, last_only.clone(), None, (&hello, &hello_greedy)),
        (3, last_only, None, (&hello, &hello_greedy)),
        (
            1,
            penalized(SamplerConfig { temperature: 0.8, seed: 3, ..Default::default() }),
            Some(1),
            (&story, &story_greedy),
        ),
        (3, penalized(sampled), Some(2), (&story, &story_greedy)),
    ] {
        let opts = GenerateOptions { max_tokens: 8, sampler: sampler.clone(), logprobs, ..Default::default() };
        let on_gpu = pollster::block_on(on_gpu_session.generate_n(ids, n, &opts, &mut |_, _| true)).unwrap();
        let on_cpu = pollster::block_on(on_host_session.generate_n(ids, n, &opts, &mut |_, _| true)).unwrap();
        let what = format!("n {n} {sampler:?}");
        for (c, (g, want)) in on_gpu.iter().zip(&on_cpu).enumerate() {
            assert_eq!(g.ids, want.ids, "{what} candidate {c}: the GPU's choices against the CPU's");
            assert_eq!(g.logprobs.len(), want.logprobs.len());
            for (i, (a, b)) in g.logprobs.iter().zip(&want.logprobs).enumerate() {
                assert!(
                    a.id == b.id && (a.logprob - b.logprob).abs() < 1e-4 && a.top.len() == b.top.len(),
                    "{what} candidate {c} step {i}: logprobs {a:?} against {b:?}"
                );
            }
        }
        assert!(on_gpu.iter().any(|g| &g.ids != greedy), "{what}: chose some token plain greedy would not");
        if n > 1 && !sampler.is_greedy() {
            assert!(on_gpu.iter().any(|g| g.ids != on_gpu[0].ids), "candidates draw apart from their first token");
        }
    }
}

/// Candidate c of a seed is not candidate c - 1 of the next seed (seed + index made bumping the seed
/// shift n candidates by one); the first candidate draws from the seed itself, as n = 1 does.
#[test]
fn candidates_of_neighbouring_seeds_draw_apart() {
    use webllama::engine::sampler::candidate_seed;
    for seed in [0u64, 1, 7, u64::MAX] {
        assert_eq!(candidate_seed(seed, 0), seed);
        let mine: Vec<u64> = (0..8).map(|c| candidate_seed(seed, c)).collect();
        let next: Vec<u64> = (0..8).map(|c| candidate_seed(seed.wrapping_add(1), c)).collect();
        assert!(mine.iter().all(|s| !next.contains(s)), "seed {seed}: {mine:?} and {next:?} share a seed");
    }
}
