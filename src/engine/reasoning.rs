//! A reasoning model's thinking told apart from its answer (`reasoning_format: "parsed"`, as
//! llama.cpp's "deepseek" format): Qwen3, SmolLM3 and DeepSeek-R1's distills write
//! `<think>…</think>` before the answer, or only the `</think>` where the prompt opened the block
//! (the distills' templates end the prompt with `<think>\n`). The thinking goes to
//! `reasoning_content`, the rest to `content`; a reply that starts otherwise is all content.

/// Where a think block starts and ends.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// How a request wants the thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    /// In the text as the model wrote it (the default).
    #[default]
    None,
    /// Apart, as reasoning_content.
    Parsed,
}

impl ReasoningFormat {
    /// "none" or "parsed".
    pub fn parse(name: &str) -> Option<ReasoningFormat> {
        match name {
            "none" => Some(ReasoningFormat::None),
            "parsed" => Some(ReasoningFormat::Parsed),
            _ => None,
        }
    }
}

/// Whether a prompt's text (its end) leaves a think block open for the reply: it ends with
/// `<think>`, whitespace after it allowed.
pub fn prompt_opens_thinking(prompt_end: &str) -> bool {
    prompt_end.trim_end().ends_with(THINK_OPEN)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: the reply may still open a think block.
    Start,
    /// Inside the think block.
    Thinking,
    /// After `</think>`, its whitespace not yet past.
    Closed,
    /// The answer.
    Answer,
}

/// A reply split as it streams: each piece gives the thinking and the answer that may be shown
/// now; text that may be the start of a tag waits for the next piece.
#[derive(Debug, Clone)]
pub struct ReasoningSplit {
    state: State,
    /// Text taken but not yet given out (a possible tag, or leading whitespace).
    held: String,
    /// The thinking and the answer so far.
    reasoning: String,
    content: String,
}

impl ReasoningSplit {
    /// A split for a reply whose prompt left a think block open (`opened`) or not.
    pub fn new(opened: bool) -> ReasoningSplit {
        ReasoningSplit {
            state: if opened { State::Thinking } else { State::Start },
            held: String::new(),
            reasoning: String::new(),
            content: String::new(),
        }
    }

    /// Takes the next piece of the reply; returns (thinking, answer) that may be shown now.
    pub fn push(&mut self, piece: &str) -> (String, String) {
        self.held.push_str(piece);
        let (mut thought, mut said) = (String::new(), String::new());
        loop {
            match self.state {
                State::Start => {
                    let start = self.held.trim_start();
                    if let Some(rest) = start.strip_prefix(THINK_OPEN) {
                        self.held = rest.to_string();
                        self.state = State::Thinking;
                    } else if THINK_OPEN.starts_with(start) {
                        break; // whitespace, or a part of the opener: wait
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => match self.held.find(THINK_CLOSE) {
                    Some(at) => {
                        thought.push_str(&self.held[..at]);
                        self.held = self.held[at + THINK_CLOSE.len()..].to_string();
                        self.state = State::Closed;
                    }
                    None => {
                        let keep = partial_suffix(&self.held, THINK_CLOSE);
                        let upto = self.held.len() - keep;
                        thought.push_str(&self.held[..upto]);
                        self.held = self.held[upto..].to_string();
                        break;
                    }
                },
                State::Closed => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        break;
                    }
                    self.held = rest.to_string();
                    self.state = State::Answer;
                }
                State::Answer => {
                    said.push_str(&self.held);
                    self.held.clear();
                    break;
                }
            }
        }
        self.reasoning.push_str(&thought);
        self.content.push_str(&said);
        (thought, said)
    }

    /// Ends the reply: what was held goes where it was headed (an unclosed think block is all
    /// thinking; a reply that was only whitespace or a part of the opener is answer); returns it as
    /// push does.
    pub fn finish(&mut self) -> (String, String) {
        let held = std::mem::take(&mut self.held);
        let out = match self.state {
            State::Thinking => (held, String::new()),
            State::Closed => (String::new(), String::new()),
            State::Start | State::Answer => (String::new(), held),
        };
        self.reasoning.push_str(&out.0);
        self.content.push_str(&out.1);
        out
    }

    /// The thinking (None where the reply had no think block) and the answer, once finished.
    pub fn parts(&self) -> (Option<&str>, &str) {
        let thought = match self.state {
            State::Start | State::Answer if self.reasoning.is_empty() => None,
            _ => Some(self.reasoning.trim()),
        };
        (thought, &self.content)
    }
}

/// The length of the longest suffix of `text` that is a proper prefix of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| text.len() >= n && text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]))
        .unwrap_or(0)
}

/// A whole reply split (ReasoningSplit fed it at once): (thinking, answer).
pub fn split(text: &str, opened: bool) -> (Option<String>, String) {
    let mut s = ReasoningSplit::new(opened);
    s.push(text);
    s.finish();
    let (thought, said) = s.parts();
    (thought.map(str::to_string), said.to_string())
}
