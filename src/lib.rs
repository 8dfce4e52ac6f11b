//! webllama: a LLaMA-family decoder that runs as WGSL compute shaders on WebGPU (wgpu), in the
//! browser (wasm) and natively. Data flow: format (GGUF) -> text (tokenizer, chat template) -> gpu
//! (device, Layout, WGSL composition) -> kernels -> model (weights, graphs) -> engine (Session).

pub mod engine;
pub mod error;
pub mod format;
pub mod gpu;
pub mod kernels;
pub mod model;
pub mod reference;
pub mod text;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use engine::sampler::SamplerConfig;
pub use engine::{FinishReason, GenerateOptions, Generation, Session};
pub use error::{Error, Result};
pub use format::config::Config;
pub use format::gguf::Gguf;
pub use format::quant::QuantType;
pub use gpu::{Family, Gpu, Layout, Overrides};
pub use model::{Model, ModelBuilder};
pub use text::chat::{ChatTemplate, Message};
pub use text::tokenizer::Tokenizer;
