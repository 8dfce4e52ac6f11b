//! Log-probabilities on the default model (GenerateOptions::logprobs, OpenAI's logprobs): a greedy
//! step's equal the log-softmax of the whole vocabulary's logits (top_logits with k = vocabulary);
//! sampled steps, n = 3 and constrained ones report the chosen token's; the top ones are sorted and
//! their probabilities sum to at most 1; streamed pieces carry their tokens' entries; the option's
//! range is checked.

mod common;

use webllama::engine::constraint::Grammar;
use webllama::engine::sampler::SamplerConfig;
use webllama::engine::{parse_options, Piece, TokenLogprob};
use webllama::{Error, GenerateOptions, Layout, Message, Session};

fn session() -> Option<Session> {
    let path = common::default_model()?;
    let gpu = common::gpu();
    Some(Session::load_file(gpu.clone(), Layout::of(&gpu), &path, Some(256)).unwrap())
}

/// What every step's entry must satisfy, whatever chose its token.
fn check_entry(lp: &TokenLogprob, id: u32, k: usize, what: &str) {
    assert_eq!(lp.id, id, "{what}: the entry is the chosen token's");
    assert!(lp.logprob.is_finite() && lp.logprob <= 1e-6, "{what}: logprob {}", lp.logprob);
    assert_eq!(lp.top.len(), k, "{what}: {k} alternatives");
    assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1), "{what}: sorted {:?}", lp.top);
    let mass: f64 = lp.top.iter().map(|t| (t.1 as f64).exp()).sum();
    assert!(mass <= 1.0 + 1e-4, "{what}: the top ones' probabilities sum to {mass}");
    if let Some(t) = lp.top.iter().find(|t| t.0 == id) {
        assert!((t.1 - lp.logprob).abs() < 1e-6, "{what}: the chosen token's logprob in the top list");
    }
    if let Some(first) = lp.top.first() {
        assert!(lp.logprob <= first.1 + 1e-6, "{what}: nothing beats the most likely");
    }
}

#[test]
fn greedy_logprobs_equal_the_log_softmax_of_the_logits() {
    let Some(mut s) = session() else { return };
    let vocab = s.tokenizer.vocab_size();
    let ids = s.chat_ids(&[Message::new("user", "What is the capital of France?")]).unwrap();
    // Every logit of every step comes back (top_logits with k = the vocabulary).
    let opts = GenerateOptions { max_tokens: 5, top_logits: vocab, logprobs: Some(5), ..Default::default() };
    let g = pollster::block_on(s.generate(&ids, &opts, &mut |_| true)).unwrap();
    assert!(!g.ids.is_empty());
    assert_eq!(g.logprobs.len(), g.ids.len());
    for (i, (lp, logits)) in g.logprobs.iter().zip(&g.top_logits).enumerate() {
        assert_eq!(logits.len(), vocab);
        let max = logits[0].1 as f64;
        let lse = max + logits.iter().map(|l| (l.1 as f64 - max).exp()).sum::<f64>().ln();
        let what = format!("step {i}");
        check_entry(lp, g.ids[i], 5, &what);
        assert_eq!(lp.top[0].0, g.ids[i], "{what}: greedy picks the most likely");
        for (j, t) in lp.top.iter().enumerate() {
            assert_eq!(t.0, logits[j].0, "{what}: alternative {j} is the {j}th highest logit");
            let want = logits[j].1 as f64 - lse;
            assert!((t.1 as f64 - want).abs() < 1e-3, "{what}: alternative {j}: {} vs log-softmax {want}", t.1);
        }
    }
    // The same greedy text without logprobs (the GPU's argmax path).
    let plain = GenerateOptions { max_tokens: 5, ..Default::default() };
    assert_eq!(pollster::block_on(s.generate(&ids, &plain, &mut |_| true)).unwrap().ids, g.ids);
}

#[test]
fn sampled_candidates_and_constrained_steps_report_the_chosen_token() {
    let Some(mut s) = session() else { return };
    let ids = s.chat_ids(&[Message::new("user", "Tell me about cats.")]).unwrap();
    for (n, k) in [(1, 3), (3, 0), (3, 20)] {
        let opts = GenerateOptions {
            max_tokens: 12,
            sampler: SamplerConfig { temperature: 1.0, seed: 11, ..Default::default() },
            logprobs: Some(k),
            ..Default::default()
        };
        let all = pollster::block_on(s.generate_n(&ids, n, &opts, &mut |_, _| true)).unwrap();
        let mut below_top = 0;
        for (c, g) in all.iter().enumerate() {
            assert_eq!(g.logprobs.len(), g.ids.len(), "n={n} candidate {c}");
            for (i, lp) in g.logprobs.iter().enumerate() {
                check_entry(lp, g.ids[i], k, &format!("n={n} k={k} candidate {c} step {i}"));
                below_top += usize::from(k > 0 && lp.top[0].0 != lp.id);
            }
        }
        if k > 0 {
            assert!(below_top > 0, "n={n}: sampling at temperature 1 chose some token that is not the most likely");
        }
    }
    // Constrained: the entries are the raw model's (the mask is not renormalized into them).
    let grammar = Grammar::Regex("(yes|no)".into());
    let ask = s.chat_ids(&[Message::new("user", "Is the sky green?")]).unwrap();
    let opts = GenerateOptions { max_tokens: 4, logprobs: Some(2), grammar: Some(grammar), ..Default::default() };
    let g = pollster::block_on(s.generate(&ask, &opts, &mut |_| true)).unwrap();
    assert!(g.text == "yes" || g.text == "no", "{:?}", g.text);
    assert_eq!(g.logprobs.len(), g.ids.len());
    for (i, lp) in g.logprobs.iter().enumerate() {
        check_entry(lp, g.ids[i], 2, &format!("constrained step {i}"));
    }
}

#[test]
fn streamed_pieces_carry_their_tokens_and_offsets_point_into_the_text() {
    let Some(mut s) = session() else { return };
    let ids = s.chat_ids(&[Message::new("user", "Write a sentence about the sea.")]).unwrap();
    let opts = GenerateOptions { max_tokens: 16, logprobs: Some(1), ..Default::default() };
    let mut streamed: Vec<TokenLogprob> = vec![];
    let mut text = String::new();
    let all = pollster::block_on(s.generate_pieces(&ids, 1, &opts, &mut |p: Piece<'_>| {
        assert!(!p.text.is_empty());
        text.push_str(p.text);
        streamed.extend_from_slice(p.logprobs);
        true
    }))
    .unwrap();
    let g = &all[0];
    assert_eq!(text, g.text);
    assert!(!streamed.is_empty() && g.logprobs.starts_with(&streamed), "pieces carry the entries in order");
    let utf16: Vec<u16> = g.text.encode_utf16().collect();
    let mut last = 0;
    for (lp, &id) in g.logprobs.iter().zip(&g.ids) {
        assert!(lp.text_offset >= last && lp.text_offset <= utf16.len(), "offsets grow within the text");
        last = lp.text_offset;
        let piece = s.tokenizer.decode(&[id]).unwrap();
        if piece.is_ascii() {
            let at = String::from_utf16(&utf16[lp.text_offset..]).unwrap();
            assert!(at.starts_with(&piece), "{piece:?} at {} of {:?}", lp.text_offset, g.text);
        }
    }
}

#[test]
fn logprobs_options_are_checked() {
    let (o, _) = parse_options(r#"{"logprobs": 20}"#).unwrap();
    assert_eq!(o.logprobs, Some(20));
    assert_eq!(parse_options("{}").unwrap().0.logprobs, None);
    match parse_options(r#"{"logprobs": 21}"#) {
        Err(Error::InvalidRequest(m)) => assert!(m.contains("top_logprobs is 21"), "{m}"),
        other => panic!("{:?}", other.map(|o| o.0.logprobs)),
    }
    assert!(matches!(parse_options(r#"{"logprobs": -1}"#), Err(Error::InvalidRequest(_))));
}
