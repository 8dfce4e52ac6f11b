//! The GGUF file: its reader (header, metadata, tensor index), the model's Config, every ggml
//! tensor type's block layout and CPU dequantizer, and the tensor names the decoder reads.

pub mod config;
pub mod gguf;
pub mod gguf_parse;
pub mod gguf_write;
pub mod integrity;
pub mod quant;
pub mod split;
pub mod weights;
