//! The `webllama` CLI: generate text natively on wgpu (Vulkan, Metal, DX12, or Mesa's lavapipe).

mod cli_random;
mod cli_serve;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::sync::Arc;
use webllama::{GenerateOptions, Gpu, Message, SamplerConfig, Session};

#[derive(Parser)]
#[command(name = "webllama", version, about = "LLaMA-family GGUF models on WebGPU (wgpu)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt or one chat message.
    Generate(GenerateArgs),
    /// Chat in the terminal: one line a turn; the KV cache keeps the conversation (/reset clears it).
    Chat(ChatArgs),
    /// Measure prefill and decode speed (in the spirit of llama-bench).
    Bench(BenchArgs),
    /// Serve the demo page (www/) and the cached models on 127.0.0.1.
    Serve(ServeArgs),
    /// Write a GGUF with random weights (for benchmarks): another file's metadata, its own shape
    /// or a preset one.
    RandomModel(RandomModelArgs),
}

#[derive(clap::Args)]
struct RandomModelArgs {
    /// GGUF whose metadata (tokenizer, template) to copy; only its header is read.
    #[arg(long)]
    like: String,
    /// "same" (the --like file's tensors and types) or "llama-3.2-1b" (Q4_K_M type mix).
    #[arg(long, default_value = "same")]
    shape: String,
    #[arg(long)]
    out: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(clap::Args)]
struct ChatArgs {
    /// GGUF model file (default: the default model in the cache).
    #[arg(long)]
    model: Option<String>,
    /// A system prompt (default: the template's own, if any).
    #[arg(long)]
    system: Option<String>,
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long)]
    ctx: Option<usize>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The page's folder (with the wasm build in pkg/, made by `make wasm`).
    #[arg(long, default_value = "www")]
    www: String,
    /// Folder of model files served at /models/ (default: the model cache).
    #[arg(long)]
    models: Option<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// GGUF model file (default: the default model in the cache).
    #[arg(long)]
    model: Option<String>,
    /// Prompt tokens to prefill.
    #[arg(short = 'p', default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(short = 'n', default_value_t = 128)]
    decode_tokens: usize,
    /// Also print what each kind of kernel costs in a decode step and in a prompt chunk (the whole less the whole without it).
    #[arg(long)]
    profile: bool,
    /// Prefill one token at a time (the decode graph) instead of in batched chunks.
    #[arg(long)]
    token_by_token: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// GGUF model file (default: the default model in the cache; fetch it with `make model`).
    #[arg(long)]
    model: Option<String>,
    /// Raw prompt text; special-token strings such as <|im_start|> are parsed as specials.
    #[arg(long, conflicts_with = "chat", required_unless_present = "chat")]
    prompt: Option<String>,
    /// One user message, wrapped with the model's chat template.
    #[arg(long)]
    chat: Option<String>,
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Drop tokens less likely than MIN_P times the most likely one.
    #[arg(long, default_value_t = 0.0)]
    min_p: f32,
    /// Penalize tokens seen in the last --penalty-last-n (llama.cpp's repeat penalty; 1 is off).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    #[arg(long, default_value_t = 64)]
    penalty_last_n: usize,
    /// ID=BIAS added to a token's logit (repeatable).
    #[arg(long, value_parser = parse_bias)]
    logit_bias: Vec<(u32, f32)>,
    /// Stop at this string (repeatable; may span tokens).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Report the K highest logits of every step (with --json).
    #[arg(long, default_value_t = 0)]
    top_logits: usize,
    /// KV-cache positions (default: the model's context length, at most 4096).
    #[arg(long)]
    ctx: Option<usize>,
    /// A Hugging Face tokenizer.json to use instead of the GGUF's vocabulary.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Candidates to generate from the prompt, decoded side by side in one batch (1 to 8).
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

fn parse_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, b) = s.split_once('=').ok_or("expected ID=BIAS")?;
    Ok((id.trim().parse().map_err(|_| "ID must be a token id")?, b.trim().parse().map_err(|_| "BIAS must be a number")?))
}

/// The model cache folder ($WEBLLAMA_CACHE/models or ~/.cache/webllama/models).
fn models_dir() -> Result<std::path::PathBuf> {
    let base = match std::env::var_os("WEBLLAMA_CACHE") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/webllama"),
    };
    Ok(base.join("models"))
}

/// The --model given, or the default model in the cache.
fn model_path(given: Option<String>) -> Result<String> {
    match given {
        Some(p) => Ok(p),
        None => default_model(),
    }
}

/// The default model's path in the cache (what `make model` fetches).
fn default_model() -> Result<String> {
    let p = models_dir()?.join("SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        bail!("no --model given and the default model is not at {} (run `make model`)", p.display());
    }
    Ok(p.to_string_lossy().into_owned())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let path = model_path(a.model)?;
    let gpu = Arc::new(pollster::block_on(Gpu::new())?);
    let mut session = Session::load_file(gpu.clone(), &path, a.ctx).with_context(|| format!("loading {path}"))?;
    if let Some(tj) = &a.tokenizer {
        let json = std::fs::read(tj).with_context(|| format!("reading {tj}"))?;
        let header = webllama::weights::read_header(&path)?;
        session.tokenizer = webllama::Tokenizer::from_gguf(&header)?.with_tokenizer_json(&json)?;
    }
    let ids = match (&a.prompt, &a.chat) {
        (Some(p), _) => session.tokenizer.encode(p, true)?,
        (None, Some(c)) => session.chat_ids(&[Message::new("user", c)])?,
        (None, None) => bail!("give --prompt or --chat"),
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repetition_penalty: a.repetition_penalty,
            frequency_penalty: a.frequency_penalty,
            presence_penalty: a.presence_penalty,
            penalty_last_n: a.penalty_last_n,
            logit_bias: a.logit_bias.iter().cloned().collect(),
            seed: a.seed,
        },
        ignore_eos: a.ignore_eos,
        top_logits: a.top_logits,
        stop: a.stop.clone(),
    };
    let json = a.json;
    let mut stdout = std::io::stdout();
    let mut on_text = |t: &str| {
        if !json {
            let _ = stdout.write_all(t.as_bytes());
            let _ = stdout.flush();
        }
        true
    };
    if a.n > 1 {
        return generate_candidates(&mut session, &ids, a.n, &opts, json, &gpu.adapter_name());
    }
    let g = pollster::block_on(session.generate(&ids, &opts, &mut on_text))?;
    if json {
        let top: Vec<Vec<(u32, f32)>> = g.top_logits.clone();
        let obj = serde_json::json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "top_logits": top,
            "finish_reason": g.finish_reason.as_str(),
            "prefill_tok_s": g.prefill_tok_s(),
            "decode_tok_s": g.decode_tok_s(),
            "adapter": gpu.adapter_name(),
        });
        println!("{obj}");
    } else {
        println!();
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} generated, {:.1} tok/s decode; {}]",
            g.prompt_ids.len(),
            g.prefill_tok_s(),
            g.ids.len(),
            g.decode_tok_s(),
            gpu.adapter_name()
        );
    }
    Ok(())
}

fn chat(a: ChatArgs) -> Result<()> {
    use std::io::BufRead;
    let path = model_path(a.model)?;
    let gpu = Arc::new(pollster::block_on(Gpu::new())?);
    let mut session = Session::load_file(gpu.clone(), &path, a.ctx).with_context(|| format!("loading {path}"))?;
    eprintln!("{} on {}; one line a turn, /reset starts over, Ctrl-D ends.", path, gpu.adapter_name());
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temperature: a.temperature, seed: a.seed, ..Default::default() },
        ..Default::default()
    };
    let fresh = || a.system.iter().map(|s| Message::new("system", s)).collect::<Vec<_>>();
    let mut history = fresh();
    let mut stdout = std::io::stdout();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        if text == "/reset" {
            history = fresh();
            session.reset();
            continue;
        }
        history.push(Message::new("user", text));
        let ids = session.chat_ids(&history)?;
        let g = pollster::block_on(session.generate(&ids, &opts, &mut |t| {
            let _ = stdout.write_all(t.as_bytes());
            let _ = stdout.flush();
            true
        }))?;
        println!();
        eprintln!("[{} new prompt tokens at {:.1} tok/s; {} generated at {:.1} tok/s]", g.prefilled, g.prefill_tok_s(), g.ids.len(), g.decode_tok_s());
        history.push(Message::new("assistant", &g.text));
    }
    Ok(())
}

/// `generate --n N`: the candidates, one per line (or one JSON object with a "choices" list).
fn generate_candidates(session: &mut Session, ids: &[u32], n: usize, opts: &GenerateOptions, json: bool, adapter: &str) -> Result<()> {
    let passes = session.model.batch_passes;
    let all = pollster::block_on(session.generate_n(ids, n, opts, &mut |_, _| true))?;
    let weight_passes = session.model.batch_passes - passes;
    let tokens: usize = all.iter().map(|g| g.ids.len()).sum();
    let secs = all[0].decode_ms / 1000.0;
    if json {
        let choices: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(i, g)| serde_json::json!({ "index": i, "ids": g.ids, "text": g.text, "finish_reason": g.finish_reason.as_str() }))
            .collect();
        let obj = serde_json::json!({
            "prompt_ids": ids,
            "choices": choices,
            "weight_passes": weight_passes,
            "prefill_tok_s": all[0].prefill_tok_s(),
            "decode_tok_s": tokens as f64 / secs.max(1e-9),
            "adapter": adapter,
        });
        println!("{obj}");
    } else {
        for (i, g) in all.iter().enumerate() {
            println!("{}: {}", i + 1, g.text.replace('\n', " "));
        }
        eprintln!("[{n} candidates, {tokens} tokens in {weight_passes} weight passes, {:.1} tok/s together; {adapter}]", tokens as f64 / secs.max(1e-9));
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    use std::time::Instant;
    let path = model_path(a.model)?;
    let (p, n) = (a.prompt_tokens.max(1), a.decode_tokens.max(1));
    let gpu = Arc::new(pollster::block_on(Gpu::new())?);
    // The context a user gets (so attention is split as in use), or more when the run needs it.
    let ctx = (p + n + 1 > webllama::model::DEFAULT_CTX).then_some(p + n + 1);
    let mut model = webllama::Model::load_file(gpu.clone(), &path, ctx).with_context(|| format!("loading {path}"))?;
    let vocab = model.cfg.vocab_size as u32;
    // A fixed, ordinary-looking prompt: ids cycling through the vocabulary's common range.
    let prompt: Vec<u32> = (0..p as u32).map(|i| 100 + (i * 37) % (vocab.min(20000) - 100)).collect();
    // Warm-up: the first runs compile pipelines.
    pollster::block_on(model.step(prompt[0], false))?;
    pollster::block_on(model.prefill(&prompt[..2.min(p)], false))?;
    model.kv.truncate(0);
    let t0 = Instant::now();
    let mut tok = if a.token_by_token {
        for &t in &prompt[..p - 1] {
            model.enqueue(t)?;
        }
        pollster::block_on(model.step(prompt[p - 1], false))?.argmax
    } else {
        pollster::block_on(model.prefill(&prompt, false))?.argmax
    };
    let prefill_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for _ in 0..n {
        tok = pollster::block_on(model.step(tok, false))?.argmax;
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let decode_tok_s = n as f64 / decode_s;
    let weight_bytes = model.weight_bytes;
    let obj = serde_json::json!({
        "model": path,
        "adapter": gpu.adapter_name(),
        "n_layers": model.cfg.n_layers,
        "prompt_tokens": p,
        "decode_tokens": n,
        "prefill_tok_s": p as f64 / prefill_s,
        "decode_tok_s": decode_tok_s,
        "ttft_ms": prefill_s * 1000.0,
        "prefill_batch_rows": if a.token_by_token { 1 } else { model.batch_rows() },
        "dispatches_per_token": model.dispatches_per_token(),
        "submits_per_token": 1,
        "readback_bytes_per_token": 4,
        "weight_bytes_per_token": weight_bytes,
        "implied_gb_s": weight_bytes as f64 * decode_tok_s / 1e9,
    });
    if a.json {
        println!("{obj}");
    } else {
        println!("model     {path}\nadapter   {}", gpu.adapter_name());
        println!(
            "prefill   {p} tokens: {:.2} tok/s (time to first token {:.0} ms; {})",
            p as f64 / prefill_s,
            prefill_s * 1000.0,
            if a.token_by_token { "token by token".to_string() } else { format!("chunks of {}", model.batch_rows()) }
        );
        println!("decode    {n} tokens: {:.2} tok/s; {:.2} GB/s of weights ({:.1} MB per token)", decode_tok_s, weight_bytes as f64 * decode_tok_s / 1e9, weight_bytes as f64 / 1e6);
        println!("per token {} dispatches, 1 submit, 4 bytes read back", model.dispatches_per_token());
    }
    if a.profile {
        let print = |what: &str, (split, whole): (Vec<(&str, f64, usize)>, f64)| {
            println!("profile ({what}: {whole:.1} ms; per kind of kernel, what it saves without it):");
            for (name, ms, n) in split {
                println!("  {name:<10} {ms:8.2} ms  {:5.1}%  {n:4} dispatches", 100.0 * ms / whole);
            }
        };
        print("a decode step", model.profile_step(tok)?);
        let rows = model.batch_rows();
        print(&format!("a prompt chunk of {rows} tokens"), model.profile_chunk(tok)?);
    }
    Ok(())
}

/// lavapipe (Mesa's software Vulkan) runs compute on LP_NUM_THREADS threads, by default one per
/// core. With two per core it measured faster and steadier on a 2-core machine (SmolLM2 Q4_1:
/// prefill ~150 -> ~185 tok/s, decode ~25 -> ~28.5; 3 and 8 threads were slower than 4): so set,
/// unless the user has, before any thread or Vulkan instance exists. No effect on other drivers.
fn default_lavapipe_threads() {
    if std::env::var_os("LP_NUM_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("LP_NUM_THREADS", (2 * cores).to_string());
    }
}

fn main() {
    default_lavapipe_threads();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Generate(a) => generate(a),
        Cmd::Chat(a) => chat(a),
        Cmd::Bench(a) => bench(a),
        Cmd::Serve(a) => (|| {
            let www = std::path::PathBuf::from(&a.www);
            if !www.join("pkg/webllama_bg.wasm").exists() {
                eprintln!("warning: {} has no wasm build (run `make wasm`); the page will not load", www.join("pkg").display());
            }
            let models = match a.models {
                Some(m) => std::path::PathBuf::from(m),
                None => models_dir()?,
            };
            cli_serve::serve(www, models, a.port)
        })(),
        Cmd::RandomModel(a) => cli_random::random_model(&a.like, &a.shape, &a.out, a.seed),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
