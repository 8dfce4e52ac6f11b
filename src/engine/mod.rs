//! The engine: a Session (model, tokenizer, chat template) that prefills, decodes, runs n
//! candidates side by side, samples, stops at end-of-generation or stop strings and streams text.

pub mod constraint;
mod options;
pub mod sampler;
mod session;

pub use options::parse_options;

pub use session::{FinishReason, GenerateOptions, Generation, Session};
