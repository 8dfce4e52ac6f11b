//! The engine: a Session (model, tokenizer, chat template) that prefills, decodes, runs n
//! candidates side by side, samples, stops at end-of-generation or stop strings and streams text.

pub mod constraint;
pub mod logprobs;
mod options;
pub mod sampler;
mod session;

pub use options::parse_options;

pub use logprobs::{TokenLogprob, MAX_TOP_LOGPROBS};
pub use session::{FinishReason, GenerateOptions, Generation, Piece, Session};
