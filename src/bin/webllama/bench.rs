//! `webllama bench`: prefill and decode speed on one model, in the spirit of llama-bench; with
//! --profile, what each kind of kernel costs in a decode step and in a prompt chunk; with
//! --json-schema, constrained decoding's speed against unconstrained decoding's.

use crate::{model_path, open_gpu, BenchArgs};
use anyhow::{Context, Result};
use webllama::engine::constraint::Grammar;
use webllama::engine::sampler::{Sampler, SamplerConfig};
use webllama::model::profile::{median, Method, Profile, BYTES};
use webllama::{GenerateOptions, Message, Model, Session};

/// Timed prefills, from position 0 each; the median is reported.
const PREFILL_RUNS: usize = 3;

pub fn bench(a: BenchArgs) -> Result<()> {
    use std::time::Instant;
    let path = model_path(a.model)?;
    let (p, n) = (a.prompt_tokens.max(1), a.decode_tokens.max(1));
    let (gpu, layout) = open_gpu(a.layout)?;
    // The context a user gets (so attention is split as in use), or more where the run needs it:
    // the prompt and the decoded tokens, and with --profile a prompt chunk past them (profiled
    // halfway through the decoded positions).
    let needed = p + n + 1 + if a.profile { layout.batch_rows() as usize } else { 0 };
    let trained = webllama::Config::from_gguf(&webllama::format::weights::read_header(&path)?)?.ctx_len;
    let ctx = (needed > webllama::model::DEFAULT_CTX.min(trained)).then_some(needed);
    let schema: Option<serde_json::Value> = match &a.json_schema {
        Some(f) => Some(
            serde_json::from_str(&std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?)
                .with_context(|| format!("{f} is not JSON"))?,
        ),
        None => None,
    };
    // With a schema, the model inside a session (the tokenizer and template come with it).
    let mut session = match schema {
        Some(_) => {
            Some(Session::load_file(gpu.clone(), layout, &path, ctx).with_context(|| format!("loading {path}"))?)
        }
        None => None,
    };
    let mut own = None;
    let model: &mut Model = match &mut session {
        Some(s) => &mut s.model,
        None => {
            own.insert(Model::load_file(gpu.clone(), layout, &path, ctx).with_context(|| format!("loading {path}"))?)
        }
    };
    let vocab = model.cfg.vocab_size as u32;
    // A fixed, ordinary-looking prompt: ids cycling through the vocabulary's common range.
    let span = vocab.min(20000);
    let prompt: Vec<u32> = (0..p as u32)
        .map(|i| if span > 100 { 100 + (i * 37) % (span - 100) } else { (i * 37) % vocab.max(1) })
        .collect();
    // Warm-up: the first runs compile pipelines (the prompt's own chunks' too).
    pollster::block_on(model.step(prompt[0], false))?;
    model.truncate(0);
    pollster::block_on(model.prefill(&prompt[..if a.token_by_token { 2.min(p) } else { p }], false))?;
    // Prefill from position 0, PREFILL_RUNS times (llama-bench averages -r runs): the median.
    let mut prefill_runs = Vec::with_capacity(PREFILL_RUNS);
    let mut tok = 0;
    for _ in 0..PREFILL_RUNS {
        model.truncate(0);
        let t0 = Instant::now();
        tok = if a.token_by_token {
            for &t in &prompt[..p - 1] {
                model.enqueue(t)?;
            }
            pollster::block_on(model.step(prompt[p - 1], false))?.id
        } else {
            pollster::block_on(model.prefill(&prompt, false))?.id
        };
        prefill_runs.push(t0.elapsed().as_secs_f64());
    }
    let prefill_s = median(prefill_runs.clone());
    // The decode graph at the first and the last decoded position (GPU family: a short context's
    // graph merges attention's splits in Wo, one dispatch a layer fewer than a longer one's).
    let dispatches = (model.dispatches_at(model.kv_len()), model.dispatches_at(model.kv_len() + n - 1));
    let t1 = Instant::now();
    // Each step queued before the previous id is read back, as a greedy generation runs.
    tok = *pollster::block_on(model.greedy(tok, n))?.last().expect("n >= 1");
    let decode_s = t1.elapsed().as_secs_f64();
    let decode_tok_s = n as f64 / decode_s;
    // Sampled at temperature 1 (the API's default) from the same position: the steps past the greedy
    // ones are forgotten first.
    // Then with a repetition penalty of 1.1 over the last 64 tokens (a common chat setting), applied
    // on the GPU (kernels::edit_logits).
    let at = model.kv_len() - n;
    let mut sampled = |penalty: f32| -> Result<f64> {
        rewind(model, at)?;
        let settings = SamplerConfig { temperature: 1.0, repetition_penalty: penalty, ..Default::default() };
        let mut sampler = Sampler::new(settings.clone());
        let (sample, edits) = (Some(settings.gpu_settings()), settings.logit_edits());
        // Warm-up: the sample (and edit) pipelines.
        pollster::block_on(model.chained(tok, 2, sample, edits.as_ref(), &mut || sampler.draw()))?;
        rewind(model, at)?;
        let t2 = Instant::now();
        pollster::block_on(model.chained(tok, n, sample, edits.as_ref(), &mut || sampler.draw()))?;
        Ok(n as f64 / t2.elapsed().as_secs_f64())
    };
    let sampled_tok_s = match a.sampled {
        true => Some((sampled(1.0)?, sampled(1.1)?)),
        false => None,
    };
    let (weight_bytes, batch_rows) = (model.weight_bytes, model.batch_rows());
    let mut obj = serde_json::json!({
        "model": path,
        "adapter": gpu.adapter_name(),
        "layout": layout.to_string(),
        "n_layers": model.cfg.n_layers,
        "prompt_tokens": p,
        "decode_tokens": n,
        "prefill_tok_s": p as f64 / prefill_s,
        "prefill_runs_tok_s": prefill_runs.iter().map(|s| p as f64 / s).collect::<Vec<_>>(),
        "decode_tok_s": decode_tok_s,
        "ttft_ms": prefill_s * 1000.0,
        "prefill_batch_rows": if a.token_by_token { 1 } else { batch_rows },
        "dispatches_per_token": dispatches.0,
        "dispatches_per_token_last": dispatches.1,
        "submits_per_token": 1,
        "steps_in_flight": webllama::model::STEPS_IN_FLIGHT,
        "readback_bytes_per_token": 4,
        "weight_bytes_per_token": weight_bytes,
        "implied_gb_s": weight_bytes as f64 * decode_tok_s / 1e9,
    });
    if let Some((r, penalized)) = sampled_tok_s {
        obj["sampled_decode_tok_s"] = r.into();
        obj["penalized_decode_tok_s"] = penalized.into();
    }
    // Profiled halfway through the decoded positions: the graph most timed steps ran (the GPU
    // family merges attention's splits in Wo up to a length, then dispatches a combine).
    let profiles = match a.profile {
        true => {
            rewind(model, at + n / 2)?;
            Some((model.profile_step(tok)?, model.profile_chunk(tok)?))
        }
        false => None,
    };
    if let Some((step, chunk)) = &profiles {
        obj["profile"] = serde_json::json!({
            "method": step.method.name(),
            "how": step.method.describe(),
            "bytes": BYTES,
            "decode_step": profile_json(step),
            "prompt_chunk": profile_json(chunk),
        });
    }
    let structured = match (&mut session, &schema) {
        (Some(s), Some(schema)) => Some(structured(s, schema, n)?),
        _ => None,
    };
    if let Some((c, u, tokens)) = structured {
        obj["structured"] = serde_json::json!({
            "json_schema": a.json_schema,
            "tokens": tokens,
            "constrained_decode_tok_s": c,
            "unconstrained_decode_tok_s": u,
            "ratio": c / u,
        });
    }
    if a.json {
        outln!("{obj}");
    } else {
        outln!("model     {path}\nadapter   {}\nlayout    {layout}", gpu.adapter_name());
        outln!(
            "prefill   {p} tokens: {:.2} tok/s (time to first token {:.0} ms; {})",
            p as f64 / prefill_s,
            prefill_s * 1000.0,
            if a.token_by_token { "token by token".to_string() } else { format!("chunks of {batch_rows}") }
        );
        outln!(
            "decode    {n} tokens: {:.2} tok/s; {:.2} GB/s of weights ({:.1} MB per token)",
            decode_tok_s,
            weight_bytes as f64 * decode_tok_s / 1e9,
            weight_bytes as f64 / 1e6
        );
        let counts = match dispatches {
            (first, last) if first == last => format!("{first} dispatches"),
            (first, last) => format!("{first} dispatches at the first decoded position, {last} at the last"),
        };
        outln!("per token {counts}; 1 submit, 4 bytes read back");
        if let Some((r, penalized)) = sampled_tok_s {
            outln!("sampled   {n} tokens at temperature 1, drawn on the GPU: {r:.2} tok/s");
            outln!("penalized {n} tokens, the same with repetition penalty 1.1 on the GPU: {penalized:.2} tok/s");
        }
        if let Some((c, u, tokens)) = structured {
            outln!(
                "structured {tokens} tokens under the JSON schema: {c:.2} tok/s; unconstrained {u:.2} tok/s ({:.0}%)",
                100.0 * c / u
            );
        }
    }
    if let (Some((step, chunk)), false) = (&profiles, a.json) {
        outln!("profile   {}\n          {BYTES}", step.method.describe());
        print_profile(&format!("a decode step at position {}", step.pos), step)?;
        print_profile(&format!("a prompt chunk of {} tokens at position {}", chunk.rows, chunk.pos), chunk)?;
    }
    Ok(())
}

/// Rewinds `model` to `at` positions, failing where a sliding-window model's ring cache cannot
/// (a rewind further back than a prompt chunk: the measurements would start from the wrong place).
fn rewind(model: &mut Model, at: usize) -> Result<()> {
    let kept = model.truncate(at);
    anyhow::ensure!(
        kept == at,
        "rewinding to position {at} lost the sliding-window layers' cache (kept {kept}): ask for fewer decode tokens (-n)"
    );
    Ok(())
}

/// Greedy decoding under `schema` from a chat prompt asking for it (at most `max_tokens`), against
/// unconstrained greedy decoding of as many tokens from the same prompt: the best of 5 runs each,
/// alternating; (constrained tok/s, unconstrained tok/s, tokens).
fn structured(s: &mut Session, schema: &serde_json::Value, max_tokens: usize) -> Result<(f64, f64, usize)> {
    let ask = format!("Reply with one JSON object that follows this JSON schema:\n{schema}");
    let ids = s.chat_ids(&[Message::new("user", &ask)])?;
    let grammar = Some(Grammar::JsonSchema(schema.clone()));
    let constrained = GenerateOptions { max_tokens, grammar, ..Default::default() };
    let mut run = |o: &GenerateOptions| pollster::block_on(s.generate(&ids, o, &mut |_| true));
    // Warm-up: the grammar's view of the vocabulary, the choice kernels' pipelines.
    run(&GenerateOptions { max_tokens: 4, ..constrained.clone() })?;
    let (mut best_c, mut best_u, mut tokens) = (0f64, 0f64, 0);
    for _ in 0..5 {
        let g = run(&constrained)?;
        tokens = g.ids.len();
        best_c = best_c.max(g.decode_tok_s());
        let plain = GenerateOptions { max_tokens: tokens.max(2), ignore_eos: true, ..Default::default() };
        best_u = best_u.max(run(&plain)?.decode_tok_s());
    }
    Ok((best_c, best_u, tokens))
}

/// One profiled graph as JSON: per kind of kernel, its GPU time, gaps, dispatches, bytes, GB/s.
fn profile_json(p: &Profile) -> serde_json::Value {
    let kinds: Vec<_> = p
        .kinds
        .iter()
        .map(|k| {
            serde_json::json!({
                "name": k.name,
                "ms": k.ms,
                "gap_ms": k.gap_ms,
                "kernel_ms": k.kernel_ms(),
                "dispatches": k.dispatches,
                "weight_bytes": k.weight_bytes,
                "kv_bytes": k.kv_bytes,
                "gb_s": k.gb_s(),
            })
        })
        .collect();
    serde_json::json!({
        "pos": p.pos,
        "rows": p.rows,
        "gpu_ms": p.whole_ms,
        "wall_ms": p.wall_ms,
        "host_ms": p.host_ms,
        "sum_ms": p.sum_ms(),
        "gap_ms": p.gap_ms(),
        "dispatches": p.dispatches(),
        "bytes": p.bytes(),
        "gb_s": p.bytes() as f64 / p.whole_ms / 1e6,
        "kinds": kinds,
    })
}

/// One profiled graph as a table: per kind of kernel, then the whole against the graph's time.
fn print_profile(what: &str, p: &Profile) -> Result<()> {
    let ts = p.method == Method::Timestamps;
    outln!("profile ({what}; {} dispatches):", p.dispatches());
    outln!(
        "  {:<12} {:>5} {:>9} {:>9} {:>6} {:>9} {:>8} {:>8}",
        "kind",
        "disp",
        "GPU ms",
        "gap ms",
        "share",
        "weight MB",
        "KV MB",
        "GB/s"
    );
    for k in &p.kinds {
        outln!(
            "  {:<12} {:>5} {:>9.3} {:>9} {:>5.1}% {:>9.2} {:>8.2} {:>8}",
            k.name,
            k.dispatches,
            k.ms,
            if ts { format!("{:.3}", k.gap_ms) } else { "-".into() },
            100.0 * k.ms / p.sum_ms(),
            k.weight_bytes as f64 / 1e6,
            k.kv_bytes as f64 / 1e6,
            if k.weight_bytes + k.kv_bytes > 0 { format!("{:.1}", k.gb_s()) } else { "-".into() }
        );
    }
    let bytes = p.bytes() as f64;
    if ts {
        outln!(
            "  whole: kernels {:.3} + gaps {:.3} = {:.3} ms (timestamps after each dispatch); the {} as it runs \
             (pass timestamps alone) {:.3} ms; wall {:.3} ms a submit; {:.1} MB at {:.1} GB/s of its GPU time",
            p.sum_ms() - p.gap_ms(),
            p.gap_ms(),
            p.sum_ms(),
            if p.rows == 1 { "step" } else { "chunk" },
            p.whole_ms,
            p.wall_ms,
            bytes / 1e6,
            bytes / p.whole_ms / 1e6
        );
    } else {
        outln!(
            "  whole: {:.3} ms a submit (wall clock); the kinds' savings sum to {:.3} ms; {:.1} MB at {:.1} GB/s",
            p.whole_ms,
            p.sum_ms(),
            bytes / 1e6,
            bytes / p.whole_ms / 1e6
        );
    }
    outln!(
        "  host: {:.3} ms to record and finish the {}'s command buffer (median of 51, not submitted)",
        p.host_ms,
        if p.rows == 1 { "step" } else { "chunk" }
    );
    Ok(())
}
