//! Tool calls (OpenAI's `tools` and `tool_choice`): the tools handed to the chat template where it
//! renders them, or written into the system prompt Hermes-style where it does not (as llama.cpp and
//! vLLM do); the reply parsed back into calls (Hermes/Qwen `<tool_call>` JSON, Llama 3.x
//! `{"name", "parameters"}`, Mistral `[TOOL_CALLS]` and Granite 3.x `<|tool_call|>` lists); for `tool_choice` "required" or a named
//! function, a grammar that forces one call whose arguments follow that function's parameters.
//! The page (wasm.rs) and the CLI share all of it.

use crate::engine::constraint::Grammar;
use crate::engine::{FinishReason, GenerateOptions};
use crate::error::{Error, Result};
use crate::text::chat::{ChatTemplate, Message, TemplateKwargs, TemplateVars};
use crate::text::tokenizer::Tokenizer;
use serde_json::{json, Value};

/// Most tools one request may give (OpenAI's limit).
pub const MAX_TOOLS: usize = 128;
/// Longest function name (OpenAI's: letters, digits, `_` and `-`).
pub const MAX_NAME: usize = 64;

/// Where a Hermes-style call starts and ends.
const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
/// Other families' openers: Mistral's and Granite 3.x's call lists and Llama 3.x's code marker.
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const GRANITE_OPEN: &str = "<|tool_call|>";
const PYTHON_TAG: &str = "<|python_tag|>";

/// One function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// Its arguments' JSON schema (an empty object's when none was given).
    pub parameters: Value,
}

/// OpenAI's tool_choice.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    /// The tools are hidden from the model and the reply is not parsed.
    None,
    /// The model may call a tool or answer (the default).
    Auto,
    /// One call to one of the tools, forced by a grammar.
    Required,
    /// One call to this function, forced by a grammar.
    Function(String),
}

/// A request's tools and tool_choice, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    pub tools: Vec<Tool>,
    pub choice: ToolChoice,
    /// The tools array as given: what a template that renders tools gets.
    raw: Value,
}

/// How the model writes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` (Hermes, Qwen, and the system
    /// prompt written for templates without tools).
    Hermes,
    /// `{"name": ..., "parameters": {...}}` alone (Llama 3.x templates).
    Llama,
}

/// What a chat template does with tools, found by rendering probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// It renders the `tools` it is given.
    pub tools: bool,
    /// It renders an assistant message's `tool_calls`.
    pub tool_calls: bool,
    /// It renders a `role: "tool"` message's content.
    pub tool_responses: bool,
    /// It renders a system message (Gemma's refuses one).
    pub system: bool,
    pub format: Format,
}

/// One parsed call: the function's name and its arguments as JSON text (OpenAI's `arguments`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
}

/// A reply split into its text and its calls.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The text outside the calls (None when there is none).
    pub content: Option<String>,
    pub calls: Vec<ToolCall>,
}

impl Tools {
    /// Checks OpenAI's `tools` ([{type: "function", function: {name, description?, parameters?,
    /// strict?}}]) and `tool_choice` ("none" | "auto" | "required" | {type: "function", function:
    /// {name}}; default "auto"): None when no tools are given; an InvalidRequest naming the first
    /// thing that is wrong.
    pub fn parse(tools: Option<Value>, choice: Option<Value>) -> Result<Option<Tools>> {
        let bad = |m: String| Error::InvalidRequest(m);
        let raw = match tools {
            None | Some(Value::Null) => {
                return match choice {
                    None | Some(Value::Null) => Ok(None),
                    Some(_) => Err(bad("tool_choice is given but there are no tools".into())),
                }
            }
            Some(Value::Array(a)) if a.is_empty() => {
                // No tools to call: a choice that asks for a call can't be met.
                return match choice.as_ref().filter(|c| !c.is_null()) {
                    None => Ok(None),
                    Some(Value::String(s)) if s == "none" || s == "auto" => Ok(None),
                    Some(c) => Err(bad(format!("tool_choice {c} asks for a tool call, but tools is empty"))),
                };
            }
            Some(t @ Value::Array(_)) => t,
            Some(_) => return Err(bad("tools must be an array".into())),
        };
        let list = raw.as_array().expect("matched above");
        if list.len() > MAX_TOOLS {
            return Err(bad(format!("{} tools: at most {MAX_TOOLS}", list.len())));
        }
        let mut tools: Vec<Tool> = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            if t.get("type").and_then(Value::as_str) != Some("function") {
                return Err(bad(format!(
                    "tools[{i}]: only {{\"type\": \"function\", \"function\": {{...}}}} tools are supported"
                )));
            }
            let f =
                t.get("function").filter(|f| f.is_object()).ok_or_else(|| bad(format!("tools[{i}]: no function")))?;
            let name = f.get("name").and_then(Value::as_str).unwrap_or("");
            check_name(name).map_err(|m| bad(format!("tools[{i}]: {m}")))?;
            if tools.iter().any(|t| t.name == name) {
                return Err(bad(format!("tools[{i}]: the name {name:?} is given twice")));
            }
            let parameters = match f.get("parameters") {
                None | Some(Value::Null) => json!({ "type": "object", "properties": {} }),
                Some(p @ Value::Object(_)) => p.clone(),
                Some(_) => return Err(bad(format!("tools[{i}] ({name}): parameters must be a JSON schema object"))),
            };
            tools.push(Tool { name: name.to_string(), parameters });
        }
        let choice = match choice {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "none" => ToolChoice::None,
                "auto" => ToolChoice::Auto,
                "required" => ToolChoice::Required,
                other => {
                    return Err(bad(format!(
                        "tool_choice {other:?}: \"none\", \"auto\", \"required\" or {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                    )))
                }
            },
            Some(c) => {
                let name = c.pointer("/function/name").and_then(Value::as_str).unwrap_or("");
                if c.get("type").and_then(Value::as_str) != Some("function") || name.is_empty() {
                    return Err(bad("tool_choice: an object names a function: {\"type\": \"function\", \"function\": {\"name\": ...}}".into()));
                }
                if !tools.iter().any(|t| t.name == name) {
                    return Err(bad(format!("tool_choice names {name:?}, which is not among the tools")));
                }
                ToolChoice::Function(name.to_string())
            }
        };
        Ok(Some(Tools { tools, choice, raw }))
    }

    /// Whether the model sees the tools and its reply is parsed (tool_choice is not "none").
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The grammar a "required" or named tool_choice puts on the output: one call in `format`, to
    /// one of the tools (or the named one), its arguments following that tool's parameters schema
    /// (compact JSON); None for "auto" and "none".
    pub fn grammar(&self, format: Format) -> Option<Grammar> {
        let allowed: Vec<&Tool> = match &self.choice {
            ToolChoice::None | ToolChoice::Auto => return None,
            ToolChoice::Required => self.tools.iter().collect(),
            ToolChoice::Function(name) => self.tools.iter().filter(|t| &t.name == name).collect(),
        };
        let key = match format {
            Format::Hermes => "arguments",
            Format::Llama => "parameters",
        };
        // call_<i>: "{\"name\": \"<name>\", \"arguments\": " %json{<schema>} "}"
        let mut lark = String::new();
        lark.push_str(match format {
            Format::Hermes => "start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\n",
            Format::Llama => "start: call\n",
        });
        let alts: Vec<String> = (0..allowed.len()).map(|i| format!("call_{i}")).collect();
        lark.push_str(&format!("call: {}\n", alts.join(" | ")));
        for (i, t) in allowed.iter().enumerate() {
            lark.push_str(&format!(
                "call_{i}: \"{{\\\"name\\\": \\\"{}\\\", \\\"{key}\\\": \" %json {} \"}}\"\n",
                t.name,
                compact_schema(&t.parameters)
            ));
        }
        Some(Grammar::Lark(lark))
    }

    /// Sets `opts.grammar` to the forced call's grammar ("required" or a named function): an
    /// InvalidRequest when the request has a response_format or grammar of its own.
    pub fn constrain(&self, opts: &mut GenerateOptions, format: Format) -> Result<()> {
        if let Some(g) = self.grammar(format) {
            if opts.grammar.is_some() {
                return Err(Error::InvalidRequest(
                    "tool_choice \"required\" or a named function constrains the output: give no response_format or grammar with it".into(),
                ));
            }
            opts.grammar = Some(g);
        }
        Ok(())
    }

    /// `text` split into content and calls (parse_reply), or all content when the tools are hidden.
    pub fn reply(&self, text: &str) -> Reply {
        if self.active() {
            parse_reply(text, &self.tools)
        } else {
            Reply { content: (!text.is_empty()).then(|| text.to_string()), calls: vec![] }
        }
    }
}

/// OpenAI's rule for function names: 1 to 64 letters, digits, `_` or `-`.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("the function name {name:?} must be 1 to {MAX_NAME} letters, digits, '_' or '-'"));
    }
    Ok(())
}

/// `schema` as a forced call's arguments follow it: llguidance's compact JSON layout (", " and
/// ": ", no free whitespace) unless it sets its own, since a small model given free whitespace may
/// write newlines without end; and an object with `properties` but no word on others takes no
/// others (as OpenAI's strict mode), since a small model otherwise pads the arguments with
/// inventions. What follows it follows the schema as given.
fn compact_schema(schema: &Value) -> Value {
    let mut s = schema.clone();
    if let Some(o) = s.as_object_mut() {
        if o.contains_key("properties") {
            o.entry("additionalProperties").or_insert(Value::Bool(false));
        }
        o.entry("x-guidance")
            .or_insert_with(|| json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " }));
    }
    s
}

/// The system prompt that offers `tools` to a model whose template has no place for them (Qwen
/// 2.5's wording of the Hermes format).
fn tools_prompt(tools: &Value) -> String {
    let lines: Vec<String> = tools.as_array().into_iter().flatten().map(|t| t.to_string()).collect();
    format!(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>",
        lines.join("\n")
    )
}

/// What `t` does with tools: each probe rendered with a marker name, a failing render counting as
/// "no" (a template may refuse a role it does not know).
pub fn caps(t: &ChatTemplate) -> Caps {
    const FN: &str = "probe_function_7f3a";
    const ARG: &str = "probe_argument_5e2b";
    const RESULT: &str = "probe_result_9c1e";
    let tools = json!([{ "type": "function", "function": { "name": FN, "description": "A probe.",
        "parameters": { "type": "object", "properties": { "x": { "type": "string" } } } } }]);
    let user = Message::new("user", "Hi");
    let call = Message {
        tool_calls: vec![
            json!({ "id": "call_probe", "type": "function", "function": { "name": FN, "arguments": { "x": ARG } } }),
        ],
        ..Message::new("assistant", "")
    };
    let answer =
        Message { tool_call_id: Some("call_probe".into()), name: Some(FN.into()), ..Message::new("tool", RESULT) };
    let tools = TemplateVars::tools(&tools);
    let with_tools = t.render_with(std::slice::from_ref(&user), &tools, true).unwrap_or_default();
    let called = t.render_with(&[user.clone(), call.clone()], &tools, false).unwrap_or_default();
    // The call alone (the tools' own text, rendered with them, names the function and "parameters").
    let call_alone = t.render(&[user.clone(), call.clone()], false).unwrap_or_default();
    let answered = t.render_with(&[user.clone(), call, answer], &tools, true).unwrap_or_default();
    let system = t.render(&[Message::new("system", RESULT), user], true).unwrap_or_default().contains(RESULT);
    let native = with_tools.contains(FN);
    let format = if with_tools.contains(OPEN) || called.contains(OPEN) || !native {
        Format::Hermes
    } else if call_alone.contains("\"parameters\"") {
        Format::Llama
    } else {
        Format::Hermes
    };
    Caps { tools: native, tool_calls: called.contains(ARG), tool_responses: answered.contains(RESULT), system, format }
}

/// The messages and tools to render for `messages` with `tools` on template `t` (whose `caps` are
/// given): the tools to the template where it renders them, else into the system prompt; assistant
/// tool_calls with their arguments as objects where it renders them, else written into the content
/// Hermes-style; tool results as `role: "tool"` messages where it renders their content (ChatML
/// templates render any role), else as a user message of `<tool_response>` blocks. Text the template sees outside message contents (tools,
/// calls) holding a special-token string is refused: only contents are kept plain.
pub fn prepare(
    caps: &Caps,
    tok: &Tokenizer,
    messages: &[Message],
    tools: Option<&Tools>,
) -> Result<(Vec<Message>, Option<Value>)> {
    let shown = tools.filter(|t| t.active());
    let mut out: Vec<Message> = Vec::with_capacity(messages.len() + 1);
    for (i, m) in messages.iter().enumerate() {
        // The template prints these as its own markup (only contents are kept as plain text), so a
        // special-token string in them would be a control token: refused.
        let fields = [("role", Some(&m.role)), ("name", m.name.as_ref()), ("tool_call_id", m.tool_call_id.as_ref())];
        if let Some((field, _)) = fields.iter().find(|(_, v)| v.is_some_and(|v| tok.has_special(v))) {
            return Err(Error::InvalidRequest(format!("message {i}'s {field} holds a special-token string")));
        }
        let mut m = m.clone();
        if !m.tool_calls.is_empty() {
            let calls: Vec<Value> = m.tool_calls.iter().map(template_call).collect::<Result<_>>()?;
            if caps.tool_calls {
                if tok.has_special(&Value::Array(calls.clone()).to_string()) {
                    return Err(Error::InvalidRequest("a tool call holds a special-token string".into()));
                }
                m.tool_calls = calls;
            } else {
                let blocks: Vec<String> = calls
                    .iter()
                    .map(|c| {
                        format!(
                            "{OPEN}\n{}\n{CLOSE}",
                            json!({ "name": c["function"]["name"], "arguments": c["function"]["arguments"] })
                        )
                    })
                    .collect();
                let text = blocks.join("\n");
                m.content = if m.content.is_empty() { text } else { format!("{}\n{text}", m.content) };
                m.tool_calls = vec![];
            }
        }
        if m.role == "tool" && !caps.tool_responses {
            let block = format!("<tool_response>\n{}\n</tool_response>", m.content);
            match out.last_mut() {
                // Consecutive results go in one user message.
                Some(prev) if prev.role == "user" && prev.content.ends_with("</tool_response>") => {
                    prev.content = format!("{}\n{block}", prev.content);
                }
                _ => out.push(Message::new("user", &block)),
            }
            continue;
        }
        out.push(m);
    }
    let Some(tools) = shown else { return Ok((out, None)) };
    if caps.tools {
        if tok.has_special(&tools.raw.to_string()) {
            return Err(Error::InvalidRequest("the tools hold a special-token string".into()));
        }
        return Ok((out, Some(tools.raw.clone())));
    }
    let prompt = tools_prompt(&tools.raw);
    match out.first_mut() {
        Some(first) if first.role == "system" => first.content = format!("{}\n\n{prompt}", first.content),
        _ => out.insert(0, Message::new("system", &prompt)),
    }
    // A template without a system role gets it at the head of the first user message.
    if !caps.system && out.len() > 1 && out[1].role == "user" {
        let system = out.remove(0);
        out[0].content = format!("{}\n\n{}", system.content, out[0].content);
    }
    Ok((out, None))
}

/// An OpenAI tool call ({id, type, function: {name, arguments: JSON text}}) as templates take it:
/// arguments as an object (text that is not JSON stays text).
fn template_call(c: &Value) -> Result<Value> {
    let name = c
        .pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::InvalidRequest("a message's tool_calls entry needs function.name".into()))?;
    let args = match c.pointer("/function/arguments") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
        Some(v) => v.clone(),
        None => json!({}),
    };
    let mut out = json!({ "type": "function", "function": { "name": name, "arguments": args } });
    if let Some(id) = c.get("id") {
        out["id"] = id.clone();
    }
    Ok(out)
}

/// Prompt ids for a chat with tools (prepare, then the template, which also sees `kwargs`, the
/// request's chat_template_kwargs): what Session::chat_ids gives when `tools` is None, `kwargs`
/// empty and the messages hold no tool calls or results.
pub fn chat_ids(
    t: &ChatTemplate,
    tok: &Tokenizer,
    messages: &[Message],
    tools: Option<&Tools>,
    kwargs: &TemplateKwargs,
) -> Result<Vec<u32>> {
    let (messages, raw) = prepare(&caps(t), tok, messages, tools)?;
    t.prompt_ids_with(tok, &messages, &TemplateVars { tools: raw, kwargs: kwargs.clone() })
}

/// `text` split into content and calls to `tools`, in any of the formats: Hermes `<tool_call>`
/// blocks (the last one may lack its closer), Mistral `[TOOL_CALLS]` or Granite `<|tool_call|>` with
/// a JSON array, or the
/// whole reply one Llama-style JSON object (after an optional `<|python_tag|>`). A call is
/// {"name", "arguments" | "parameters"} naming one of the tools; where any block is not such a call
/// (bad JSON, an unknown name) there are no calls and the whole text is content.
pub fn parse_reply(text: &str, tools: &[Tool]) -> Reply {
    let all_content = || Reply { content: (!text.is_empty()).then(|| text.to_string()), calls: vec![] };
    let known = |v: &Value| -> Option<ToolCall> {
        let name = v.get("name")?.as_str()?;
        tools.iter().find(|t| t.name == name)?;
        let args = match v.get("arguments").or_else(|| v.get("parameters")) {
            Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object)?,
            Some(a @ Value::Object(_)) => a.clone(),
            None => json!({}),
            Some(_) => return None,
        };
        Some(ToolCall { name: name.to_string(), arguments: args.to_string() })
    };
    if let Some(first) = text.find(OPEN) {
        let mut calls = vec![];
        let mut outside = text[..first].to_string();
        let mut rest = &text[first..];
        while let Some(at) = rest.find(OPEN) {
            outside.push_str(&rest[..at]);
            let body = &rest[at + OPEN.len()..];
            let (inner, after) = match body.find(CLOSE) {
                Some(end) => (&body[..end], &body[end + CLOSE.len()..]),
                None => (body, ""),
            };
            match serde_json::from_str::<Value>(inner.trim()).ok().as_ref().and_then(known) {
                Some(c) => calls.push(c),
                None => return all_content(),
            }
            rest = after;
        }
        outside.push_str(rest);
        let content = outside.trim();
        return Reply { content: (!content.is_empty()).then(|| content.to_string()), calls };
    }
    let trimmed = text.trim();
    if let Some(list) = trimmed.strip_prefix(MISTRAL_OPEN).or_else(|| trimmed.strip_prefix(GRANITE_OPEN)) {
        let calls: Option<Vec<ToolCall>> = match serde_json::from_str::<Value>(list.trim()) {
            Ok(Value::Array(a)) if !a.is_empty() => a.iter().map(known).collect(),
            _ => None,
        };
        return calls.map_or_else(all_content, |calls| Reply { content: None, calls });
    }
    let object = trimmed.strip_prefix(PYTHON_TAG).unwrap_or(trimmed).trim();
    if object.starts_with('{') {
        if let Some(c) = serde_json::from_str::<Value>(object).ok().as_ref().and_then(known) {
            return Reply { content: None, calls: vec![c] };
        }
    }
    all_content()
}

/// A call in OpenAI's shape: {id, type: "function", function: {name, arguments}}.
pub fn openai_call(c: &ToolCall, id: &str) -> Value {
    json!({ "id": id, "type": "function", "function": { "name": c.name, "arguments": c.arguments } })
}

/// The finish reason of a reply: "tool_calls" when it made calls, else the generation's own.
pub fn finish_reason(reply: &Reply, generation: FinishReason) -> &'static str {
    if reply.calls.is_empty() {
        generation.as_str()
    } else {
        "tool_calls"
    }
}

/// Streamed text with tool-call markup held back: a piece passes on up to where a call may begin
/// (an opener, or the start of one at its end; a reply that begins with `{`, `[TOOL_CALLS]`,
/// `<|tool_call|>` or `<|python_tag|>` is held whole); what was held is in the final reply (parse_reply).
#[derive(Debug, Default)]
pub struct StreamGuard {
    text: String,
    /// Bytes passed on.
    passed: usize,
    /// A call began: nothing more passes.
    holding: bool,
}

impl StreamGuard {
    /// Takes the next piece of the reply; returns the text that may be shown now.
    pub fn push(&mut self, piece: &str) -> String {
        self.text.push_str(piece);
        if self.holding {
            return String::new();
        }
        if self.passed == 0 {
            let start = self.text.trim_start();
            // Leading whitespace waits for what follows it; a reply that is (or may be) the start of
            // a whole-reply call (Llama's object, Mistral's list, the python tag) waits too.
            let whole = [MISTRAL_OPEN, GRANITE_OPEN, PYTHON_TAG];
            if start.is_empty() || whole.iter().any(|o| o.starts_with(start)) {
                return String::new();
            }
            if start.starts_with('{') || whole.iter().any(|o| start.starts_with(o)) {
                self.holding = true;
                return String::new();
            }
        }
        let upto = match self.text[self.passed..].find(OPEN) {
            Some(at) => {
                self.holding = true;
                self.passed + at
            }
            None => self.text.len() - partial_opener(&self.text[self.passed..]),
        };
        let out = self.text[self.passed..upto].to_string();
        self.passed = upto;
        out
    }

    /// The text passed on so far.
    pub fn passed(&self) -> &str {
        &self.text[..self.passed]
    }
}

/// The length of the longest suffix of `text` that begins `<tool_call>`.
fn partial_opener(text: &str) -> usize {
    (1..OPEN.len())
        .rev()
        .find(|&n| {
            text.len() >= n && text.is_char_boundary(text.len() - n) && OPEN.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}
