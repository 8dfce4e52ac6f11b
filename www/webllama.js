// webllama's public JS API (OpenAI-shaped): a proxy to the worker that owns the wasm engine and the
// GPU. Message kinds: protocol.js. Types: webllama.d.ts.
//
//   import { createEngine } from './webllama.js';
//   const engine = await createEngine({ model: urlOrFile, onProgress });
//   for await (const chunk of engine.chat.completions.create({ messages, stream: true }))
//     out += chunk.choices[0].delta.content ?? '';
//
// The worker and the wasm are found relative to this module's own URL (new URL(..., import.meta.url)),
// so the same files work from a static folder, a CDN path or node_modules through a bundler. A
// relative model URL is resolved here, against the page (document.baseURI), before the worker sees it.
import { MSG } from './protocol.js';
import { listCached, deleteCached, clearCached, storageKind } from './model_store.js';

// Request fields accepted now; the rest of OpenAI's are refused by name until they are implemented.
// (frequency_penalty and presence_penalty may be negative, as in OpenAI's API.)
const SUPPORTED = new Set(['messages', 'prompt', 'model', 'stream', 'temperature', 'top_p', 'top_k', 'min_p', 'max_tokens', 'seed', 'n', 'stop',
  'ignore_eos', 'stream_options', 'user', 'frequency_penalty', 'presence_penalty', 'repetition_penalty', 'penalty_last_n', 'logit_bias', 'truncate',
  'response_format', 'grammar', 'logprobs', 'top_logprobs', 'tools', 'tool_choice', 'chat_template_kwargs', 'reasoning_format']);

// The most alternatives logprobs may ask for per token (as OpenAI's chat completions).
const MAX_TOP_LOGPROBS = 20;
// How long unload() waits for the worker to stop its generation and free the GPU buffers before
// it ends the worker anyway (a generation stops within a token; a stuck template never does).
const UNLOAD_GRACE_MS = 10000;

// Where hf:owner/repo/file.gguf points by default.
export const HF_BASE_URL = 'https://huggingface.co';

// ctx: KV-cache positions (default: the model's context length, capped by what the GPU can bind).
// integrity: the file's SHA-256 (sha256-<base64> or hex), checked before the download is cached.
// layout: the kernel family, "gpu" or "cpu" (default: the adapter's; engine.stats.layout says which ran).
// subgroups: false keeps the kernels off subgroup operations (default: used where the browser offers them).
// signal: an AbortSignal that cancels the load (the promise rejects with an AbortError).
// stallTimeoutMs: how long a download may wait for its next bytes before it counts the connection
// as broken and resumes it (default 30000).
// persist: ask the browser (navigator.storage.persist()) not to evict the stored model under storage
// pressure (asked beside the load, which does not wait for the answer); engine.stats.persisted says
// whether it agreed (null until it answers).
// hfBaseUrl: the Hugging Face host that hf: model sources resolve against (default HF_BASE_URL).
// workerUrl: where worker.js is (default: beside this file). By default the worker is asked for with
// ?model_origin=<the model URL's origin>: a server that answers with a Content-Security-Policy
// naming that origin (as `webllama serve` does) lets the worker connect to its own origin and the
// model's host, nowhere else.
export async function createEngine({ model, onProgress, ctx, integrity, layout, subgroups, signal, workerUrl, stallTimeoutMs, persist, hfBaseUrl, _failBuffers } = {}) {
  const aborted = () => named('AbortError', 'the model load was cancelled');
  if (signal?.aborted) throw aborted();
  // The options the worker hands to wasm as they are: checked here, by name.
  if (model === '' || model == null) throw named('InvalidRequestError', 'no model: give a URL or a File');
  if (ctx !== undefined && !(Number.isSafeInteger(ctx) && ctx >= 1 && ctx < 2 ** 32)) throw named('InvalidRequestError', `ctx must be a whole number of positions from 1 to 2^32 - 1, not ${String(ctx)}`);
  if (layout !== undefined && typeof layout !== 'string') throw named('InvalidRequestError', `layout must be "gpu" or "cpu", not ${String(layout)}`);
  if (subgroups !== undefined && typeof subgroups !== 'boolean') throw named('InvalidRequestError', `subgroups must be true or false, not ${String(subgroups)}`);
  // A URL string means what it means in the page: resolved here, not against the worker's location.
  // A split model: its first part's URL (the others are beside it), or all its parts as Files.
  if (Array.isArray(model) && (model.length === 0 || !model.every((f) => typeof Blob !== 'undefined' && f instanceof Blob))) {
    throw named('InvalidRequestError', 'model as an array: the parts of a split model, as Files');
  }
  const source = typeof model === 'string' && model !== '' ? resolveModelUrl(model, { hfBaseUrl }) : model;
  // Asked beside the load, not before it: a browser may hold the answer until the user gives one.
  const persisting = persist ? askPersist() : null;
  const worker = workerUrl ? startWorker(workerUrl) : spawnWorker(source);
  const engine = new Engine(worker);
  const cancel = () => engine._failAll(aborted());
  signal?.addEventListener('abort', cancel);
  try {
    // (_failBuffers: a test hook, GPU buffers by label whose first creation fails: worker.js.)
    await engine._request({ kind: MSG.LOAD, model: source, ctx, integrity, layout, subgroups, stallTimeoutMs, failBuffers: _failBuffers }, { onProgress });
  } catch (e) {
    worker.terminate();
    throw e;
  } finally {
    signal?.removeEventListener('abort', cancel);
  }
  // Whether the browser agreed; null while it has not answered (set when it does).
  if (persisting) {
    persisting.then((agreed) => { engine.stats.persisted = agreed; });
    engine.stats.persisted = await Promise.race([persisting, new Promise((ok) => { setTimeout(() => ok(null), 0); })]);
  }
  return engine;
}

// A model source as an absolute URL: hf:owner/repo/path/file.gguf (optionally hf:owner/repo@rev/...
// or .../file.gguf@rev) becomes <hfBaseUrl>/owner/repo/resolve/<rev or main>/path/file.gguf; any
// other string is a URL relative to the page (document.baseURI; a worker's own location there).
export function resolveModelUrl(model, { hfBaseUrl } = {}) {
  if (typeof model !== 'string' || model === '') throw named('InvalidRequestError', 'no model: give a URL or a File');
  if (model.startsWith('hf:')) {
    const m = /^hf:([^/@\s]+)\/([^/@\s]+)(?:@([^/\s]+))?\/([^@\s]+?)(?:@([^/@\s]+))?$/.exec(model);
    if (!m || (m[3] && m[5])) throw named('InvalidRequestError', `model ${JSON.stringify(model)}: an hf: source is hf:owner/repo/file.gguf, optionally with @revision after the repo or the file`);
    const [, owner, repo, revAtRepo, path, revAtFile] = m;
    const rev = revAtRepo ?? revAtFile ?? 'main';
    let base;
    try {
      base = new URL(hfBaseUrl ?? HF_BASE_URL, pageBase());
    } catch {
      throw named('InvalidRequestError', `hfBaseUrl ${JSON.stringify(hfBaseUrl)} is not a URL`);
    }
    const dir = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
    const file = path.split('/').map(encodeURIComponent).join('/');
    return new URL(`${dir}${encodeURIComponent(owner)}/${encodeURIComponent(repo)}/resolve/${encodeURIComponent(rev)}/${file}`, base).href;
  }
  try {
    return new URL(model, pageBase()).href;
  } catch {
    throw named('InvalidRequestError', `model ${JSON.stringify(model)} is not a URL`);
  }
}

// A request's seed where it names none: its own, as OpenAI's API draws one (asked again, a
// sampled reply differs); 32 bits, exact as a JSON number.
function randomSeed() {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

// A result's timings, as the API gives them.
function timingsOf(res) {
  return { prefill_tok_s: res.prefill_tok_s, decode_tok_s: res.decode_tok_s, prefill_ms: res.prefill_ms, decode_ms: res.decode_ms, prefilled_tokens: res.prefilled, batch_passes: res.batch_passes };
}

function pageBase() {
  return typeof document !== 'undefined' && document.baseURI ? document.baseURI : self.location.href;
}

// worker.js beside this module. Written as the literal new Worker(new URL('./worker.js',
// import.meta.url)) that bundlers (Vite, webpack, Parcel) recognize and bundle as a module worker,
// wasm included. Unbundled (this file is still webllama.js, served over http(s): webpack makes
// import.meta.url a file: URL) and with a model on another origin, the worker is asked for with
// ?model_origin=<that origin> (the CSP that `webllama serve` gives it). Imported from another
// origin (a CDN), where a browser starts no worker, it is started from a module of this page's
// origin (a blob: URL) that imports worker.js from there: its scripts, wasm and imports still come
// from the CDN (which must allow CORS, as jsDelivr and unpkg do), and the page's CSP must allow
// blob: workers (worker-src blob:).
function spawnWorker(model) {
  const origin = typeof model === 'string' ? new URL(model).origin : null;
  const here = new URL(import.meta.url);
  const unbundled = /^https?:$/.test(here.protocol) && /\/webllama\.js$/.test(here.pathname);
  if (unbundled) {
    const url = new URL(/* webpackIgnore: true */ 'worker' + '.js', import.meta.url);
    if (here.origin !== self.location.origin) {
      const shim = URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};\n`], { type: 'text/javascript' }));
      try {
        return startWorker(shim);
      } finally {
        // The worker has fetched it by now (a Worker's script is resolved as it is made).
        URL.revokeObjectURL(shim);
      }
    }
    if (origin && origin !== 'null' && origin !== self.location.origin) {
      url.searchParams.set('model_origin', origin);
      return startWorker(url);
    }
  }
  try {
    return new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  } catch (e) {
    throw workerError(e);
  }
}

// A module worker from `url`; a browser's refusal (a SecurityError: another origin, a CSP) as a
// WorkerError.
function startWorker(url) {
  try {
    return new Worker(url, { type: 'module' });
  } catch (e) {
    throw workerError(e);
  }
}

function workerError(e) {
  return named('WorkerError', `the worker could not be started (${e?.name ?? 'Error'}: ${e?.message ?? String(e)}): worker.js must be on the page's origin, or the page's CSP must allow blob: workers for a CDN import`);
}

async function askPersist() {
  try {
    return (await navigator.storage?.persisted?.()) || (await navigator.storage?.persist?.()) || false;
  } catch {
    return false;
  }
}

// The models the browser keeps for this origin, and the downloads it keeps to continue: [{url, bytes
// (kept so far), total (the file's size, or null), storedAt (ms since 1970, or null when unknown),
// verified (its SHA-256 was checked with integrity), sha256 (hex, when verified), storage ('opfs' or
// 'cache'), complete (false: a download that the next createEngine for the URL continues)}].
export async function listCachedModels() {
  return listCached();
}

// Drops one stored model or kept download (a URL or hf: source as given to createEngine); true when
// one was there.
export async function deleteCachedModel(model, { hfBaseUrl } = {}) {
  return deleteCached(resolveModelUrl(model, { hfBaseUrl }));
}

// Drops every stored model and kept download; the number dropped.
export async function clearCache() {
  return clearCached();
}

// {usage, quota (bytes, the browser's estimate for this origin), persisted, storage}.
export async function storageEstimate() {
  const est = (await navigator.storage?.estimate?.()) ?? {};
  let persisted = null;
  try { persisted = (await navigator.storage?.persisted?.()) ?? null; } catch { /* not offered */ }
  return { usage: est.usage ?? null, quota: est.quota ?? null, persisted, storage: storageKind() };
}

class Engine {
  constructor(worker) {
    this._worker = worker;
    this._nextId = 1;
    this._pending = new Map();
    this._crashed = null; // the EngineCrashedError that ended the worker, once one has
    this._closed = null; // the error every request gets once unload() has ended the worker
    this.stats = { storage: null, persisted: null, source: null, resumed_from: null, adapter: null, prefill_tok_s: null, decode_tok_s: null, load_ms: null, wasm_memory_bytes: null, model: null, dispatches_per_token: null, submits_per_token: null, readback_bytes_per_token: null, weight_bytes_per_token: null, n_layers: null };
    this.chat = { completions: { create: (req) => this._create('chat', req) } };
    this.completions = { create: (req) => this._create('completion', req) };
    worker.onmessage = (e) => this._onMessage(e.data);
    // An error the worker did not handle: it may have stopped mid-request, so it is ended and every
    // request, pending or later, gets the WorkerError.
    worker.onerror = (e) => this._dead(named('WorkerError', e.message || 'the worker failed'));
  }

  // Stops the running generation at the next token, and those of requests made before this call
  // that wait their turn (the worker runs one request at a time).
  abort() {
    this._worker.postMessage({ kind: MSG.ABORT, upTo: this._nextId - 1 });
  }

  // Stops request `id` alone (a stream its reader left), running or waiting its turn.
  _abortRequest(id) {
    this._worker.postMessage({ kind: MSG.ABORT, ids: [id] });
  }

  // Forgets the conversation's cached prefix.
  async resetChat() {
    await this._request({ kind: MSG.RESET });
  }

  // Test hook: a panic inside an async wasm call, as a bug would make: an EngineCrashedError.
  async _crash() {
    await this._request({ kind: MSG.CRASH });
  }

  // Test hook: an internal error on the GPU device, as a browser raises one where a pipeline fails
  // for its own reasons: the next request fails with a GpuError naming it, and the engine goes on.
  async _gpuError() {
    await this._request({ kind: MSG.GPU_ERROR });
  }

  // Test hook: destroys the GPU device as a driver reset would; later requests fail with a
  // DeviceLostError (or GpuError), and createEngine() makes a new engine on a new device.
  async _loseDevice() {
    await this._request({ kind: MSG.LOSE_DEVICE });
  }

  // Stops the running generation (it ends with finish_reason "abort"; those waiting their turn
  // reject with an AbortError), frees the GPU buffers and ends the worker (already ended after an
  // EngineCrashedError); later requests reject (InvalidRequestError). A worker that does not
  // answer within UNLOAD_GRACE_MS (a template or prefill that never reaches a token) is ended
  // anyway, and the browser frees what it held: then the running request and those waiting reject
  // with the InvalidRequestError. It always resolves. Calls while one runs share its promise.
  unload() {
    if (this._crashed || this._closed) return Promise.resolve();
    this._unloading ??= (async () => {
      this.abort();
      let timer;
      const grace = new Promise((ok) => { timer = setTimeout(ok, UNLOAD_GRACE_MS); });
      try {
        // The worker is ended below whatever UNLOAD answered (an engine that crashed meanwhile).
        await Promise.race([this._request({ kind: MSG.UNLOAD }).catch(() => {}), grace]);
      } finally {
        clearTimeout(timer);
        this._worker.terminate();
        this._closed = named('InvalidRequestError', 'the engine was unloaded: create a new one');
        this._failAll(this._closed);
      }
    })();
    return this._unloading;
  }

  // A promise (or with stream, an async iterable) that rejects, never a throw, for a bad request.
  _create(mode, req) {
    try {
      return this._createChecked(mode, req);
    } catch (e) {
      if (req?.stream) return (async function* refused() { throw e; })();
      return Promise.reject(e);
    }
  }

  _createChecked(mode, req) {
    const r = validate(mode, req ?? {});
    const stop = r.stop == null ? [] : Array.isArray(r.stop) ? r.stop : [r.stop];
    const options = {
      max_tokens: r.max_tokens ?? 256, temperature: r.temperature ?? 1.0, top_p: r.top_p ?? 1.0, top_k: r.top_k ?? 0, min_p: r.min_p ?? 0,
      frequency_penalty: r.frequency_penalty ?? 0, presence_penalty: r.presence_penalty ?? 0, repetition_penalty: r.repetition_penalty ?? 1,
      penalty_last_n: r.penalty_last_n ?? 64, logit_bias: r.logit_bias ?? {}, seed: r.seed ?? randomSeed(), ignore_eos: !!r.ignore_eos, stop, n: r.n ?? 1,
    };
    // Structured output: the engine compiles the grammar (llguidance) and names what it refuses.
    if (r.response_format != null) options.response_format = r.response_format;
    if (r.grammar != null) options.grammar = r.grammar;
    // Tool calls: the engine offers the tools through the chat template (or its system prompt),
    // forces a call for "required" or a named function, and parses the reply (engine::tools).
    if (r.tools != null) options.tools = r.tools;
    if (r.tool_choice != null) options.tool_choice = r.tool_choice;
    // Variables for the chat template ({enable_thinking: false}); the engine checks them.
    if (r.chat_template_kwargs != null) options.chat_template_kwargs = r.chat_template_kwargs;
    // "parsed": a reasoning model's <think> block apart, as message.reasoning_content.
    if (r.reasoning_format != null) options.reasoning_format = r.reasoning_format;
    // Log-probabilities: chat's logprobs: true with top_logprobs k, completions' logprobs: k.
    const lp = logprobsAsked(mode, r);
    if (lp != null) options.logprobs = lp;
    const msg = { kind: MSG.GENERATE, mode, messages: r.messages, prompt: r.prompt, options, truncate: r.truncate };
    const id = `${mode === 'chat' ? 'chatcmpl' : 'cmpl'}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.stats.model || 'webllama';
    if (r.stream) return this._stream(msg, mode, { id, created, model }, lp != null);
    return this._request(msg).then((res) => this._response(mode, res, { id, created, model }, lp != null));
  }

  _response(mode, res, meta, lp) {
    this._record(res);
    const usage = { prompt_tokens: res.prompt_tokens, completion_tokens: res.completion_tokens, total_tokens: res.prompt_tokens + res.completion_tokens };
    const timings = timingsOf(res);
    if (mode === 'chat') {
      const choices = res.choices.map((c) => ({ index: c.index, message: chatMessage(c), logprobs: lp ? chatLogprobs(c.logprobs) : null, finish_reason: c.finish_reason }));
      return { ...meta, object: 'chat.completion', choices, usage, timings };
    }
    return { ...meta, object: 'text_completion', choices: res.choices.map((c) => ({ index: c.index, text: c.text, logprobs: lp ? completionLogprobs(c.logprobs) : null, finish_reason: c.finish_reason })), usage, timings };
  }

  // The request is made now (it takes its turn in the order of create() calls, streamed or not);
  // its tokens wait in `run.queue` until the stream is read.
  _stream(msg, mode, meta, lp) {
    const run = { queue: [], wake: null, finished: false, failure: null, result: null, id: this._nextId++ };
    const push = (item) => { run.queue.push(item); run.wake?.(); };
    run.settled = this._request(msg, { onToken: (text, index, logprobs, reasoning) => push({ text, index, logprobs, reasoning }) }, run.id)
      .then((res) => { run.result = res; run.finished = true; run.wake?.(); })
      .catch((e) => { run.failure = e; run.finished = true; run.wake?.(); });
    // A stream closed (return() or throw() on it) stops its generation at once: before its first
    // read (the generator's own finally runs only once it has started), and while a next() waits
    // (the generator's return() waits behind it, and it waits for the request's next token).
    const chunks = this._chunks(run, mode, meta, lp);
    const stop = () => {
      if (!run.finished) this._abortRequest(run.id);
    };
    const stream = {
      [Symbol.asyncIterator]() { return this; },
      next: (v) => chunks.next(v),
      return: (v) => { stop(); return chunks.return(v); },
      throw: (e) => { stop(); return chunks.throw(e); },
    };
    // As an async generator has it (`await using`), where the browser knows the symbol.
    if (typeof Symbol.asyncDispose === 'symbol') stream[Symbol.asyncDispose] = async () => { await stream.return(); };
    return stream;
  }

  async *_chunks(run, mode, meta, lp) {
    const { queue } = run;
    const object = mode === 'chat' ? 'chat.completion.chunk' : 'text_completion';
    const started = new Set();
    // Each chunk carries the log-probabilities of the tokens since its choice's previous chunk; the
    // last chunk those of tokens that made no text.
    const shape = mode === 'chat' ? chatLogprobs : completionLogprobs;
    const sent = [];
    // Each choice's text streamed so far (with tools, the engine holds call markup back), and its
    // thinking (reasoning_format "parsed": the engine holds a tag's start back).
    const shown = [];
    const thought = [];
    try {
    for (;;) {
      if (queue.length) {
        const { text, index, logprobs, reasoning } = queue.shift();
        if (text === '' && !reasoning && !logprobs?.length && started.has(index)) continue;
        sent[index] = (sent[index] ?? 0) + (logprobs?.length ?? 0);
        shown[index] = (shown[index] ?? '') + text;
        thought[index] = (thought[index] ?? '') + (reasoning ?? '');
        const lps = lp ? shape(logprobs ?? []) : null;
        const delta = reasoning ? { reasoning_content: reasoning, ...(text ? { content: text } : {}) } : { content: text };
        const choice = mode === 'chat'
          ? { index, delta: started.has(index) ? delta : { role: 'assistant', ...delta }, logprobs: lps, finish_reason: null }
          : { index, text, logprobs: lps, finish_reason: null };
        started.add(index);
        yield { ...meta, object, choices: [choice] };
        continue;
      }
      if (run.finished) break;
      await new Promise((r) => { run.wake = r; });
      run.wake = null;
    }
    } finally {
      // A consumer that stops reading early stops the generation too, and leaving the loop waits
      // for it to end (within a token; at once where it still waits its turn), so that the next
      // request finds the engine free.
      if (!run.finished) {
        this._abortRequest(run.id);
        await run.settled;
      }
    }
    if (run.failure) throw run.failure;
    const { result } = run;
    this._record(result);
    const usage = { prompt_tokens: result.prompt_tokens, completion_tokens: result.completion_tokens, total_tokens: result.prompt_tokens + result.completion_tokens };
    const rest = (c) => (lp ? shape((c.logprobs ?? []).slice(sent[c.index] ?? 0)) : null);
    // With tools or parsed reasoning: the text held back (a tag's start, call markup that was
    // content after all), then the calls, one chunk a choice.
    if (mode === 'chat') {
      for (const c of result.choices) {
        if (!('tool_calls' in c) && !('reasoning_content' in c)) continue;
        const delta = started.has(c.index) ? {} : { role: 'assistant' };
        const said = (thought[c.index] ?? '').trim();
        if (c.reasoning_content != null && c.reasoning_content.startsWith(said)) {
          const more = c.reasoning_content.slice(said.length);
          if (more) delta.reasoning_content = more;
        }
        // The content is trimmed; what was shown was not.
        const before = (shown[c.index] ?? '').trimStart();
        const more = c.content != null && c.content.startsWith(before) ? c.content.slice(before.length) : '';
        if (more) delta.content = more;
        if (c.tool_calls?.length) delta.tool_calls = toolCalls(c.tool_calls).map((t, i) => ({ index: i, ...t }));
        if (Object.keys(delta).length > (started.has(c.index) ? 0 : 1)) {
          started.add(c.index);
          yield { ...meta, object, choices: [{ index: c.index, delta, logprobs: null, finish_reason: null }] };
        }
      }
    }
    const last = result.choices.map((c) => (mode === 'chat' ? { index: c.index, delta: {}, logprobs: rest(c), finish_reason: c.finish_reason } : { index: c.index, text: '', logprobs: rest(c), finish_reason: c.finish_reason }));
    yield { ...meta, object, choices: last, usage, timings: timingsOf(result) };
  }

  _record(res) {
    this.stats.prefill_tok_s = res.prefill_tok_s;
    this.stats.decode_tok_s = res.decode_tok_s;
    this.stats.adapter = res.adapter ?? this.stats.adapter;
    // For leak checks: both stay flat from request to request once a model is loaded.
    this.stats.gpu_buffers_created = res.gpu_buffers_created;
    this.stats.wasm_memory_bytes = res.wasm_memory_bytes;
  }

  _request(fields, { onProgress, onToken } = {}, id = this._nextId++) {
    if (this._crashed || this._closed) return Promise.reject(this._crashed ?? this._closed);
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject, onProgress, onToken });
      this._worker.postMessage({ ...fields, id });
    });
  }

  _onMessage(m) {
    const p = this._pending.get(m.id);
    if (!p) return;
    switch (m.kind) {
      case MSG.PROGRESS: p.onProgress?.({ phase: m.phase, source: m.source, loaded: m.loaded, total: m.total, resumedFrom: m.resumedFrom ?? 0, mbPerS: m.mbPerS, etaS: m.etaS, elapsedMs: m.elapsedMs }); break;
      case MSG.TOKEN: p.onToken?.(m.text, m.index ?? 0, m.logprobs, m.reasoning ?? ''); break;
      case MSG.LOADED:
        this._pending.delete(m.id);
        Object.assign(this.stats, { adapter: m.info.adapter, layout: m.info.layout, load_ms: m.stats.loadMs, wasm_memory_bytes: m.stats.wasmMemoryBytes, model: m.info.name, source: m.stats.source, storage: m.stats.storage, resumed_from: m.stats.resumedFrom ?? 0, phases: m.stats.phases, info: m.info, ...m.stats.cost });
        p.resolve(m);
        break;
      case MSG.DONE: this._pending.delete(m.id); p.resolve(m.result); break;
      case MSG.ERROR: {
        this._pending.delete(m.id);
        const err = Object.assign(named(m.error.name, m.error.message), { wasmMemoryBytes: m.error.wasmMemoryBytes ?? null });
        p.reject(err);
        // The wasm trapped: its worker (and the memory it grew) goes, and so does every request.
        if (err.name === 'EngineCrashedError') this._dead(err);
        break;
      }
    }
  }

  // The worker cannot go on: ended, with `err` for every request, pending or later.
  _dead(err) {
    this._crashed = err;
    this._worker.terminate();
    this._failAll(err);
  }

  _failAll(err) {
    for (const p of this._pending.values()) p.reject(err);
    this._pending.clear();
  }
}

// A completion's prompt: text (special-token strings parsed), or token ids as they are (OpenAI's form).
function isPrompt(p) {
  if (Array.isArray(p)) return p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0 && t < 2 ** 32);
  return typeof p === 'string' && p !== '';
}

function validate(mode, req) {
  for (const k of Object.keys(req)) {
    if (!SUPPORTED.has(k)) throw named('InvalidRequestError', `the request field "${k}" is not supported yet`);
  }
  if (req.n !== undefined && !(Number.isInteger(req.n) && req.n >= 1 && req.n <= 8)) throw named('InvalidRequestError', 'n (candidates) must be an integer from 1 to 8');
  if (req.stop != null) {
    const stops = Array.isArray(req.stop) ? req.stop : [req.stop];
    if (stops.length > 4 || stops.some((s) => typeof s !== 'string' || s === '')) throw named('InvalidRequestError', 'stop must be a non-empty string or up to 4 of them');
  }
  if (req.logit_bias != null && (typeof req.logit_bias !== 'object' || Object.entries(req.logit_bias).some(([k, v]) => !/^\d+$/.test(k) || !Number.isFinite(v)))) {
    throw named('InvalidRequestError', 'logit_bias maps token ids to numbers');
  }
  if (req.truncate !== undefined && req.truncate !== 'oldest') throw named('InvalidRequestError', 'truncate may only be "oldest"');
  if (req.truncate !== undefined && mode !== 'chat') throw named('InvalidRequestError', 'truncate is a chat option: a completion prompt has no turns to drop');
  const count = (k) => {
    if (!(Number.isInteger(req[k]) && req[k] >= 0 && req[k] <= MAX_TOP_LOGPROBS)) throw named('InvalidRequestError', `${k} must be an integer from 0 to ${MAX_TOP_LOGPROBS}`);
  };
  if (mode === 'chat') {
    if (req.logprobs != null && typeof req.logprobs !== 'boolean') throw named('InvalidRequestError', 'logprobs must be true or false (top_logprobs says how many alternatives)');
    if (req.top_logprobs != null) {
      count('top_logprobs');
      if (req.logprobs !== true) throw named('InvalidRequestError', 'top_logprobs needs logprobs: true');
    }
  } else {
    if (req.top_logprobs != null) throw named('InvalidRequestError', 'top_logprobs is a chat option: completions take logprobs: k');
    if (req.logprobs != null) count('logprobs');
  }
  if (mode === 'chat') {
    if (!Array.isArray(req.messages) || req.messages.length === 0) throw named('InvalidRequestError', 'messages must be a non-empty array');
    for (const m of req.messages) {
      // An assistant message that calls tools may have no content (null).
      const calls = m?.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length > 0;
      if (typeof m?.role !== 'string' || !(typeof m?.content === 'string' || (calls && m.content == null))) throw named('InvalidRequestError', 'each message needs a string role and string content');
      if (m.tool_calls != null && !(m.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.every((c) => typeof c?.function?.name === 'string'))) {
        throw named('InvalidRequestError', 'tool_calls belong to assistant messages: [{id, type: "function", function: {name, arguments}}]');
      }
    }
    if (req.tools != null && !Array.isArray(req.tools)) throw named('InvalidRequestError', 'tools must be an array');
    const kw = req.chat_template_kwargs;
    if (kw != null && (typeof kw !== 'object' || Array.isArray(kw))) throw named('InvalidRequestError', 'chat_template_kwargs must be an object, such as {enable_thinking: false}');
  } else if (!isPrompt(req.prompt)) {
    throw named('InvalidRequestError', 'prompt must be a non-empty string or array of token ids');
  } else if (req.tools != null || req.tool_choice != null || req.chat_template_kwargs != null || req.reasoning_format != null) {
    throw named('InvalidRequestError', 'tools, tool_choice, chat_template_kwargs and reasoning_format are chat options');
  }
  for (const k of ['temperature', 'top_p', 'max_tokens', 'seed', 'top_k', 'min_p', 'repetition_penalty', 'penalty_last_n']) {
    if (req[k] !== undefined && (typeof req[k] !== 'number' || !Number.isFinite(req[k]) || req[k] < 0)) {
      throw named('InvalidRequestError', `${k} must be a non-negative number`);
    }
  }
  for (const k of ['frequency_penalty', 'presence_penalty']) {
    if (req[k] !== undefined && (typeof req[k] !== 'number' || !Number.isFinite(req[k]))) {
      throw named('InvalidRequestError', `${k} must be a finite number`);
    }
  }
  for (const k of ['max_tokens', 'seed', 'top_k', 'penalty_last_n', 'n']) {
    if (req[k] !== undefined && !Number.isSafeInteger(req[k])) throw named('InvalidRequestError', `${k} must be an integer`);
  }
  if (req.max_tokens === 0) throw named('InvalidRequestError', 'max_tokens must be at least 1');
  // The engine checks the ranges (sampler::SamplerConfig::check) and names the option too.
  return req;
}

// A chat choice's message: its text, or with tools its content (null when it only calls) and its
// tool_calls in OpenAI's shape; with reasoning_format "parsed" its reasoning_content (null where it
// did not think) apart from its content.
function chatMessage(c) {
  if (!('tool_calls' in c) && !('reasoning_content' in c)) return { role: 'assistant', content: c.text };
  const m = { role: 'assistant', content: c.content };
  if ('reasoning_content' in c) m.reasoning_content = c.reasoning_content;
  if (c.tool_calls?.length) m.tool_calls = toolCalls(c.tool_calls);
  return m;
}

// The engine's calls ([{name, arguments}]) as OpenAI's: [{id: 'call_<24 hex>', type: 'function',
// function: {name, arguments}}].
function toolCalls(calls) {
  return calls.map((c) => {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    const id = `call_${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    return { id, type: 'function', function: { name: c.name, arguments: c.arguments } };
  });
}

// How many alternatives per token a request asks for: chat's logprobs: true with top_logprobs (0 by
// default), completions' logprobs: k; null when no log-probabilities are asked for.
function logprobsAsked(mode, r) {
  if (mode === 'chat') return r.logprobs === true ? (r.top_logprobs ?? 0) : null;
  return r.logprobs ?? null;
}

// The engine's entries ([{id, token, bytes, logprob, text_offset, top_logprobs: [...]}]) in OpenAI's
// chat shape: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
function chatLogprobs(entries) {
  const one = (e) => ({ token: e.token, logprob: e.logprob, bytes: e.bytes });
  return { content: entries.map((e) => ({ ...one(e), top_logprobs: e.top_logprobs.map(one) })) };
}

// ... and in the completions shape: {tokens, token_logprobs, top_logprobs: [{token: logprob}],
// text_offset} (offsets into the choice's text, in JS string indices).
function completionLogprobs(entries) {
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top_logprobs.map((t) => [t.token, t.logprob]))),
    text_offset: entries.map((e) => e.text_offset),
  };
}

function named(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}
