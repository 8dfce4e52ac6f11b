//! The `webllama` CLI: generate text natively on wgpu (Vulkan, Metal, DX12, or Mesa's lavapipe).

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
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    json: bool,
}

/// The default model's path in the cache (what `make model` fetches).
fn default_model() -> Result<String> {
    let base = match std::env::var_os("WEBLLAMA_CACHE") {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache/webllama"),
    };
    let p = base.join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.exists() {
        bail!("no --model given and the default model is not at {} (run `make model`)", p.display());
    }
    Ok(p.to_string_lossy().into_owned())
}

fn generate(a: GenerateArgs) -> Result<()> {
    let path = match a.model {
        Some(p) => p,
        None => default_model()?,
    };
    let gpu = Arc::new(pollster::block_on(Gpu::new())?);
    let mut session = Session::load_file(gpu.clone(), &path, a.ctx).with_context(|| format!("loading {path}"))?;
    let ids = match (&a.prompt, &a.chat) {
        (Some(p), _) => session.tokenizer.encode(p, true)?,
        (None, Some(c)) => session.chat_ids(&[Message::new("user", c)])?,
        (None, None) => bail!("give --prompt or --chat"),
    };
    let opts = GenerateOptions {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed },
        ignore_eos: a.ignore_eos,
        top_logits: a.top_logits,
    };
    let json = a.json;
    let mut stdout = std::io::stdout();
    let mut on_text = |t: &str| {
        if !json {
            let _ = stdout.write_all(t.as_bytes());
            let _ = stdout.flush();
        }
    };
    let g = pollster::block_on(session.generate(&ids, &opts, &mut on_text))?;
    if json {
        let top: Vec<Vec<(u32, f32)>> = g.top_logits.clone();
        let obj = serde_json::json!({
            "prompt_ids": g.prompt_ids,
            "ids": g.ids,
            "text": g.text,
            "top_logits": top,
            "finish_reason": format!("{:?}", g.finish_reason).to_lowercase(),
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

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Generate(a) => generate(a),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
