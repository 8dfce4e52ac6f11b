//! The engine: a Session (model, tokenizer, chat template) that prefills, decodes, runs n
//! candidates side by side, samples, stops at end-of-generation or stop strings and streams text;
//! tool calls (tools.rs) offered through the chat template and parsed back from the reply; a
//! reasoning model's thinking told apart from its answer (reasoning.rs).

pub mod constraint;
pub mod logprobs;
mod options;
pub mod reasoning;
pub mod sampler;
mod session;
pub mod tools;
mod track;

pub use options::{parse_options, parse_request, Request};

pub use logprobs::{TokenLogprob, MAX_TOP_LOGPROBS};
pub use session::{FinishReason, GenerateOptions, Generation, Piece, Session, Text};
