//! webllama: a LLaMA-family decoder that runs as WGSL compute shaders on WebGPU (wgpu), in the
//! browser (wasm) and natively. Data flow: gguf -> config -> tokenizer -> chat -> model -> engine.

pub mod chat;
pub mod config;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod graph;
pub mod kernels;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod reference;
pub mod sampler;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;
pub mod weights;

pub use chat::{ChatTemplate, Message};
pub use config::Config;
pub use engine::{FinishReason, GenerateOptions, Generation, Session};
pub use error::{Error, Result};
pub use gguf::Gguf;
pub use gpu::Gpu;
pub use model::{Model, ModelBuilder};
pub use quant::QuantType;
pub use sampler::SamplerConfig;
pub use tokenizer::Tokenizer;
