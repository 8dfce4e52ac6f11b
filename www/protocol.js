// The message kinds between the page-side proxy (webllama.js) and the worker (worker.js): the one
// list both import. Every request carries an `id`; replies carry the id of the request they answer.
// The worker runs requests one at a time, in order (ABORT and LOSE_DEVICE at once).
export const MSG = Object.freeze({
  // proxy -> worker
  LOAD: 'load',         // {id, model: URL string | File | Blob, ctx?, integrity?} -> PROGRESS*, LOADED | ERROR
  GENERATE: 'generate', // {id, mode: 'chat'|'completion', messages|prompt, options, truncate?} -> TOKEN*, DONE | ERROR
  ABORT: 'abort',       // {upTo?, ids?} stops the generations of requests with ids up to upTo, and of those in ids, running or queued (no reply)
  RESET: 'reset',       // {id} forgets the KV cache                            -> DONE
  UNLOAD: 'unload',     // {id} drops the engine and its GPU buffers            -> DONE
  LOSE_DEVICE: 'lose-device', // {id} destroys the GPU device at once, not in turn (a test hook) -> DONE
  CRASH: 'crash',       // {id} panics inside an async wasm call (a test hook)  -> ERROR (EngineCrashedError)
  GPU_ERROR: 'gpu-error', // {id} raises an internal error on the engine's GPU device, as a browser reports one (a test hook) -> DONE
  // worker -> proxy
  PROGRESS: 'progress', // {id, phase: 'download'|'upload'|'compile', source: 'network'|'cache'|'file', loaded, total, resumedFrom, mbPerS, etaS, elapsedMs}
  LOADED: 'loaded',     // {id, info: {name, n_layers, ..., adapter}, stats: {loadMs, wasmMemoryBytes, source, storage: 'opfs'|'cache'|'none', resumedFrom, phases, bytes, cost}}
  TOKEN: 'token',       // {id, text, index, logprobs?: [{id, token, bytes, logprob, text_offset, top_logprobs}]}
  DONE: 'done',         // {id, result}
  ERROR: 'error',       // {id, error: {name, message}}
});

// Every error name a request may reject with (webllama.d.ts's WebllamaErrorName); the worker reports
// any other as a WorkerError.
export const ERROR_NAMES = Object.freeze(['InvalidRequestError', 'NetworkError', 'IntegrityError', 'AbortError', 'GgufError',
  'UnsupportedModelError', 'TokenizerError', 'TemplateError', 'ContextLengthError', 'GpuError', 'GpuOutOfMemoryError',
  'DeviceLostError', 'IoError', 'EngineCrashedError', 'WorkerError']);
