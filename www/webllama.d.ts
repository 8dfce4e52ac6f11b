// TypeScript declarations for webllama.js, the public API: the engine, requests and responses in
// OpenAI's shapes (with webllama's extras), progress events, the storage API and every named error.
// Checked by `tsc --noEmit` on examples/typed/ (tests/browser/package.test.mjs).

/** A model source: an http(s) URL (relative URLs mean what they mean in the page),
 * `hf:owner/repo/file.gguf` (optionally `hf:owner/repo@revision/file.gguf` or `...file.gguf@revision`),
 * or a File/Blob (e.g. from an `<input type="file">`). A split model (`NAME-00001-of-0000N.gguf`, ...)
 * is given by its first part's URL (the other parts are fetched from beside it) or by all its parts
 * as Files. */
export type ModelSource = string | Blob | File[];

/** The kernel family: `gpu` (real GPUs) or `cpu` (adapters whose type is CPU, e.g. SwiftShader). */
export type LayoutFamily = 'gpu' | 'cpu';

/** Where the model's bytes came from in a load. */
export type LoadSource = 'network' | 'cache' | 'file';

/** Where stored models live: the Origin Private File System (`opfs`, where the browser has it: large
 * files without Cache API quota failures, and downloads that survive a reload), Cache Storage
 * (`cache`, otherwise), or nowhere (`none`: no storage in this context, or a File). */
export type StorageKind = 'opfs' | 'cache' | 'none';

/** The phases of a load: `download` (network bytes, each fed to the GPU as it arrives), `upload`
 * (bytes from the cache or a File going to the GPU), `compile` (pipelines and session, once every
 * byte is there). */
export type LoadPhase = 'download' | 'upload' | 'compile';

export interface ProgressEvent {
  phase: LoadPhase;
  source: LoadSource;
  /** Bytes read so far in this load. */
  loaded: number;
  /** The file's size, when the server said (null for a body sent without Content-Length). */
  total: number | null;
  /** Bytes of `loaded` that were already stored from an earlier, unfinished download of the URL (kept
   * in OPFS across a reload) and read back from there; 0 when the download started from byte 0. */
  resumedFrom: number;
  /** This load's rate in MB/s (10^6 bytes; network bytes only in a resumed download); in the
   * compile phase, the rate the bytes came at. */
  mbPerS: number;
  /** Seconds of bytes left at that rate; null when the total is unknown; 0 in the compile phase. */
  etaS: number | null;
  /** Milliseconds since the load began. */
  elapsedMs: number;
}

export interface CreateEngineOptions {
  /** The model: a URL, an `hf:` source, a File/Blob, or a split model's parts as Files. */
  model: ModelSource;
  onProgress?: (progress: ProgressEvent) => void;
  /** KV-cache positions (default: the model's context length, at most 4096 and what the GPU can bind). */
  ctx?: number;
  /** The file's SHA-256: `sha256-<base64>` (as in Subresource Integrity) or 64 hex digits. */
  integrity?: string;
  /** Forces a kernel family (default: the adapter's). */
  layout?: LayoutFamily;
  /** false: no kernel uses subgroup operations (default: used where the browser offers them). */
  subgroups?: boolean;
  /** Cancels the load: the promise rejects with an AbortError. */
  signal?: AbortSignal;
  /** Where worker.js is (default: beside webllama.js, found with import.meta.url). */
  workerUrl?: string | URL;
  /** How long a download may wait for its next bytes before it is resumed (default 30000 ms). */
  stallTimeoutMs?: number;
  /** Asks navigator.storage.persist() so that the stored model is not evicted; see stats.persisted. */
  persist?: boolean;
  /** The host `hf:` sources resolve against (default https://huggingface.co). */
  hfBaseUrl?: string;
}

export type Role = 'system' | 'user' | 'assistant' | 'tool' | (string & {});

export interface ChatMessage {
  role: Role;
  /** null only on an assistant message that calls tools. */
  content: string | null;
  /** An assistant message's calls (as a reply gave them), sent back with the tools' results. */
  tool_calls?: ToolCall[];
  /** A `role: "tool"` message: the call it answers. */
  tool_call_id?: string;
  /** A `role: "tool"` message: the function's name (some templates print it). */
  name?: string;
}

/** A function the model may call (OpenAI's shape). `parameters` is a JSON schema; a forced call's
 * arguments follow it (constrained decoding). */
export interface FunctionTool {
  type: 'function';
  function: { name: string; description?: string; parameters?: object; strict?: boolean };
}

/** "auto" (default): the model may call; "none": the tools are hidden; "required" or a named
 * function: one call, its arguments constrained to the function's schema. */
export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };

/** A call the model made: `arguments` is JSON text. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** A streamed call: the whole call in one chunk, `index` its place among the choice's calls. */
export interface ToolCallDelta extends ToolCall {
  index: number;
}

/** The sampling options both request kinds take. */
export interface SamplingOptions {
  /** Accepted and ignored (the engine runs the model it loaded). */
  model?: string;
  /** 0 is greedy (default 1). */
  temperature?: number;
  top_p?: number;
  /** 0: off. */
  top_k?: number;
  min_p?: number;
  /** Default 256. */
  max_tokens?: number;
  /** The same seed gives the same text natively and in the browser; without one, each request
   *  draws its own (asked again, a sampled reply differs). */
  seed?: number;
  /** 1 to 8 candidates decoded side by side. */
  n?: number;
  /** Up to 4 non-empty strings; the text before the first one found is returned. */
  stop?: string | string[];
  ignore_eos?: boolean;
  frequency_penalty?: number;
  presence_penalty?: number;
  /** llama.cpp's repetition penalty (1: off). */
  repetition_penalty?: number;
  /** How many recent tokens the penalties look at (default 64). */
  penalty_last_n?: number;
  /** Token id (as a string key) -> a bias added to its logit. */
  logit_bias?: Record<string, number>;
  /** Accepted (OpenAI's); usage always comes with the last streamed chunk. */
  stream_options?: { include_usage?: boolean };
  user?: string;
  /** Structured output: any JSON object, or JSON that follows a schema (each of `n` candidates). */
  response_format?: ResponseFormat;
  /** Output that matches a Lark grammar (llguidance's dialect) or a regular expression. */
  grammar?: Grammar;
}

/** OpenAI's response_format. With `max_tokens` reached first, `finish_reason` is "length" and the
 * text is the start of a valid output, cut. A schema the library refuses is an InvalidRequestError. */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; json_schema: { name?: string; description?: string; schema: object; strict?: boolean } };

export type Grammar = { type: 'lark'; definition: string } | { type: 'regex'; definition: string };

export interface ChatCompletionRequest extends SamplingOptions {
  messages: ChatMessage[];
  stream?: boolean;
  /** Each generated token's log-probability (choices[i].logprobs.content). */
  logprobs?: boolean;
  /** 0 to 20 most likely tokens per step with each (needs logprobs: true; default 0). */
  top_logprobs?: number;
  /** "oldest": a chat that does not fit the context loses its oldest turns (after any system message). */
  truncate?: 'oldest';
  /** Functions the model may call: given to the chat template, or offered in the system prompt
   * (Hermes-style `<tool_call>`) where the template has no place for them. */
  tools?: FunctionTool[];
  tool_choice?: ToolChoice;
  /** Variables for the model's chat template, e.g. `{ enable_thinking: false }` (Qwen3 and SmolLM3
   * answer without thinking first); the names the template is given anyway (messages, tools,
   * add_generation_prompt, bos_token, eos_token) are refused. */
  chat_template_kwargs?: Record<string, unknown>;
  /** "parsed": a reasoning model's `<think>…</think>` (Qwen3, SmolLM3, DeepSeek-R1's distills) goes
   * to `reasoning_content`, apart from the answer in `content`; "none" (the default) leaves it in
   * the text. */
  reasoning_format?: 'none' | 'parsed';
}

export interface CompletionRequest extends SamplingOptions {
  /** A raw prompt: special-token strings are parsed, as in llama.cpp; or token ids, used as they are. */
  prompt: string | number[];
  stream?: boolean;
  /** Each generated token's log-probability and this many (0 to 20) most likely tokens per step. */
  logprobs?: number | null;
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'tool_calls';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** webllama's extra: what the request cost. */
export interface Timings {
  prefill_tok_s: number;
  decode_tok_s: number;
  prefill_ms: number;
  decode_ms: number;
  /** Prompt tokens actually run (a chat's cached prefix is not run again). */
  prefilled_tokens: number;
  /** Weight passes (one per decode step for all candidates together, plus the prefill's). */
  batch_passes: number;
}

/** A token's log-probability: the log-softmax of the model's raw logits over the vocabulary (before
 * penalties, temperature, truncation or a grammar's mask). `token` is its bytes as UTF-8 (a token
 * that ends inside a character has U+FFFD there). */
export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  /** The most likely tokens of the step, most likely first (top_logprobs of them). */
  top_logprobs: TopLogprob[];
}

/** Chat's logprobs (OpenAI's shape): one entry per generated token; a streamed chunk's are its tokens'. */
export interface ChatLogprobs {
  content: TokenLogprob[];
}

/** Completions' logprobs (OpenAI's legacy shape). */
export interface CompletionLogprobs {
  tokens: string[];
  token_logprobs: number[];
  /** Per token, the most likely tokens of its step: token -> logprob. */
  top_logprobs: Record<string, number>[];
  /** Where each token's text begins in the choice's text (JS string indices). */
  text_offset: number[];
}

/** A reply: its text, or with tools the text outside its calls (null when there is none) and the
 * calls (finish_reason "tool_calls"). */
export interface AssistantMessage {
  role: 'assistant';
  content: string | null;
  /** With reasoning_format "parsed": the thinking (null where the model did not think). */
  reasoning_content?: string | null;
  tool_calls?: ToolCall[];
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: { index: number; message: AssistantMessage; logprobs: ChatLogprobs | null; finish_reason: FinishReason }[];
  usage: Usage;
  timings: Timings;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: { index: number; delta: { role?: 'assistant'; content?: string; reasoning_content?: string; tool_calls?: ToolCallDelta[] }; logprobs: ChatLogprobs | null; finish_reason: FinishReason | null }[];
  /** On the last chunk only. */
  usage?: Usage;
  /** On the last chunk only. */
  timings?: Timings;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: CompletionLogprobs | null; finish_reason: FinishReason }[];
  usage: Usage;
  timings: Timings;
}

export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: { index: number; text: string; logprobs: CompletionLogprobs | null; finish_reason: FinishReason | null }[];
  /** On the last chunk only. */
  usage?: Usage;
  /** On the last chunk only. */
  timings?: Timings;
}

/** What the loader read from the model's header. */
export interface ModelInfo {
  name: string;
  n_layers: number;
  dim: number;
  n_heads: number;
  n_kv_heads: number;
  vocab_size: number;
  context_length: number;
  kv_positions: number;
  adapter: string;
  layout: string;
  gpu_bytes: { weights: number; kv_cache: number; activations: number };
}

export interface EngineStats {
  /** The browser's words for the GPU adapter. */
  adapter: string | null;
  /** The kernel family that ran and its options, e.g. "cpu (subgroups 8, ...)". */
  layout?: string;
  /** Where the model's bytes came from in this load. */
  source: LoadSource | null;
  /** Where the model is stored for the next load. */
  storage: StorageKind | null;
  /** Bytes this load continued from an unfinished download kept in OPFS (0: none). */
  resumed_from: number | null;
  /** Whether the browser agreed to persist storage (createEngine's persist; null when not asked, or
   * not answered yet: the load does not wait for the answer). */
  persisted: boolean | null;
  /** Each load phase's time (and bytes). */
  phases?: Partial<Record<LoadPhase, { ms: number; bytes?: number }>>;
  prefill_tok_s: number | null;
  decode_tok_s: number | null;
  load_ms: number | null;
  wasm_memory_bytes: number | null;
  gpu_buffers_created?: number;
  model: string | null;
  dispatches_per_token: number | null;
  submits_per_token: number | null;
  readback_bytes_per_token: number | null;
  weight_bytes_per_token: number | null;
  n_layers: number | null;
  info?: ModelInfo;
}

export interface ChatCompletions {
  create(request: ChatCompletionRequest & { stream: true }): AsyncGenerator<ChatCompletionChunk, void, undefined>;
  create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
  create(request: ChatCompletionRequest): Promise<ChatCompletion> | AsyncGenerator<ChatCompletionChunk, void, undefined>;
}

export interface Completions {
  create(request: CompletionRequest & { stream: true }): AsyncGenerator<CompletionChunk, void, undefined>;
  create(request: CompletionRequest & { stream?: false }): Promise<Completion>;
  create(request: CompletionRequest): Promise<Completion> | AsyncGenerator<CompletionChunk, void, undefined>;
}

export interface Engine {
  readonly chat: { completions: ChatCompletions };
  readonly completions: Completions;
  readonly stats: EngineStats;
  /**
   * Stops the running generation at the next token (finish_reason "abort"); the generations made
   * before this call that wait their turn reject with an AbortError. An engine runs one request at a time, in
   * the order they were made: one made while a generation runs waits for it.
   */
  abort(): void;
  /** Forgets the conversation's cached prefix (after the request running now). */
  resetChat(): Promise<void>;
  /**
   * Stops the running generation (finish_reason "abort"; requests waiting their turn reject with an
   * AbortError), frees the GPU buffers and ends the worker; later requests reject with an
   * InvalidRequestError. A worker that does not stop within 10 s (a chat template that never ends)
   * is ended anyway: then the running request and those waiting reject with the
   * InvalidRequestError.
   */
  unload(): Promise<void>;
  /** @internal Test hook: destroys the GPU device as a driver reset would. */
  _loseDevice(): Promise<void>;
  /** @internal Test hook: a panic inside an async wasm call (an EngineCrashedError). */
  _crash(): Promise<void>;
}

/** Loads a model in a worker and resolves once it is ready to generate. */
export function createEngine(options: CreateEngineOptions): Promise<Engine>;

/** A model source as the absolute URL a load fetches (hf: sources and relative URLs resolved). */
export function resolveModelUrl(model: string, options?: { hfBaseUrl?: string }): string;

/** The default host of hf: sources. */
export const HF_BASE_URL: string;

export interface CachedModel {
  url: string;
  /** Bytes stored: the file's size when complete, what has arrived so far when not (null when unknown). */
  bytes: number | null;
  /** The file's size (null when unknown). */
  total: number | null;
  /** false: a download that broke off (or whose page was closed), kept in OPFS; the next
   * createEngine for the URL continues it from `bytes`. */
  complete: boolean;
  /** When it was stored (ms since 1970), null when unknown. */
  storedAt: number | null;
  /** Its SHA-256 was checked against `integrity` in a load. */
  verified: boolean;
  /** The digest it verified against (hex), when verified. */
  sha256: string | null;
  storage: StorageKind;
}

export interface StorageEstimateResult {
  /** Bytes this origin uses (the browser's estimate), null when the browser does not say. */
  usage: number | null;
  /** Bytes this origin may use. */
  quota: number | null;
  /** Whether storage is persistent (not evicted under pressure). */
  persisted: boolean | null;
  storage: StorageKind;
}

/** The models the browser keeps for this origin (OPFS and Cache Storage), and unfinished downloads. */
export function listCachedModels(): Promise<CachedModel[]>;
/** Drops one stored model or unfinished download; true when it was there. */
export function deleteCachedModel(model: string, options?: { hfBaseUrl?: string }): Promise<boolean>;
/** Drops every stored model and unfinished download; the number dropped. */
export function clearCache(): Promise<number>;
/** The browser's storage estimate for this origin. */
export function storageEstimate(): Promise<StorageEstimateResult>;

/** The `name` of every error webllama rejects with. */
export type WebllamaErrorName =
  | 'InvalidRequestError' // a request or option that is not valid (names the field)
  | 'NetworkError' // HTTP errors, CORS, CSP, a download that broke off, a file that changed on the server
  | 'IntegrityError' // the SHA-256 does not match `integrity`
  | 'AbortError' // createEngine's signal fired, or abort() stopped a request before it ran
  | 'GgufError' // a malformed or truncated GGUF file
  | 'UnsupportedModelError' // an architecture or tensor type webllama does not run
  | 'TokenizerError'
  | 'TemplateError' // the chat template failed or ran past a limit
  | 'ContextLengthError' // the prompt and max_tokens do not fit the context
  | 'GpuError' // no WebGPU adapter or device, or a GPU failure
  | 'GpuOutOfMemoryError' // the model does not fit the GPU
  | 'DeviceLostError' // the GPU device was lost; a new createEngine works
  | 'IoError'
  | 'EngineCrashedError' // the engine's wasm trapped (a panic, or out of wasm memory): its worker is ended and every later request fails; a new createEngine works
  | 'WorkerError'; // the worker failed to start or crashed

export interface WebllamaError extends Error {
  name: WebllamaErrorName;
  /** The worker's wasm memory when the error happened (null when not known). */
  wasmMemoryBytes?: number | null;
}
