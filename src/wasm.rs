//! The browser facade (wasm32 only): the engine behind #[wasm_bindgen]. The worker streams a GGUF
//! into a Loader, which becomes an Engine; errors reach JS as Error objects whose name says what kind
//! of problem it is. No engine logic here.

use crate::engine::logprobs::{logprobs_json, vocab_bytes};
use crate::engine::reasoning::{prompt_opens_thinking, ReasoningFormat, ReasoningSplit};
use crate::engine::tools::{self, StreamGuard};
use crate::engine::{parse_request, Piece, Session, Text};
use crate::error::Error;
use crate::format::gguf::Gguf;
use crate::format::gguf_parse::HeaderStream;
use crate::format::integrity::Integrity;
use crate::format::split;
use crate::gpu::{Family, Gpu, Layout, Overrides};
use crate::model::ModelBuilder;
use crate::Message;
use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(start)]
fn start() {
    // A panic aborts (wasm traps), and the engine's state is lost with it: the message is logged
    // and kept on the global object as `webllamaPanic` for the worker's EngineCrashedError.
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        let _ = js_sys::Reflect::set(&js_sys::global(), &"webllamaPanic".into(), &info.to_string().into());
    }));
}

/// An Error -> a JS Error named after its kind (GgufError, UnsupportedModelError, GpuError, ...).
fn js_err(e: Error) -> JsValue {
    let name = match &e {
        Error::BadMagic { .. }
        | Error::UnsupportedVersion(_)
        | Error::Truncated { .. }
        | Error::OverLimit { .. }
        | Error::UnknownValueType { .. }
        | Error::BadMetadata { .. }
        | Error::BadTensor { .. }
        | Error::MissingKey(_)
        | Error::MissingTensor(_) => "GgufError",
        Error::UnsupportedType { .. } | Error::UnsupportedArch(_) | Error::BadConfig(_) => "UnsupportedModelError",
        Error::Tokenizer(_) => "TokenizerError",
        Error::Template(_) => "TemplateError",
        Error::Integrity(_) => "IntegrityError",
        Error::NoAdapter(_) | Error::DeviceRequest(_) | Error::Gpu(_) | Error::Shader { .. } => "GpuError",
        Error::ContextFull { .. } | Error::ContextTooLarge { .. } => "ContextLengthError",
        Error::OutOfMemory(_) => "GpuOutOfMemoryError",
        Error::DeviceLost(_) => "DeviceLostError",
        Error::AdapterTooSmall { .. } => "GpuError",
        Error::InvalidRequest(_) => "InvalidRequestError",
        Error::Io { .. } => "IoError",
    };
    let err = js_sys::Error::new(&e.to_string());
    err.set_name(name);
    err.into()
}

fn invalid(msg: String) -> JsValue {
    js_err(Error::InvalidRequest(msg))
}

/// A GGUF header read from a download's chunks as they arrive, each item once (linear in the
/// header's size, capped at MAX_HEADER); the bytes received are kept for the Loader.
#[wasm_bindgen]
pub struct HeaderReader {
    stream: HeaderStream,
    /// A split model's other parts, as `addPart` took them: their tensors and places.
    parts: Vec<split::Part>,
}

#[wasm_bindgen]
impl HeaderReader {
    /// A reader for a file of `total` bytes (undefined when the length is not known).
    #[wasm_bindgen(constructor)]
    pub fn new(total: Option<f64>) -> HeaderReader {
        HeaderReader { stream: HeaderStream::new(total.map(|t| t as u64)), parts: vec![] }
    }

    /// Takes the file's next bytes: true once the header is complete; a GgufError when the file
    /// cannot be a GGUF model or its header is too large.
    pub fn push(&mut self, bytes: &[u8]) -> Result<bool, JsValue> {
        self.stream.push(bytes).map_err(js_err)
    }

    /// The download ended: a GgufError naming what is missing when the header is not complete.
    pub fn end(&mut self) -> Result<(), JsValue> {
        self.stream.end().map_err(js_err)
    }

    /// Bytes received so far.
    #[wasm_bindgen(getter)]
    pub fn received(&self) -> f64 {
        self.stream.received() as f64
    }

    /// The number of files the model is split into (1: not split; llama.cpp's gguf-split), once the
    /// header is complete; a GgufError when this file is not the first part.
    #[wasm_bindgen(js_name = splitCount)]
    pub fn split_count(&self) -> Result<u32, JsValue> {
        let g = self.stream.header().ok_or_else(|| invalid("the GGUF header is not complete yet".into()))?;
        split::parts_of(g, 0).map(|c| c as u32).map_err(js_err)
    }

    /// Takes `part`, the complete header of the split model's next part (a file of `len` bytes);
    /// returns the bytes it received past the part's header (its first tensor data), for the Loader
    /// at their place in the whole: the received bytes' end less their length. The header's own
    /// bytes hold no tensor, and are not kept.
    #[wasm_bindgen(js_name = addPart)]
    pub fn add_part(&mut self, part: HeaderReader, len: f64) -> Result<Vec<u8>, JsValue> {
        let (g, mut received) =
            part.stream.into_parts().ok_or_else(|| invalid("the part's GGUF header is not complete yet".into()))?;
        received.drain(..(g.data_offset as usize).min(received.len()));
        g.check_file_len(len as u64).map_err(js_err)?;
        let first = self.stream.header().map_or(0, |g| g.tensors.len());
        let held = first + self.parts.iter().map(split::Part::tensors).sum::<usize>();
        self.parts.push(split::Part::read(g, self.parts.len() as u64 + 1, len as u64, held).map_err(js_err)?);
        Ok(received)
    }
}

/// Bytes of wasm memory now (it only grows, so this is also the peak).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    let mem: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    mem.buffer().unchecked_into::<js_sys::ArrayBuffer>().byte_length() as f64
}

/// A model on its way to the GPU: fed the file's bytes in order.
#[wasm_bindgen]
pub struct Loader {
    header: Gguf,
    builder: ModelBuilder,
    /// The tokenizer and chat template, made (and checked) before any weight byte is fed.
    text: Text,
    adapter: String,
    /// The SHA-256 the caller asked for, computed over every byte fed.
    integrity: Option<Integrity>,
}

#[wasm_bindgen]
impl Loader {
    /// Opens the GPU and checks the model: `header` has read the whole GGUF header (it is taken,
    /// with every byte it received, which are fed first), `total` is the file size when known,
    /// `ctx` the KV-cache positions (default: the file's, at most 4096), `layout` the kernel family
    /// ("gpu" or "cpu"; default: the adapter's), `integrity` the SHA-256 (64 hex digits) every byte
    /// fed must hash to: `finish` refuses the model otherwise; `subgroups` false keeps the kernels off
    /// subgroup operations (default: used where the device has them).
    pub async fn create(
        header: HeaderReader,
        total: Option<f64>,
        ctx: Option<u32>,
        layout: Option<String>,
        integrity: Option<String>,
        subgroups: Option<bool>,
    ) -> Result<Loader, JsValue> {
        let integrity = integrity.map(|hex| Integrity::new(&hex)).transpose().map_err(js_err)?;
        let family = match layout.as_deref() {
            None => None,
            Some(name) => Some(
                Family::parse(name)
                    .ok_or_else(|| invalid(format!("layout {name:?}: the layouts are \"gpu\" and \"cpu\"")))?,
            ),
        };
        let first_len = header.stream.file_len();
        let (g, received) =
            header.stream.into_parts().ok_or_else(|| invalid("the GGUF header is not complete yet".into()))?;
        // A split model: the parts read one after the other as one file (the first part's length
        // must be known to place the others).
        let parts = split::parts_of(&g, 0).map_err(js_err)?;
        let g = match (parts, first_len) {
            (1, _) => g,
            (_, Some(first_len)) => split::merge(g, header.parts, first_len).map_err(js_err)?,
            (_, None) => return Err(invalid("a split model's first part must have a known length".into())),
        };
        if let Some(t) = total {
            g.check_file_len(t as u64).map_err(js_err)?;
        }
        // The engine shares the device through an Arc (natively across threads); the browser's
        // WebGPU objects are neither Send nor Sync, and a page's wasm runs on one thread.
        #[allow(clippy::arc_with_non_send_sync)]
        let gpu = Arc::new(Gpu::new().await.map_err(js_err)?);
        let adapter = gpu.adapter_name();
        let layout = Layout::choose(&gpu, &Overrides { subgroups, ..Overrides::default().with_family(family) });
        let mut builder = ModelBuilder::new(gpu, layout, &g, ctx.map(|c| c as usize)).map_err(js_err)?;
        let text = Text::from_gguf(&g, builder.cfg.vocab_size).map_err(js_err)?;
        // The KV cache and activations first: a GPU too small for them says so before the download.
        builder.reserve().await.map_err(js_err)?;
        let mut loader = Loader { header: g, builder, text, adapter, integrity };
        loader.feed(0.0, &received)?;
        Ok(loader)
    }

    /// First file byte the model needs.
    #[wasm_bindgen(getter, js_name = rangeStart)]
    pub fn range_start(&self) -> f64 {
        self.builder.byte_range().0 as f64
    }

    /// End of the last byte the model needs.
    #[wasm_bindgen(getter, js_name = rangeEnd)]
    pub fn range_end(&self) -> f64 {
        self.builder.byte_range().1 as f64
    }

    /// End of the last tensor's data in the file (the tensors the model does not read too): the
    /// least a file of unknown length holds.
    #[wasm_bindgen(getter, js_name = dataEnd)]
    pub fn data_end(&self) -> f64 {
        self.header.data_end() as f64
    }

    /// The file's bytes at `offset`, in file order.
    pub fn feed(&mut self, offset: f64, bytes: &[u8]) -> Result<(), JsValue> {
        if let Some(check) = &mut self.integrity {
            check.update(offset as u64, bytes).map_err(js_err)?;
        }
        self.builder.feed(offset as u64, bytes).map_err(js_err)
    }

    /// The model's shape and name, as JSON.
    pub fn info(&self) -> String {
        let c = &self.builder.cfg;
        let (weights, kv, acts) = self.builder.memory_needed();
        serde_json::json!({
            "gpu_bytes": { "weights": weights, "kv_cache": kv, "activations": acts },
            "kv_positions": self.builder.context_length(),
            "name": self.header.get("general.name").and_then(|v| v.as_str()).unwrap_or(""),
            "architecture": c.arch,
            "n_layers": c.n_layers, "dim": c.dim, "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads,
            "vocab_size": c.vocab_size, "context_length": c.ctx_len, "adapter": self.adapter,
            "layout": self.builder.layout().to_string(),
        })
        .to_string()
    }

    /// Builds the engine once every byte has arrived.
    pub async fn finish(self) -> Result<Engine, JsValue> {
        // Every byte fed is checked before the model is usable.
        if let Some(check) = self.integrity {
            check.check().map_err(js_err)?;
        }
        let model = self.builder.finish_checked().await.map_err(js_err)?;
        // What the engine reports without borrowing the session, which a running generation holds.
        let cost = serde_json::json!({
            "dispatches_per_token": model.dispatches_per_token(),
            "submits_per_token": 1,
            "readback_bytes_per_token": 4,
            "weight_bytes_per_token": model.weight_bytes,
            "n_layers": model.cfg.n_layers,
        })
        .to_string();
        let (context_length, device) = (model.context_length() as u32, model.device());
        let session = Session::with_text(model, self.text);
        Ok(Engine {
            session: Rc::new(RefCell::new(session)),
            adapter: self.adapter,
            cost,
            context_length,
            device,
            vocab: Rc::default(),
        })
    }
}

/// A loaded model, ready to generate.
#[wasm_bindgen]
pub struct Engine {
    session: Rc<RefCell<Session>>,
    adapter: String,
    /// costPerToken's JSON.
    cost: String,
    context_length: u32,
    /// The model's device (loseDevice works while a generation holds the session).
    device: Arc<Gpu>,
    /// Every token's bytes (engine::logprobs::vocab_bytes), made at the first request for logprobs.
    vocab: Rc<OnceCell<Vec<Vec<u8>>>>,
}

#[wasm_bindgen]
impl Engine {
    /// Prompt ids for chat messages given as JSON [{role, content, tool_calls?, tool_call_id?}, ...],
    /// with the model's template; `options_json` (the request's options, as generate takes them)
    /// brings the tools and tool_choice (engine::tools) and the chat_template_kwargs.
    #[wasm_bindgen(js_name = chatIds)]
    pub fn chat_ids(&self, messages_json: &str, options_json: Option<String>) -> Result<Vec<u32>, JsValue> {
        let messages: Vec<Message> =
            serde_json::from_str(messages_json).map_err(|e| invalid(format!("messages: {e}")))?;
        let (tools, kwargs) = match options_json {
            Some(o) => parse_request(&o).map(|r| (r.tools, r.template_kwargs)).map_err(js_err)?,
            None => Default::default(),
        };
        let s = self.session.try_borrow().map_err(|_| invalid("a generation is running".into()))?;
        s.chat_ids_with(&messages, tools.as_ref(), &kwargs).map_err(js_err)
    }

    /// Prompt ids for raw text (special-token strings parsed, bos added as the model says).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        let s = self.session.try_borrow().map_err(|_| invalid("a generation is running".into()))?;
        s.tokenizer.encode(text, true).map_err(js_err)
    }

    /// Generates from `prompt_ids` (options.n candidates, default 1); `on_text(piece, index,
    /// logprobs)` is called with each piece of candidate `index`'s text (and, when options.logprobs
    /// asks, the JSON of its tokens' log-probabilities since the previous piece) and returns false to
    /// stop. Resolves to the result as JSON: choices [{index, ids, text, finish_reason, logprobs?,
    /// content?, tool_calls?}], usage and timings. Log-probabilities: [{id, token, bytes, logprob,
    /// text_offset, top_logprobs: [{id, token, bytes, logprob}]}] (engine::logprobs::logprobs_json).
    /// With tools (options.tools, tool_choice not "none"), the pieces hold back call markup
    /// (tools::StreamGuard) and each choice has `content` (its text outside calls, or null) and
    /// `tool_calls` [{name, arguments}], its finish_reason "tool_calls" when it made any. With
    /// reasoning_format "parsed", `on_text`'s fourth argument is the piece's thinking (the text its
    /// answer), and each choice has `reasoning_content` (null where it did not think) and `content`.
    #[allow(clippy::await_holding_refcell_ref)] // the session's borrow, on purpose (below)
    pub fn generate(&self, prompt_ids: Vec<u32>, options_json: &str, on_text: js_sys::Function) -> js_sys::Promise {
        let session = self.session.clone();
        let vocab = self.vocab.clone();
        let request = parse_request(options_json);
        wasm_bindgen_futures::future_to_promise(async move {
            let crate::engine::Request { mut opts, n, tools, reasoning, .. } = request.map_err(js_err)?;
            let tools = tools.filter(|t| t.active());
            // Held across the generation's awaits on purpose: a second request while it runs finds
            // the session borrowed and is refused (one thread; nothing else can take it meanwhile).
            let mut s = session.try_borrow_mut().map_err(|_| invalid("a generation is already running".into()))?;
            // The callback names tokens while the generation holds the session: the vocabulary's
            // bytes, made once per engine.
            let vocab = opts.logprobs.is_some().then(|| vocab.get_or_init(|| vocab_bytes(&s.tokenizer)).as_slice());
            if let Some(t) = &tools {
                t.constrain(&mut opts, s.tool_caps().format).map_err(js_err)?;
            }
            // With reasoning_format "parsed", each choice's thinking apart from its answer (a prompt
            // that ends with <think> has left the block open).
            let parsed = reasoning == ReasoningFormat::Parsed;
            let opened = parsed
                && s.tokenizer
                    .decode(&prompt_ids[prompt_ids.len().saturating_sub(4)..])
                    .is_ok_and(|end| prompt_opens_thinking(&end));
            let mut splits: Vec<ReasoningSplit> = (0..n).map(|_| ReasoningSplit::new(opened)).collect();
            let mut guards: Vec<StreamGuard> = (0..n).map(|_| StreamGuard::default()).collect();
            // What the callback threw: it stops the generation, and the request rejects with it.
            let mut thrown: Option<JsValue> = None;
            let mut cb = |p: Piece<'_>| {
                let (thought, said) = match parsed {
                    true => splits[p.index].push(p.text),
                    false => (String::new(), p.text.to_string()),
                };
                let shown = match &tools {
                    Some(_) => guards[p.index].push(&said),
                    None => said,
                };
                let lps = match vocab {
                    Some(v) => JsValue::from_str(&logprobs_json(v, p.logprobs).to_string()),
                    None => JsValue::UNDEFINED,
                };
                let (text, index, thought) =
                    (JsValue::from_str(&shown), JsValue::from(p.index as u32), JsValue::from_str(&thought));
                match on_text.call4(&JsValue::NULL, &text, &index, &lps, &thought) {
                    Ok(v) => v.as_bool() != Some(false),
                    Err(e) => {
                        thrown.get_or_insert(e);
                        false
                    }
                }
            };
            let passes = s.model.batch_passes;
            let all = s.generate_pieces(&prompt_ids, n, &opts, &mut cb).await.map_err(js_err)?;
            if let Some(e) = thrown {
                return Err(e);
            }
            let g = &all[0];
            let completion_tokens: usize = all.iter().map(|g| g.ids.len()).sum();
            let choices: Vec<_> = all
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    let mut c = serde_json::json!({ "index": i, "ids": g.ids, "text": g.text, "finish_reason": g.finish_reason.as_str() });
                    if let Some(v) = vocab {
                        c["logprobs"] = logprobs_json(v, &g.logprobs);
                    }
                    // The answer: the text, or with reasoning parsed what follows the thinking.
                    let mut answer = g.text.as_str();
                    if parsed {
                        splits[i].finish();
                        let (thought, said) = splits[i].parts();
                        c["reasoning_content"] = thought.into();
                        c["content"] = said.into();
                        answer = said;
                    }
                    if let Some(t) = &tools {
                        let reply = t.reply(answer);
                        let calls: Vec<_> = reply
                            .calls
                            .iter()
                            .map(|c| serde_json::json!({ "name": c.name, "arguments": c.arguments }))
                            .collect();
                        c["finish_reason"] = tools::finish_reason(&reply, g.finish_reason).into();
                        c["content"] = reply.content.into();
                        c["tool_calls"] = calls.into();
                    }
                    c
                })
                .collect();
            let out = serde_json::json!({
                "choices": choices,
                "prompt_tokens": g.prompt_ids.len(), "completion_tokens": completion_tokens, "prefilled": g.prefilled,
                "prefill_ms": g.prefill_ms, "decode_ms": g.decode_ms,
                "prefill_tok_s": g.prefill_tok_s(),
                "decode_tok_s": completion_tokens.saturating_sub(all.len()) as f64 / (g.decode_ms / 1000.0).max(1e-9),
                "batch_passes": s.model.batch_passes - passes,
                "gpu_buffers_created": s.model.buffers_created(),
            });
            Ok(JsValue::from_str(&out.to_string()))
        })
    }

    /// What one decoded token costs, as JSON: dispatches, submits, bytes read back, weight bytes.
    #[wasm_bindgen(js_name = costPerToken)]
    pub fn cost_per_token(&self) -> String {
        self.cost.clone()
    }

    /// Test hook: a panic inside an async call, as a bug in a generation would make (the wasm traps
    /// in a microtask, outside any call the worker awaits).
    #[wasm_bindgen(js_name = crashForTest)]
    pub fn crash_for_test(&self) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async { panic!("a panic the crash test asked for") })
    }

    /// Destroys the GPU device as a driver reset would (a test hook for device loss): later calls
    /// fail with a DeviceLostError; a new engine gets a new device.
    #[wasm_bindgen(js_name = loseDevice)]
    pub fn lose_device(&self) {
        self.device.lose_device();
    }

    /// Forgets the KV cache (the next request prefills from scratch).
    pub fn reset(&self) -> Result<(), JsValue> {
        self.session.try_borrow_mut().map_err(|_| invalid("a generation is running".into()))?.reset();
        Ok(())
    }

    /// The GPU adapter's name.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        self.adapter.clone()
    }

    /// KV-cache positions (prompt plus generated tokens).
    #[wasm_bindgen(getter, js_name = contextLength)]
    pub fn context_length(&self) -> u32 {
        self.context_length
    }
}
