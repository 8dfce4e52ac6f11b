//! The `webllama` CLI: generate text natively on wgpu (Vulkan, Metal, DX12, or Mesa's lavapipe).

/// print! that returns the error where println! would panic: stdout closed (a pipe whose reader
/// has gone: `webllama generate ... | head`); main() ends quietly on it (STDOUT_CLOSED).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err(crate::stdout_error)?;
    }};
}

/// println! as `out!` is print!.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(crate::stdout_error)?;
    }};
}

/// Whether stdout's reader has gone (a write to it failed with a broken pipe).
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A failed write to stdout, noted where its reader has gone.
fn stdout_error(e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    e
}

mod bench;
mod random_model;
mod request;
mod serve;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::Write;
use std::sync::Arc;
use webllama::engine::constraint::Grammar;
use webllama::engine::logprobs::{logprobs_json, vocab_bytes};
use webllama::engine::tools::{self, StreamGuard, Tools};
use webllama::text::chat::TemplateKwargs;
use webllama::{Family, GenerateOptions, Gpu, Layout, Message, Overrides, SamplerConfig, Session};

#[derive(Parser)]
#[command(name = "webllama", version, about = "LLaMA-family GGUF models on WebGPU (wgpu)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate text from a prompt or one chat message.
    Generate(Box<GenerateArgs>),
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
    /// Kernel family: "gpu" or "cpu" (default: the adapter's: cpu on CPU adapters such as lavapipe).
    #[arg(long, value_parser = parse_family)]
    layout: Option<Family>,
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
    /// Variables for the chat template, a JSON object (e.g. '{"enable_thinking": false}': Qwen3
    /// and SmolLM3 answer without thinking first).
    #[arg(long, value_parser = parse_template_kwargs)]
    chat_template_kwargs: Option<TemplateKwargs>,
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
pub struct BenchArgs {
    /// GGUF model file (default: the default model in the cache).
    #[arg(long)]
    pub model: Option<String>,
    /// Kernel family: "gpu" or "cpu" (default: the adapter's: cpu on CPU adapters such as lavapipe).
    #[arg(long, value_parser = parse_family)]
    pub layout: Option<Family>,
    /// Prompt tokens to prefill.
    #[arg(short = 'p', default_value_t = 512)]
    pub prompt_tokens: usize,
    /// Tokens to decode.
    #[arg(short = 'n', default_value_t = 128)]
    pub decode_tokens: usize,
    /// Also print what each kind of kernel costs in a decode step and in a prompt chunk: GPU timestamps
    /// around each dispatch where the adapter has them (else the whole less the whole without it);
    /// with --json, in the object.
    #[arg(long)]
    pub profile: bool,
    /// Prefill one token at a time (the decode graph) instead of in batched chunks.
    #[arg(long)]
    pub token_by_token: bool,
    /// Also decode greedily under this JSON schema (as response_format json_schema, from a chat
    /// prompt asking for it) and unconstrained for as many tokens, and report both speeds.
    #[arg(long)]
    pub json_schema: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also decode as many tokens sampled at temperature 1 (drawn on the GPU, kernels::sample;
    /// each step chained as greedy ones are), then again with a repetition penalty of 1.1 (applied
    /// on the GPU, kernels::edit_logits), and report both speeds.
    #[arg(long)]
    pub sampled: bool,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// GGUF model file (default: the default model in the cache; fetch it with `make model`).
    #[arg(long)]
    model: Option<String>,
    /// Kernel family: "gpu" or "cpu" (default: the adapter's: cpu on CPU adapters such as lavapipe).
    #[arg(long, value_parser = parse_family)]
    layout: Option<Family>,
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
    /// Report each generated token's log-probability and the K most likely tokens of its step
    /// (0 to 20; with --json: "logprobs").
    #[arg(long)]
    logprobs: Option<usize>,
    /// KV-cache positions (default: the model's context length, at most 4096).
    #[arg(long)]
    ctx: Option<usize>,
    /// A Hugging Face tokenizer.json to use instead of the GGUF's vocabulary.
    #[arg(long)]
    tokenizer: Option<String>,
    /// Candidates to generate from the prompt, decoded side by side in one batch (1 to 8).
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// A JSON schema file the output follows (as response_format json_schema).
    #[arg(long, conflicts_with_all = ["grammar", "regex"])]
    json_schema: Option<String>,
    /// A Lark grammar file the output follows (llguidance's dialect).
    #[arg(long, conflicts_with = "regex")]
    grammar: Option<String>,
    /// A regular expression the whole output matches.
    #[arg(long)]
    regex: Option<String>,
    /// A JSON file of OpenAI tools ([{"type": "function", "function": {name, description,
    /// parameters}}]) the model may call (with --chat); calls print as OpenAI's tool_calls.
    #[arg(long, requires = "chat")]
    tools: Option<String>,
    /// auto (default), none, required, or a function's name (required and a name force one call
    /// whose arguments follow the function's schema).
    #[arg(long, requires = "tools")]
    tool_choice: Option<String>,
    /// Variables for the chat template, a JSON object (with --chat; e.g. '{"enable_thinking":
    /// false}': Qwen3 and SmolLM3 answer without thinking first).
    #[arg(long, requires = "chat", value_parser = parse_template_kwargs)]
    chat_template_kwargs: Option<TemplateKwargs>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

/// --chat-template-kwargs: a JSON object checked as a request's chat_template_kwargs.
fn parse_template_kwargs(s: &str) -> Result<TemplateKwargs, String> {
    let v: serde_json::Value = serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))?;
    webllama::text::chat::template_kwargs(&v).map_err(|e| e.to_string())
}

fn parse_family(s: &str) -> Result<Family, String> {
    Family::parse(s).ok_or_else(|| format!("{s:?}: the layouts are \"gpu\" and \"cpu\""))
}

/// The best adapter's device and the Layout for it: the adapter's own, `--layout` and the
/// environment's overrides applied (Overrides::from_env).
fn open_gpu(family: Option<Family>) -> Result<(Arc<Gpu>, Layout)> {
    let gpu = Arc::new(pollster::block_on(Gpu::new())?);
    let layout = Layout::choose(&gpu, &Overrides::from_env().with_family(family));
    Ok((gpu, layout))
}

fn parse_bias(s: &str) -> Result<(u32, f32), String> {
    let (id, b) = s.split_once('=').ok_or("expected ID=BIAS")?;
    Ok((
        id.trim().parse().map_err(|_| "ID must be a token id")?,
        b.trim().parse().map_err(|_| "BIAS must be a number")?,
    ))
}

/// The model cache folder ($WEBLLAMA_CACHE/models or ~/.cache/webllama/models).
fn models_dir() -> Result<std::path::PathBuf> {
    // Empty counts as unset, as scripts/fetch-model.sh takes it.
    let base = match std::env::var_os("WEBLLAMA_CACHE").filter(|d| !d.is_empty()) {
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

/// The grammar --json-schema, --grammar or --regex gives, if any.
fn grammar_of(a: &GenerateArgs) -> Result<Option<Grammar>> {
    let read = |path: &str| std::fs::read_to_string(path).with_context(|| format!("reading {path}"));
    Ok(match (&a.json_schema, &a.grammar, &a.regex) {
        (Some(f), _, _) => {
            Some(Grammar::JsonSchema(serde_json::from_str(&read(f)?).with_context(|| format!("{f} is not JSON"))?))
        }
        (_, Some(f), _) => Some(Grammar::Lark(read(f)?)),
        (_, _, Some(r)) => Some(Grammar::Regex(r.clone())),
        _ => None,
    })
}

/// The tools --tools and --tool-choice give, if any.
fn tools_of(a: &GenerateArgs) -> Result<Option<Tools>> {
    let Some(f) = &a.tools else { return Ok(None) };
    let text = std::fs::read_to_string(f).with_context(|| format!("reading {f}"))?;
    let list: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{f} is not JSON"))?;
    let choice = a.tool_choice.as_deref().map(|c| match c {
        "auto" | "none" | "required" => serde_json::json!(c),
        name => serde_json::json!({ "type": "function", "function": { "name": name } }),
    });
    Ok(Tools::parse(Some(list), choice)?.filter(|t| t.active()))
}

/// A fresh call id: call_ and 24 hex digits (from the standard library's randomly seeded hasher).
fn call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let word = || std::collections::hash_map::RandomState::new().build_hasher().finish();
    format!("call_{:016x}{:08x}", word(), word() as u32)
}

/// A reply's calls in OpenAI's shape, each with a fresh id.
fn openai_calls(reply: &tools::Reply) -> Vec<serde_json::Value> {
    reply.calls.iter().map(|c| tools::openai_call(c, &call_id())).collect()
}

fn generate(a: GenerateArgs) -> Result<()> {
    if a.n == 0 {
        bail!("--n must be 1 to 8 (candidates)");
    }
    let grammar = grammar_of(&a)?;
    let tools = tools_of(&a)?;
    let path = model_path(a.model)?;
    let (gpu, layout) = open_gpu(a.layout)?;
    let mut session =
        Session::load_file(gpu.clone(), layout, &path, a.ctx).with_context(|| format!("loading {path}"))?;
    if let Some(tj) = &a.tokenizer {
        let json = std::fs::read(tj).with_context(|| format!("reading {tj}"))?;
        let header = webllama::format::weights::read_header(&path)?;
        session.tokenizer = std::sync::Arc::new(webllama::Tokenizer::from_gguf(&header)?.with_tokenizer_json(&json)?);
    }
    let ids = match (&a.prompt, &a.chat) {
        (Some(p), _) => session.tokenizer.encode(p, true)?,
        (None, Some(c)) => {
            let kwargs = a.chat_template_kwargs.clone().unwrap_or_default();
            session.chat_ids_with(&[Message::new("user", c)], tools.as_ref(), &kwargs)?
        }
        (None, None) => bail!("give --prompt or --chat"),
    };
    let mut opts = GenerateOptions {
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
        grammar,
        logprobs: a.logprobs,
    };
    if let Some(t) = &tools {
        t.constrain(&mut opts, session.tool_caps().format)?;
    }
    let json = a.json;
    let mut stdout = std::io::stdout();
    // With tools, call markup is held back from the stream (the calls print at the end).
    let mut guard = StreamGuard::default();
    // A reader gone (a closed pipe) stops the generation.
    let mut on_text = |t: &str| {
        if json {
            return true;
        }
        let shown = if tools.is_some() { guard.push(t) } else { t.to_string() };
        stdout.write_all(shown.as_bytes()).and_then(|_| stdout.flush()).map_err(stdout_error).is_ok()
    };
    if a.n > 1 {
        let (adapter, tools) = (gpu.adapter_name(), tools.as_ref());
        return generate_candidates(&mut session, &ids, a.n, &opts, json, &adapter, &layout, tools);
    }
    let g = pollster::block_on(session.generate(&ids, &opts, &mut on_text))?;
    let reply = tools.as_ref().map(|t| t.reply(&g.text));
    if json {
        let top: Vec<Vec<(u32, f32)>> = g.top_logits.clone();
        let mut obj = serde_json::json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "top_logits": top,
            "finish_reason": g.finish_reason.as_str(),
            "prefill_tok_s": g.prefill_tok_s(),
            "decode_tok_s": g.decode_tok_s(),
            "adapter": gpu.adapter_name(),
            "layout": layout.to_string(),
            "architecture": session.model.cfg.arch,
        });
        if opts.logprobs.is_some() {
            obj["logprobs"] = logprobs_json(&vocab_bytes(&session.tokenizer), &g.logprobs);
        }
        if let Some(r) = &reply {
            obj["content"] = r.content.clone().into();
            obj["tool_calls"] = openai_calls(r).into();
            obj["finish_reason"] = tools::finish_reason(r, g.finish_reason).into();
        }
        outln!("{obj}");
    } else {
        // The text held back that was content after all, then each call as a JSON line.
        if let Some(r) = &reply {
            // The content is trimmed; what passed was not.
            let rest = r.content.as_deref().and_then(|c| c.strip_prefix(guard.passed().trim_start())).unwrap_or("");
            out!("{rest}");
            for c in openai_calls(r) {
                out!("\n{c}");
            }
        }
        outln!();
        eprintln!(
            "[{} prompt tokens, {:.1} tok/s prefill; {} generated, {:.1} tok/s decode; {}]",
            g.prompt_ids.len(),
            g.prefill_tok_s(),
            g.ids.len(),
            g.decode_tok_s(),
            gpu.adapter_name(),
        );
    }
    Ok(())
}

fn chat(a: ChatArgs) -> Result<()> {
    use std::io::BufRead;
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temperature: a.temperature, seed: a.seed, ..Default::default() },
        ..Default::default()
    };
    // Options refused before the model loads, not at the first turn.
    opts.sampler.check()?;
    if opts.max_tokens == 0 {
        bail!("--max-tokens must be at least 1");
    }
    let path = model_path(a.model)?;
    let (gpu, layout) = open_gpu(a.layout)?;
    let mut session =
        Session::load_file(gpu.clone(), layout, &path, a.ctx).with_context(|| format!("loading {path}"))?;
    eprintln!("{} on {}, layout {layout}; one line a turn, /reset starts over, Ctrl-D ends.", path, gpu.adapter_name());
    let fresh = || a.system.iter().map(|s| Message::new("system", s)).collect::<Vec<_>>();
    let kwargs = a.chat_template_kwargs.clone().unwrap_or_default();
    let mut history = fresh();
    let mut stdout = std::io::stdout();
    // Lines as bytes: one that is not UTF-8 is read with U+FFFD in place of what is not.
    for line in std::io::stdin().lock().split(b'\n') {
        let line = line.context("reading stdin")?;
        let line = String::from_utf8_lossy(&line);
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
        // A reader gone (a closed pipe) stops the reply.
        let mut on_text =
            |t: &str| stdout.write_all(t.as_bytes()).and_then(|_| stdout.flush()).map_err(stdout_error).is_ok();
        let turn = session
            .chat_ids_with(&history, None, &kwargs)
            .and_then(|ids| pollster::block_on(session.generate(&ids, &opts, &mut on_text)));
        let g = match turn {
            Ok(g) => g,
            // A turn the request made fail is dropped and the chat goes on (a conversation past
            // the context ends nothing but that turn); a GPU that failed ends the chat.
            Err(
                e @ (webllama::Error::ContextFull { .. }
                | webllama::Error::InvalidRequest(_)
                | webllama::Error::Template(_)
                | webllama::Error::Tokenizer(_)),
            ) => {
                history.pop();
                eprintln!("error: {e}");
                if matches!(e, webllama::Error::ContextFull { .. }) {
                    eprintln!("(the conversation no longer fits the context: /reset starts over)");
                }
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        outln!();
        eprintln!(
            "[{} new prompt tokens at {:.1} tok/s; {} generated at {:.1} tok/s]",
            g.prefilled,
            g.prefill_tok_s(),
            g.ids.len(),
            g.decode_tok_s()
        );
        history.push(Message::new("assistant", &g.text));
    }
    Ok(())
}

/// `generate --n N`: the candidates, one per line (or one JSON object with a "choices" list); with
/// tools, each choice's content and calls.
#[allow(clippy::too_many_arguments)]
fn generate_candidates(
    session: &mut Session,
    ids: &[u32],
    n: usize,
    opts: &GenerateOptions,
    json: bool,
    adapter: &str,
    layout: &Layout,
    tools: Option<&Tools>,
) -> Result<()> {
    let passes = session.model.batch_passes;
    let all = pollster::block_on(session.generate_n(ids, n, opts, &mut |_, _| true))?;
    let weight_passes = session.model.batch_passes - passes;
    let tokens: usize = all.iter().map(|g| g.ids.len()).sum();
    let secs = all[0].decode_ms / 1000.0;
    if json {
        let vocab = opts.logprobs.map(|_| vocab_bytes(&session.tokenizer));
        let choices: Vec<_> = all
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut c = serde_json::json!({ "index": i, "ids": g.ids, "text": g.text, "finish_reason": g.finish_reason.as_str() });
                if let Some(v) = &vocab {
                    c["logprobs"] = logprobs_json(v, &g.logprobs);
                }
                if let Some(r) = tools.map(|t| t.reply(&g.text)) {
                    c["content"] = r.content.clone().into();
                    c["tool_calls"] = openai_calls(&r).into();
                    c["finish_reason"] = tools::finish_reason(&r, g.finish_reason).into();
                }
                c
            })
            .collect();
        let obj = serde_json::json!({
            "prompt_ids": ids,
            "choices": choices,
            "weight_passes": weight_passes,
            "prefill_tok_s": all[0].prefill_tok_s(),
            "decode_tok_s": tokens as f64 / secs.max(1e-9),
            "adapter": adapter,
            "layout": layout.to_string(),
            "architecture": session.model.cfg.arch,
        });
        outln!("{obj}");
    } else {
        for (i, g) in all.iter().enumerate() {
            let text = match tools.map(|t| t.reply(&g.text)) {
                Some(r) if !r.calls.is_empty() => serde_json::Value::from(openai_calls(&r)).to_string(),
                _ => g.text.replace('\n', " "),
            };
            outln!("{}: {text}", i + 1);
        }
        eprintln!(
            "[{n} candidates, {tokens} tokens in {weight_passes} weight passes, {:.1} tok/s together; {adapter}]",
            tokens as f64 / secs.max(1e-9)
        );
    }
    Ok(())
}

/// lavapipe (Mesa's software Vulkan) runs compute on LP_NUM_THREADS threads, by default one per
/// core. Two per core measured faster and steadier on a 2-core machine (BENCH.md): so set, unless
/// the user has, before any thread or Vulkan instance exists. No effect on other drivers.
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
        Cmd::Generate(a) => generate(*a),
        Cmd::Chat(a) => chat(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Serve(a) => (|| {
            let www = std::path::PathBuf::from(&a.www);
            if !www.join("pkg/webllama_bg.wasm").exists() {
                eprintln!(
                    "warning: {} has no wasm build (run `make wasm`); the page will not load",
                    www.join("pkg").display()
                );
            }
            let models = match a.models {
                Some(m) => std::path::PathBuf::from(m),
                None => models_dir()?,
            };
            serve::serve(www, models, a.port)
        })(),
        Cmd::RandomModel(a) => random_model::random_model(&a.like, &a.shape, &a.out, a.seed),
    };
    if let Err(e) = r {
        // stdout closed by its reader (`| head`): what it wanted is written; nothing to report.
        if STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
