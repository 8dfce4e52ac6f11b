//! The crate's one error type: every failure names what went wrong (key, tensor, sizes, limits).

use thiserror::Error;

/// Everything that can go wrong while reading a model, building it on the GPU or generating.
#[derive(Debug, Error)]
pub enum Error {
    #[error("not a GGUF file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (supported: 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("GGUF file is truncated: {what} needs bytes up to offset {needed}, but the file has {available}")]
    Truncated { what: String, needed: u64, available: u64 },
    #[error("GGUF {what} is {value}, over the limit of {limit}")]
    OverLimit { what: String, value: u64, limit: u64 },
    #[error("GGUF metadata key {key:?}: unknown value type id {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("GGUF metadata key {key:?}: {msg}")]
    BadMetadata { key: String, msg: String },
    #[error("GGUF tensor {tensor:?}: {msg}")]
    BadTensor { tensor: String, msg: String },
    #[error("tensor {tensor:?} has type {type_name}, which webllama does not support yet")]
    UnsupportedType { tensor: String, type_name: String },
    #[error("missing metadata key {0:?}")]
    MissingKey(String),
    #[error("missing tensor {0:?}")]
    MissingTensor(String),
    #[error("model config: {0}")]
    BadConfig(String),
    #[error(
        "unsupported architecture {0:?} (webllama runs llama, qwen2, qwen3, phi3, granite, gemma2, gemma3 and smollm3)"
    )]
    UnsupportedArch(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    #[error("GPU device request failed: {0}")]
    DeviceRequest(String),
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("the GPU device was lost ({0}); load the model again to go on")]
    DeviceLost(String),
    #[error("shader {name}: {msg}")]
    Shader { name: String, msg: String },
    #[error("a context of {requested} positions needs {per_layer_bytes} bytes of KV cache per layer, over the adapter's storage-binding limit of {limit} bytes: use a context of at most {fits} positions")]
    ContextTooLarge { requested: usize, per_layer_bytes: u64, limit: u64, fits: usize },
    #[error("the GPU cannot hold the model: {0}")]
    OutOfMemory(String),
    #[error("the adapter allows {have} storage buffers per shader stage; webllama's kernels bind {need}")]
    AdapterTooSmall { have: u32, need: u32 },
    #[error("the prompt and generation need {needed} positions but the context holds {limit}")]
    ContextFull { needed: usize, limit: usize },
    #[error("{0}")]
    Integrity(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("I/O error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Result with the crate's Error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
