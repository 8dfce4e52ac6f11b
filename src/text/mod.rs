//! Text in and out: the tokenizer built from the GGUF's vocabulary and the chat template.

pub mod chat;
pub mod template_limits;
pub mod tokenizer;
