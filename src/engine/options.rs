//! A generation request's options as the page sends them (JSON, OpenAI's names): parsed, defaults
//! filled in and checked, so that every numeric option is finite, in range and whole where it must be;
//! tools and tool_choice checked (engine::tools), chat_template_kwargs too (text::chat).

use crate::engine::constraint::Grammar;
use crate::engine::reasoning::ReasoningFormat;
use crate::engine::sampler::SamplerConfig;
use crate::engine::tools::Tools;
use crate::engine::GenerateOptions;
use crate::error::{Error, Result};
use crate::model::MAX_CANDIDATES;
use crate::text::chat::{template_kwargs, TemplateKwargs};
use std::collections::HashMap;

/// Counts are read as u64 (a page's safe integers past 2^32 included: wasm's usize is 32 bits, and
/// serde's error for them named no option), then taken as at most usize::MAX.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    max_tokens: Option<u64>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u64>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    penalty_last_n: Option<u64>,
    #[serde(default)]
    logit_bias: HashMap<String, f32>,
    seed: Option<u64>,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stop: Vec<String>,
    /// Candidates, decoded side by side (1 to MAX_CANDIDATES).
    n: Option<u64>,
    /// OpenAI's response_format: text, json_object or json_schema.
    response_format: Option<ResponseFormat>,
    /// A grammar the output matches: {type: "lark" | "regex", definition}.
    grammar: Option<GrammarSpec>,
    /// Each token's log-probability and this many of the most likely (0 to MAX_TOP_LOGPROBS).
    logprobs: Option<u64>,
    /// OpenAI's tools: [{type: "function", function: {name, description?, parameters?}}].
    tools: Option<serde_json::Value>,
    /// "none" | "auto" | "required" | {type: "function", function: {name}}.
    tool_choice: Option<serde_json::Value>,
    /// Variables for the chat template ({"enable_thinking": false}), as vLLM's and llama.cpp's
    /// servers take them.
    chat_template_kwargs: Option<serde_json::Value>,
    /// "none" (the default: thinking stays in the text) or "parsed" (reasoning_content apart).
    reasoning_format: Option<String>,
}

/// A request's options, its number of candidates and its tools.
#[derive(Debug, Clone)]
pub struct Request {
    pub opts: GenerateOptions,
    pub n: usize,
    /// The tools and tool_choice, when tools are given (Tools::constrain puts a forced call's
    /// grammar into `opts` once the template's call format is known).
    pub tools: Option<Tools>,
    /// chat_template_kwargs, checked (text::chat::template_kwargs); empty when none were given.
    pub template_kwargs: TemplateKwargs,
    /// Where a reasoning model's thinking goes (engine::reasoning).
    pub reasoning: ReasoningFormat,
}

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchema },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonSchema {
    #[allow(dead_code)]
    name: Option<String>,
    #[allow(dead_code)]
    description: Option<String>,
    schema: serde_json::Value,
    /// Outputs always follow the schema; `strict` is taken and ignored.
    #[allow(dead_code)]
    strict: Option<bool>,
}

#[derive(serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum GrammarSpec {
    Lark { definition: String },
    Regex { definition: String },
}

/// The options of `json` and the number of candidates, checked: an InvalidRequest naming the first
/// option that is malformed or out of range (tools, if any, checked and left out: parse_request).
pub fn parse_options(json: &str) -> Result<(GenerateOptions, usize)> {
    parse_request(json).map(|r| (r.opts, r.n))
}

/// The options of `json`, the number of candidates and the tools, checked: an InvalidRequest
/// naming the first option that is malformed or out of range.
pub fn parse_request(json: &str) -> Result<Request> {
    let o: Options = serde_json::from_str(json).map_err(|e| Error::InvalidRequest(format!("options: {e}")))?;
    let mut logit_bias = HashMap::new();
    for (k, v) in &o.logit_bias {
        let id: u32 =
            k.parse().map_err(|_| Error::InvalidRequest(format!("logit_bias key {k:?} is not a token id")))?;
        logit_bias.insert(id, *v);
    }
    let grammar = match (o.response_format, o.grammar) {
        (Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. }), Some(_)) => {
            return Err(Error::InvalidRequest("give response_format or grammar, not both".into()))
        }
        (_, Some(GrammarSpec::Lark { definition })) => Some(Grammar::Lark(definition)),
        (_, Some(GrammarSpec::Regex { definition })) => Some(Grammar::Regex(definition)),
        (Some(ResponseFormat::JsonObject), None) => Some(Grammar::JsonObject),
        (Some(ResponseFormat::JsonSchema { json_schema }), None) => Some(Grammar::JsonSchema(json_schema.schema)),
        (Some(ResponseFormat::Text) | None, None) => None,
    };
    let d = SamplerConfig::default();
    let count = |v: u64| v.min(usize::MAX as u64) as usize;
    let opts = GenerateOptions {
        max_tokens: o.max_tokens.map_or(256, count),
        sampler: SamplerConfig {
            temperature: o.temperature.unwrap_or(0.0),
            top_k: o.top_k.map_or(0, count),
            top_p: o.top_p.unwrap_or(1.0),
            min_p: o.min_p.unwrap_or(0.0),
            repetition_penalty: o.repetition_penalty.unwrap_or(1.0),
            frequency_penalty: o.frequency_penalty.unwrap_or(0.0),
            presence_penalty: o.presence_penalty.unwrap_or(0.0),
            penalty_last_n: o.penalty_last_n.map_or(d.penalty_last_n, count),
            logit_bias,
            seed: o.seed.unwrap_or(0),
        },
        ignore_eos: o.ignore_eos,
        top_logits: 0,
        stop: o.stop,
        grammar,
        logprobs: o.logprobs.map(count),
    };
    opts.check()?;
    let n = o.n.map_or(1, count);
    if n == 0 || n > MAX_CANDIDATES as usize {
        return Err(Error::InvalidRequest(format!(
            "n is {n}: between 1 and {MAX_CANDIDATES} candidates are supported"
        )));
    }
    let tools = Tools::parse(o.tools, o.tool_choice)?;
    let template_kwargs = o.chat_template_kwargs.as_ref().map(template_kwargs).transpose()?.unwrap_or_default();
    let reasoning = match o.reasoning_format.as_deref() {
        None => ReasoningFormat::None,
        Some(name) => ReasoningFormat::parse(name)
            .ok_or_else(|| Error::InvalidRequest(format!("reasoning_format is {name:?}: \"none\" or \"parsed\"")))?,
    };
    Ok(Request { opts, n, tools, template_kwargs, reasoning })
}
