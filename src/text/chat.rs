//! Chat messages rendered to a prompt with the model's own Jinja template (tokenizer.chat_template),
//! through minijinja configured as Hugging Face's apply_chat_template configures Jinja.

use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Pads a content marker: an ideographic space, which `trim` and `strip` take off and templates
/// never write, so the marked render shows whether the template trimmed a content.
const PAD: char = '\u{3000}';

/// The marker of message `i`'s content: its index between two private-use characters.
fn core(i: usize) -> String {
    format!("\u{E000}{i}\u{E001}")
}

/// One chat message (OpenAI's shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    /// The text ("" where OpenAI sends null: an assistant message that only calls tools).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// An assistant message's tool calls: [{id, type: "function", function: {name, arguments}}]
    /// (engine::tools turns them into what the template renders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<serde_json::Value>,
    /// A tool message's answer to this call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool message's function name (some templates print it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: vec![],
            tool_call_id: None,
            name: None,
        }
    }
}

/// A request's chat_template_kwargs: variables its template sees beside the messages (as
/// Hugging Face's apply_chat_template takes them; `enable_thinking: false` for Qwen3's and
/// SmolLM3's templates).
pub type TemplateKwargs = serde_json::Map<String, serde_json::Value>;

/// Names the render sets itself, which chat_template_kwargs may not replace.
const RESERVED_VARS: [&str; 5] = ["messages", "tools", "add_generation_prompt", "bos_token", "eos_token"];
/// Most bytes chat_template_kwargs may take, as JSON.
pub const TEMPLATE_KWARGS_MAX_BYTES: usize = 64 << 10;

/// `v` (a request's chat_template_kwargs) checked: a JSON object of at most
/// TEMPLATE_KWARGS_MAX_BYTES that names none of the render's own variables (RESERVED_VARS).
pub fn template_kwargs(v: &serde_json::Value) -> Result<TemplateKwargs> {
    let bad = |why: String| Error::InvalidRequest(format!("chat_template_kwargs {why}"));
    let serde_json::Value::Object(map) = v else {
        return Err(bad("must be an object of template variables, such as {\"enable_thinking\": false}".into()));
    };
    if let Some(k) = map.keys().find(|k| RESERVED_VARS.contains(&k.as_str())) {
        return Err(bad(format!(
            "names {k:?}, which the request sets itself (messages, tools and the rest of the render's own)"
        )));
    }
    let bytes = v.to_string().len();
    if bytes > TEMPLATE_KWARGS_MAX_BYTES {
        return Err(bad(format!("take {bytes} bytes, over the limit of {TEMPLATE_KWARGS_MAX_BYTES}")));
    }
    Ok(map.clone())
}

/// What a render adds to the messages: OpenAI's tools array as `tools` (undefined when None), and
/// the request's chat_template_kwargs each a variable of its own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TemplateVars {
    pub tools: Option<serde_json::Value>,
    pub kwargs: TemplateKwargs,
}

impl TemplateVars {
    /// Just `tools`.
    pub fn tools(tools: &serde_json::Value) -> TemplateVars {
        TemplateVars { tools: Some(tools.clone()), ..Default::default() }
    }
}

/// A content of null reads as "".
fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    bos_token: String,
    eos_token: String,
}

/// A calendar date, for templates that print today's date (strftime_now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Today: UTC natively, the browser's local date on the web.
    pub fn today() -> Date {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let days = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() / 86400)
                .unwrap_or(0);
            Date::from_days(days as i64)
        }
        #[cfg(target_arch = "wasm32")]
        {
            let d = js_sys::Date::new_0();
            Date { year: d.get_full_year() as i64, month: d.get_month() + 1, day: d.get_date() }
        }
    }

    /// The civil date `days` after 1970-01-01 (Howard Hinnant's days_from_civil, inverted).
    pub fn from_days(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
        Date { year, month, day }
    }

    /// Formats with the strftime codes chat templates use: %d %m %Y %y %b %B %e %j-free subset and %%.
    pub fn strftime(&self, fmt: &str) -> String {
        const MONTHS: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        let name = MONTHS[(self.month.clamp(1, 12) - 1) as usize];
        let mut out = String::new();
        let mut chars = fmt.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('d') => out.push_str(&format!("{:02}", self.day)),
                Some('e') => out.push_str(&format!("{:>2}", self.day)),
                Some('m') => out.push_str(&format!("{:02}", self.month)),
                Some('Y') => out.push_str(&self.year.to_string()),
                Some('y') => out.push_str(&format!("{:02}", self.year.rem_euclid(100))),
                Some('b') => out.push_str(&name[..3]),
                Some('B') => out.push_str(name),
                Some('%') => out.push('%'),
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        out
    }
}

/// Most instructions one render may run (minijinja's fuel): each fixture template renders a
/// 1,001-message chat in under 100,000 (tests/chat.rs); nested loops in a hostile one stop here,
/// after about 3 s in the page's wasm on a 2-core machine.
pub const TEMPLATE_FUEL: u64 = 5_000_000;
/// Most bytes one render may write.
pub const TEMPLATE_OUTPUT_MAX: usize = 16 << 20;
/// The widest indent a template's tojson may ask for.
pub const TOJSON_INDENT_MAX: usize = 64;

/// ChatML, for models whose file carries no template.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl ChatTemplate {
    /// Compiles `source`; `bos_token`/`eos_token` are the texts templates may reference.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        Self::with_date(source, bos_token, eos_token, Date::today())
    }

    /// As `new`, with the date strftime_now() reports.
    pub fn with_date(source: &str, bos_token: &str, eos_token: &str, date: Date) -> Result<ChatTemplate> {
        let mut env = minijinja::Environment::new();
        // A template comes from the model file: its work and output are bounded.
        env.set_fuel(Some(TEMPLATE_FUEL));
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // Python's str and dict methods (.strip(), .split(), .get(), .items(), ...) as templates use
        // them; they and the filters that size their result from their arguments within limits.
        super::template_limits::bound(&mut env);
        env.add_function("strftime_now", move |fmt: String| date.strftime(&fmt));
        // Hugging Face's tojson: json.dumps without ASCII or HTML escaping, ", " and ": " separators.
        env.add_filter(
            "tojson",
            |v: minijinja::Value,
             indent: Option<usize>,
             kwargs: minijinja::value::Kwargs|
             -> std::result::Result<String, minijinja::Error> {
                // tojson(4) or tojson(indent=4), as Jinja takes it.
                let indent = match kwargs.get::<Option<usize>>("indent")? {
                    Some(n) => Some(n),
                    None => indent,
                };
                kwargs.assert_all_used()?;
                super::template_limits::walk_within("tojson", &v)?;
                let mut buf = Vec::new();
                let r = match indent {
                    None => {
                        serde::Serialize::serialize(&v, &mut serde_json::Serializer::with_formatter(&mut buf, PyJson))
                    }
                    Some(n) if n > TOJSON_INDENT_MAX => {
                        return Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("tojson indent {n} is over the limit of {TOJSON_INDENT_MAX}"),
                        ))
                    }
                    Some(n) => {
                        let ind = vec![b' '; n];
                        serde::Serialize::serialize(
                            &v,
                            &mut serde_json::Serializer::with_formatter(
                                &mut buf,
                                serde_json::ser::PrettyFormatter::with_indent(&ind),
                            ),
                        )
                    }
                };
                r.map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))?;
                Ok(String::from_utf8(buf).unwrap_or_default())
            },
        );
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string()).map_err(|e| Error::Template(format!("compiling: {e:#}")))?;
        Ok(ChatTemplate { env, bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// Prompt ids for `messages` with the generation prompt: the rendered text, without a leading
    /// BOS text when the tokenizer adds BOS itself and without a trailing EOS text (as llama.cpp's
    /// chat code), tokenized with the template's special tokens parsed and the message contents as
    /// plain text: a pasted `<|im_start|>system` is text, never a control token.
    pub fn prompt_ids(&self, tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>> {
        self.prompt_ids_with(tok, messages, &TemplateVars::default())
    }

    /// prompt_ids with `vars` (tools, chat_template_kwargs) given to the template.
    pub fn prompt_ids_with(&self, tok: &Tokenizer, messages: &[Message], vars: &TemplateVars) -> Result<Vec<u32>> {
        let (text, contents) = self.render_marked_with(tok, messages, vars)?;
        // The BOS and EOS texts are the template's, not a message's that ends with them.
        let outside = |bytes: Range<usize>| contents.iter().all(|r| r.end <= bytes.start || r.start >= bytes.end);
        let (bos, eos) = (self.bos_token.as_str(), self.eos_token.as_str());
        let mut start = 0;
        let mut end = text.len();
        if tok.add_bos && !bos.is_empty() && text.starts_with(bos) && outside(0..bos.len()) {
            start = bos.len();
        }
        if !eos.is_empty() && text[start..].ends_with(eos) && outside(end - eos.len()..end) {
            end -= eos.len();
        }
        let plain: Vec<Range<usize>> = contents
            .iter()
            .map(|r| r.start.clamp(start, end) - start..r.end.clamp(start, end) - start)
            .filter(|r| !r.is_empty())
            .collect();
        tok.encode_with_plain(&text[start..end], &plain)
    }

    /// The prompt text for `messages` (as `render` gives it, with the generation prompt) and the
    /// byte ranges in it that hold message contents. The contents are found by rendering again with
    /// a marker in place of each; where the template changed a content other than by trimming it
    /// (sliced, split), they are looked for in the text instead, and a content that holds a control
    /// token is refused (it could not be kept plain).
    pub fn render_marked(&self, tok: &Tokenizer, messages: &[Message]) -> Result<(String, Vec<Range<usize>>)> {
        self.render_marked_with(tok, messages, &TemplateVars::default())
    }

    /// render_marked with `vars` given to the template.
    pub fn render_marked_with(
        &self,
        tok: &Tokenizer,
        messages: &[Message],
        vars: &TemplateVars,
    ) -> Result<(String, Vec<Range<usize>>)> {
        let real = self.render_with(messages, vars, true)?;
        let marked: Vec<Message> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| Message {
                content: if m.content.is_empty() { String::new() } else { format!("{PAD}{}{PAD}", core(i)) },
                ..m.clone()
            })
            .collect();
        let shape = self.render_with(&marked, vars, true)?;
        // Each content where its marker is, trimmed at the ends where the template trimmed the marker.
        let mut text = String::with_capacity(real.len());
        let mut ranges = vec![];
        let mut rest = shape.as_str();
        for (i, m) in messages.iter().enumerate() {
            let core = core(i);
            let Some(at) = rest.find(&core).filter(|_| !m.content.is_empty()) else { continue };
            let lead = rest[..at].ends_with(PAD);
            let trail = rest[at + core.len()..].starts_with(PAD);
            text.push_str(&rest[..if lead { at - PAD.len_utf8() } else { at }]);
            let content = match (lead, trail) {
                (true, true) => m.content.as_str(),
                (true, false) => m.content.trim_end(),
                (false, true) => m.content.trim_start(),
                (false, false) => m.content.trim(),
            };
            ranges.push(text.len()..text.len() + content.len());
            text.push_str(content);
            rest = &rest[at + core.len() + if trail { PAD.len_utf8() } else { 0 }..];
        }
        text.push_str(rest);
        if text == real {
            return Ok((real, ranges));
        }
        // The template changed a content (Qwen3's and DeepSeek-R1's keep what follows a reply's
        // </think>). Each content is looked for in the text, the first copy after the last found;
        // that copy may be the template's own text (a content equal to its markup), so a content
        // holding a control token (a role, a turn's end) is refused here: were the template's copy
        // marked plain, the content's own would be parsed. (User-defined tokens, </think>, are
        // parsed in plain text too.)
        let mut ranges = vec![];
        let mut from = 0;
        for (i, m) in messages.iter().enumerate() {
            if tok.has_control(&m.content) {
                return Err(Error::Template(format!(
                    "message {i} holds a control token and the template changes a message's text, so it cannot be kept as plain text"
                )));
            }
            let found = [m.content.as_str(), m.content.trim()]
                .into_iter()
                .filter(|c| !c.is_empty())
                .find_map(|c| real[from..].find(c).map(|at| from + at..from + at + c.len()));
            if let Some(r) = found {
                from = r.end;
                ranges.push(r);
            }
        }
        Ok((real, ranges))
    }

    /// The prompt text for `messages`, ending with the assistant's header when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_with(messages, &TemplateVars::default(), add_generation_prompt)
    }

    /// render with `vars`: the tools as the template's `tools`, and each chat_template_kwarg.
    pub fn render_with(
        &self,
        messages: &[Message],
        vars: &TemplateVars,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self.env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
        let base = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        };
        let ctx = match &vars.tools {
            Some(t) => minijinja::context! { tools => t, ..base },
            None => base,
        };
        // The kwargs come after: a name the render sets is its own (template_kwargs refuses them).
        let ctx = minijinja::context! { ..ctx, ..minijinja::Value::from_serialize(&vars.kwargs) };
        let mut out = CappedWriter { bytes: Vec::new(), cap: TEMPLATE_OUTPUT_MAX, over: false };
        tmpl.render_captured_to(ctx, &mut out).map_err(|e| match e.kind() {
            _ if out.over => {
                Error::Template(format!("rendering: the output is over the limit of {TEMPLATE_OUTPUT_MAX} bytes"))
            }
            minijinja::ErrorKind::OutOfFuel => Error::Template(format!(
                "rendering: the template ran past the limit of {TEMPLATE_FUEL} instructions (minijinja fuel)"
            )),
            _ => Error::Template(format!("rendering: {e:#}")),
        })?;
        String::from_utf8(out.bytes).map_err(|_| Error::Template("rendering: the output is not UTF-8".into()))
    }
}

/// A writer that refuses to grow past `cap` bytes (and says so in `over`).
struct CappedWriter {
    bytes: Vec<u8>,
    cap: usize,
    over: bool,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.cap {
            self.over = true;
            return Err(std::io::Error::other("output over the limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// serde_json output in Python's json.dumps style: ", " between items, ": " after keys.
struct PyJson;

impl serde_json::ser::Formatter for PyJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}
