//! Constrained decoding on the default model: five JSON schemas (nested objects, arrays with
//! min/max items, enums, bounded numbers, required and optional fields), greedy, sampled and
//! n = 3, every output parses and validates; a regex and a Lark grammar likewise; a schema the
//! library refuses is a named error; max_tokens cuts with finish_reason length; the tokens a
//! grammar forces go to the model in batches.

mod common;

use common::schema::valid;
use serde_json::{json, Value};
use webllama::engine::constraint::Grammar;
use webllama::engine::sampler::SamplerConfig;
use webllama::{Error, FinishReason, GenerateOptions, Layout, Message, Session};

fn schemas() -> Vec<(&'static str, &'static str, Value)> {
    let s = json!({ "type": "string", "maxLength": 16 });
    vec![
        (
            "nested",
            "Give a person with an address as JSON.",
            json!({ "type": "object", "additionalProperties": false, "required": ["person"], "properties": {
                "person": { "type": "object", "additionalProperties": false, "required": ["name", "address"], "properties": {
                    "name": s, "address": { "type": "object", "additionalProperties": false, "required": ["city", "zip"],
                        "properties": { "city": s, "zip": s } } } } } }),
        ),
        (
            "array",
            "List some colors as JSON.",
            json!({ "type": "object", "additionalProperties": false, "required": ["colors"], "properties": {
                "colors": { "type": "array", "items": s, "minItems": 2, "maxItems": 4 } } }),
        ),
        (
            "enum",
            "How do you feel? Answer as JSON.",
            json!({ "type": "object", "additionalProperties": false, "required": ["mood", "level"], "properties": {
                "mood": { "enum": ["happy", "sad", "angry"] }, "level": { "type": "string", "enum": ["low", "high"] } } }),
        ),
        (
            "numbers",
            "Give the weather as JSON.",
            json!({ "type": "object", "additionalProperties": false, "required": ["temperature", "count"], "properties": {
                "temperature": { "type": "number", "minimum": -50, "maximum": 60 },
                "count": { "type": "integer", "minimum": 1, "maximum": 10 } } }),
        ),
        (
            "optional",
            "Describe a book as JSON.",
            json!({ "type": "object", "additionalProperties": false, "required": ["title"], "properties": {
                "title": s, "subtitle": s, "year": { "type": "integer", "minimum": 0, "maximum": 3000 } } }),
        ),
    ]
}

fn session() -> Option<Session> {
    let path = common::default_model()?;
    let gpu = common::gpu();
    Some(Session::load_file(gpu.clone(), Layout::of(&gpu), &path, Some(512)).unwrap())
}

fn run(
    s: &mut Session,
    ask: &str,
    grammar: Grammar,
    temperature: f32,
    n: usize,
    max_tokens: usize,
) -> Vec<(String, FinishReason)> {
    let ids = s.chat_ids(&[Message::new("user", ask)]).unwrap();
    let opts = GenerateOptions {
        max_tokens,
        sampler: SamplerConfig { temperature, seed: 7, ..Default::default() },
        grammar: Some(grammar),
        ..Default::default()
    };
    let out = pollster::block_on(s.generate_n(&ids, n, &opts, &mut |_, _| true)).unwrap();
    out.into_iter().map(|g| (g.text, g.finish_reason)).collect()
}

#[test]
fn outputs_follow_five_json_schemas_greedy_sampled_and_n_3() {
    let Some(mut s) = session() else { return };
    for (name, ask, schema) in schemas() {
        // Greedy for every schema; 3 sampled candidates where sampling explores what the schema
        // bounds (array lengths, number ranges, optional fields); one sampled alone for the nested
        // objects (the n = 1 path of sampling). Lavapipe time goes to the schemas' tokens.
        let runs: &[(f32, usize)] = match name {
            "nested" => &[(0.0, 1), (0.9, 1)],
            "enum" => &[(0.0, 1)],
            _ => &[(0.0, 1), (0.9, 3)],
        };
        for &(temperature, n) in runs {
            for (text, finish) in run(&mut s, ask, Grammar::JsonSchema(schema.clone()), temperature, n, 160) {
                let what = format!("{name} t={temperature} n={n}: {text:?}");
                assert_eq!(finish, FinishReason::Stop, "{what}");
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}"));
                valid(&v, &schema).unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}

#[test]
fn outputs_match_a_regex_and_a_lark_grammar_and_json_mode_gives_an_object() {
    let Some(mut s) = session() else { return };
    let date = Grammar::Regex("[0-9]{4}-[0-9]{2}-[0-9]{2}".into());
    for (text, finish) in run(&mut s, "Pick a date.", date, 0.9, 3, 20) {
        assert_eq!(finish, FinishReason::Stop);
        let parts: Vec<&str> = text.split('-').collect();
        assert!(
            parts.len() == 3 && text.len() == 10 && text.chars().all(|c| c.is_ascii_digit() || c == '-'),
            "{text:?}"
        );
    }
    let lark = Grammar::Lark("start: (\"yes\" | \"no\") \", because \" /[a-z ]{1,30}/ \".\"".into());
    for (text, finish) in run(&mut s, "Is the sky blue?", lark, 0.0, 1, 40) {
        assert_eq!(finish, FinishReason::Stop);
        assert!(
            (text.starts_with("yes, because ") || text.starts_with("no, because ")) && text.ends_with('.'),
            "{text:?}"
        );
    }
    // Any object: complete ones parse; one cut by max_tokens (a small model may nest without end)
    // is the start of an object.
    let objects = run(&mut s, "Give a JSON object with your name.", Grammar::JsonObject, 0.9, 3, 120);
    assert!(objects.iter().any(|(_, f)| *f == FinishReason::Stop), "{objects:?}");
    for (text, finish) in objects {
        if finish == FinishReason::Stop {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert!(v.is_object(), "{text:?}");
        } else {
            assert!(text.trim_start().starts_with('{'), "{text:?}");
        }
    }
}

#[test]
fn a_cut_output_ends_with_length_and_a_refused_schema_is_named() {
    let Some(mut s) = session() else { return };
    let (_, _, schema) = schemas().remove(0);
    let out = run(&mut s, "Give a person with an address as JSON.", Grammar::JsonSchema(schema), 0.0, 1, 5);
    assert_eq!(out[0].1, FinishReason::Length, "{:?}", out[0].0);
    let ids = s.chat_ids(&[Message::new("user", "hi")]).unwrap();
    for bad in [Grammar::JsonSchema(json!({ "type": "nonsense" })), Grammar::Lark("start: undefined_rule".into())] {
        let opts = GenerateOptions { grammar: Some(bad.clone()), ..Default::default() };
        match pollster::block_on(s.generate(&ids, &opts, &mut |_| true)) {
            Err(Error::InvalidRequest(m)) => assert!(m.contains("grammar or schema"), "{m}"),
            other => panic!("{bad:?}: {:?}", other.map(|g| g.text)),
        }
    }
}

/// Tokens a grammar forces go to the model in batches (a prompt chunk each) rather than a decode
/// step each: a greedy JSON answer has some (Generation::forced), n = 2 candidates those forced
/// before the first choice, and the KV cache a greedy answer leaves serves a follow-up request as a
/// fresh prefill of the same tokens does (the same greedy continuation).
#[test]
fn forced_tokens_go_in_batches_and_leave_the_cache_as_a_prefill_does() {
    let Some(mut s) = session() else { return };
    let (_, ask, schema) = schemas().remove(2);
    let ids = s.chat_ids(&[Message::new("user", ask)]).unwrap();
    let opts = GenerateOptions { max_tokens: 60, grammar: Some(Grammar::JsonSchema(schema)), ..Default::default() };
    let g = pollster::block_on(s.generate(&ids, &opts, &mut |_| true)).unwrap();
    assert_eq!(g.finish_reason, FinishReason::Stop, "{:?}", g.text);
    assert!(g.forced > 0 && g.forced < g.ids.len(), "{} of {} tokens forced: {:?}", g.forced, g.ids.len(), g.text);
    let mut next = ids.clone();
    next.extend(&g.ids);
    next.extend(s.tokenizer.encode_continuation("\nAnd in one word?").unwrap());
    let plain = GenerateOptions { max_tokens: 6, ..Default::default() };
    let reused = pollster::block_on(s.generate(&next, &plain, &mut |_| true)).unwrap();
    assert!(reused.prefilled < next.len() - ids.len(), "{} of {} prefilled", reused.prefilled, next.len());
    s.reset();
    let fresh = pollster::block_on(s.generate(&next, &plain, &mut |_| true)).unwrap();
    assert_eq!(fresh.prefilled, next.len());
    assert_eq!((&reused.ids, &reused.text), (&fresh.ids, &fresh.text));
    // The tokens forced before the first choice (a fixed start) are every candidate's, read with the
    // prompt.
    let grammar = Some(Grammar::Regex("The answer is (yes|no)\\.".into()));
    let sampler = SamplerConfig { temperature: 0.9, seed: 3, ..Default::default() };
    let lead = GenerateOptions { max_tokens: 12, grammar, sampler, ..Default::default() };
    for c in pollster::block_on(s.generate_n(&ids, 2, &lead, &mut |_, _| true)).unwrap() {
        assert!(c.forced >= 3, "n = 2: {} forced of {:?}", c.forced, c.text);
        assert!(c.text == "The answer is yes." || c.text == "The answer is no.", "{:?}", c.text);
    }
}

/// A vocabulary that llguidance's token trie can't hold (a token over 1,023 bytes; toktrie asserts
/// past it) is refused by name when a grammar is first asked for, not a crash; one within holds.
#[test]
fn a_vocabulary_the_token_trie_cannot_hold_is_refused_by_name() {
    use std::sync::Arc;
    use webllama::engine::constraint::{Guide, TRIE_TOKEN_BYTES_MAX};
    use webllama::format::gguf::{Array, Gguf, Value};
    use webllama::format::gguf_write;
    use webllama::text::tokenizer::Tokenizer;
    let vocab = |long: usize| {
        let tokens = vec!["a".to_string(), "b".into(), "a".repeat(long), "<|end|>".into()];
        let meta = [
            ("general.architecture", Value::String("llama".into())),
            ("tokenizer.ggml.model", Value::String("gpt2".into())),
            ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
            ("tokenizer.ggml.token_type", Value::Array(Array::I32(vec![1, 1, 1, 3]))),
            ("tokenizer.ggml.merges", Value::Array(Array::String(vec![]))),
            ("tokenizer.ggml.eos_token_id", Value::U32(3)),
        ];
        Arc::new(Tokenizer::from_gguf(&Gguf::parse_complete(&gguf_write::build(&meta, &[])).unwrap()).unwrap())
    };
    match Guide::new(&vocab(1100)) {
        Err(Error::Tokenizer(m)) => assert!(m.contains("token 2 is 1100 bytes"), "{m}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("a 1,100-byte token was taken"),
    }
    assert!(Guide::new(&vocab(TRIE_TOKEN_BYTES_MAX)).is_ok());
}
