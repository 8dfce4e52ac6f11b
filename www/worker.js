// The worker owns the wasm engine and the GPU. Message kinds: protocol.js.
import init, { HeaderReader, Loader, wasmMemoryBytes } from './pkg/webllama.js';
import { MSG, ERROR_NAMES } from './protocol.js';
import { openModel, namedError, parseIntegrity, sameValidator } from './download.js';
import { keptAfter, deleteCached } from './model_store.js';

// wgpu 30's WebGPU backend does not pass the `subgroups` feature through to the browser
// (gfx-rs/wgpu#10146; the fix is gfx-rs/wgpu#10220): ask for it on the device the engine requests
// wherever the adapter has it. The engine reads the device's own feature list back
// (src/gpu/device.rs) and its Layout decides which kernels use subgroups.
if (self.GPUAdapter) {
  const requestDevice = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = function (descriptor = {}) {
    const wanted = this.features.has('subgroups') ? ['subgroups'] : [];
    const requiredFeatures = [...new Set([...(descriptor.requiredFeatures ?? []), ...wanted])];
    return requestDevice.call(this, { ...descriptor, requiredFeatures });
  };
}

// wgpu 30's WebGPU backend panics on a GPUInternalError (gfx-rs/wgpu#9914; fixed by #9919 in a
// later release), which a browser raises where a pipeline or an allocation fails for the
// implementation's own reasons (a driver out of registers on a mobile GPU): the engine crashed.
// Handed to wgpu as a validation error with the same message, it is a GpuError of the request it
// came in, and the engine goes on. The engine's device is kept for the GPU_ERROR test hook.
let gpuDevice = null;
const asValidation = (e) => (self.GPUInternalError && e instanceof GPUInternalError ? new GPUValidationError(`internal error: ${e.message}`) : e);
if (self.GPUDevice) {
  const popErrorScope = GPUDevice.prototype.popErrorScope;
  GPUDevice.prototype.popErrorScope = function () {
    return popErrorScope.call(this).then(asValidation);
  };
  const handler = Object.getOwnPropertyDescriptor(GPUDevice.prototype, 'onuncapturederror');
  if (handler?.set) {
    Object.defineProperty(GPUDevice.prototype, 'onuncapturederror', {
      ...handler,
      set(h) {
        gpuDevice = this;
        const wrapped = (ev) => {
          const error = asValidation(ev.error);
          h(error === ev.error ? ev : new GPUUncapturedErrorEvent('uncapturederror', { error }));
        };
        handler.set.call(this, typeof h === 'function' ? wrapped : h);
      },
    });
  }
}

const ready = init();
let engine = null;
// Aborted requests: every id up to abortedUpTo (engine.abort()) and the ids in abortedIds (a stream
// its reader left). Running, a generation stops at its next token; waiting its turn, it does not
// run (an AbortError).
let abortedUpTo = 0;
const abortedIds = new Set();
const aborted = (id) => id <= abortedUpTo || abortedIds.has(id);
let adapterLabel = null;
// Set once the wasm has trapped (a Rust panic aborts; so does running out of wasm memory): the
// engine's state is lost (a generation it ran stays marked running), so every later request gets
// the same EngineCrashedError, and webllama.js ends this worker on the first.
let crashed = null;
// The request whose turn it is (its id gets the EngineCrashedError of a trap in an async call).
let current = null;

const post = (kind, fields) => self.postMessage({ kind, ...fields });
const postError = (id, e) => post(MSG.ERROR, { id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(e), wasmMemoryBytes: memoryNow() } });
// Most bytes a file of unknown length may hold past its last tensor's data.
const TRAILING_MAX = 1 << 20;

// Requests run one at a time, in the order they came (an abort is heard at once): one made while a
// generation runs waits for it, rather than being refused or freeing the engine under it.
let queue = Promise.resolve();

// Generations waiting their turn, by id: an abort answers them at once (an AbortError), so that
// a stream left before it ran does not wait for those ahead of it.
const waiting = new Map();

self.onmessage = (event) => {
  const m = event.data;
  if (m.kind === MSG.ABORT) {
    if (Number.isFinite(m.upTo)) abortedUpTo = Math.max(abortedUpTo, m.upTo);
    for (const id of m.ids ?? []) abortedIds.add(id);
    for (const id of waiting.keys()) {
      if (aborted(id)) {
        waiting.delete(id);
        postError(id, namedError('AbortError', 'the request was aborted before it ran'));
      }
    }
    return;
  }
  // After a trap nothing waits its turn (the request that trapped may never settle); a lost device
  // does not either (the test hook stands for a driver reset mid-request).
  if (crashed || m.kind === MSG.LOSE_DEVICE) {
    handle(m);
    return;
  }
  if (m.kind === MSG.GENERATE) waiting.set(m.id, m);
  queue = queue.then(async () => {
    // Answered already (aborted while it waited).
    if (m.kind === MSG.GENERATE && !waiting.delete(m.id)) return;
    current = m;
    try {
      await handle(m);
    } finally {
      current = null;
      // Ids up to this one are done with: an abort that came too late for one leaves nothing.
      for (const id of abortedIds) if (id <= m.id) abortedIds.delete(id);
    }
  }).catch(() => {});
};

// A trap in an async call (a generation's future, polled in a microtask) is not thrown to any
// await: it reaches here (or, where futures are polled in promise callbacks, as a rejection). The
// request being handled gets the EngineCrashedError, once.
const onTrap = (event, error) => {
  if (!(error instanceof WebAssembly.RuntimeError)) return;
  event.preventDefault();
  crash(error);
  if (current) postError(current.id, crashed);
  current = null;
};
self.addEventListener('error', (event) => onTrap(event, event.error));
self.addEventListener('unhandledrejection', (event) => onTrap(event, event.reason));

function crash(e) {
  const why = self.webllamaPanic ?? `${e.name}: ${e.message}`;
  crashed ??= namedError('EngineCrashedError', `the engine crashed (${why}); its model and state are gone: create a new engine`);
  engine = null;
}

async function handle(m) {
  if (crashed) return postError(m.id, crashed);
  try {
    await ready;
    switch (m.kind) {
      case MSG.LOAD: return await load(m);
      case MSG.GENERATE: return await generate(m);
      case MSG.RESET: engine?.reset(); return post(MSG.DONE, { id: m.id, result: null });
      case MSG.UNLOAD: engine?.free(); engine = null; return post(MSG.DONE, { id: m.id, result: null });
      case MSG.LOSE_DEVICE: engine?.loseDevice(); return post(MSG.DONE, { id: m.id, result: null });
      case MSG.GPU_ERROR:
        gpuDevice?.dispatchEvent(new GPUUncapturedErrorEvent('uncapturederror', { error: new GPUInternalError('raised by a test') }));
        return post(MSG.DONE, { id: m.id, result: null });
      case MSG.CRASH:
        // Traps (EngineCrashedError); without an engine there is nothing to crash.
        if (!engine) throw namedError('InvalidRequestError', 'no model is loaded');
        await engine.crashForTest();
        return post(MSG.DONE, { id: m.id, result: null });
      default: throw namedError('InvalidRequestError', `unknown message kind ${m.kind}`);
    }
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      crash(e);
      e = crashed;
    } else if (!ERROR_NAMES.includes(e?.name)) {
      // Not one of the API's (a wasm module that did not load, a bug): named as the worker's.
      e = namedError('WorkerError', `${e?.name ?? 'Error'}: ${e?.message ?? String(e)}`);
    }
    postError(m.id, e);
  }
}

// Test hook (createEngine's _failBuffers): the first GPU buffer made with each of `labels` fails as
// one the GPU cannot hold does in a browser, reported later as an error event (here: a size past
// the device's limit, a validation error).
function failBuffers(labels) {
  if (!Array.isArray(labels) || labels.length === 0 || typeof GPUDevice === 'undefined') return;
  const left = new Set(labels);
  const create = GPUDevice.prototype.createBuffer;
  GPUDevice.prototype.createBuffer = function createBuffer(desc) {
    return create.call(this, left.delete(desc?.label) ? { ...desc, size: this.limits.maxBufferSize + 4 } : desc);
  };
}

async function load(m) {
  failBuffers(m.failBuffers);
  engine?.free();
  engine = null;
  const t0 = performance.now();
  const opts = { stallTimeoutMs: m.stallTimeoutMs };
  // A split model is given by its first part's URL, or by all its parts as Files.
  const first = Array.isArray(m.model) ? firstPart(m.model) : m.model;
  const opened = await openModel(first, m.integrity, opts);
  const { stream, source, resumedFrom, store } = opened;
  // The model's length: the file's, or (split) the parts' together once their headers are read.
  let total = opened.total;
  // A split model's other parts (openParts), read after the first.
  let split = null;
  const reader = stream.getReader();
  // The header is read as the chunks come (each item once); its bytes go to the Loader with it.
  let header = new HeaderReader(total ?? undefined);
  let loader = null;
  let loaded = 0;
  let lastReport = 0;
  // Phases: 'download' (bytes from the network, each fed to the GPU as it comes) or 'upload' (from
  // the cache or a File: the GPU upload is the work), then 'compile' (the kernels' pipelines and the
  // session, built once every byte is there). Rates and the ETA are of this load's bytes; a download
  // that continues one kept from an earlier load (resumedFrom bytes, read back from storage first)
  // counts only the network's.
  const phase = source === 'network' ? 'download' : 'upload';
  const phases = {};
  const report = (force) => {
    const now = performance.now();
    if (!force && now - lastReport < 100) return;
    lastReport = now;
    const mbPerS = Math.max(loaded - resumedFrom, 0) / 1e6 / Math.max((now - t0) / 1000, 1e-3);
    const etaS = total ? (total - loaded) / 1e6 / Math.max(mbPerS, 1e-6) : null;
    post(MSG.PROGRESS, { id: m.id, phase, source, loaded, total, resumedFrom, mbPerS, etaS, elapsedMs: now - t0 });
  };
  // The header is complete: open the GPU; the Loader takes the header and feeds the bytes so far.
  const open = async () => {
    const count = header.splitCount();
    if (count > 1) {
      split = await openParts(m, header, count, opened.total, opts);
      total = split.total;
    }
    const sha256 = m.integrity ? parseIntegrity(m.integrity) : undefined;
    const complete = header;
    header = null;
    return Loader.create(complete, total ?? undefined, m.ctx ?? undefined, m.layout ?? undefined, sha256, m.subgroups ?? undefined);
  };
  // Without a length (no Content-Length) only the server's close ends the file: bytes past the
  // file's last tensor (the header says where its data ends) and TRAILING_MAX more (alignment
  // padding) are refused, not read and stored for as long as the server sends them.
  let end = Infinity;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loaded + value.length > end) {
        throw namedError('NetworkError', `the server sent more than the model's ${end - TRAILING_MAX} bytes (and ${TRAILING_MAX} of padding after its last tensor's data), with no Content-Length to end it`);
      }
      if (loader) {
        loader.feed(loaded, value);
      } else if (header.push(value)) {
        loader = await open();
        if (total == null) end = loader.dataEnd + TRAILING_MAX;
      }
      loaded += value.length;
      report(false);
    }
    if (!loader) {
      // The last bytes may complete the header (it is tried again only once its bytes have doubled);
      // otherwise a GgufError names what it still needs.
      header.end();
      loader = await open();
    }
    // The first (or only) file's bytes, for its store.
    const ownBytes = loaded;
    // A split model's other parts, each at its place in the parts' concatenation: opened again (the
    // bytes of its first opening kept by its store are read back), its first `read` bytes skipped.
    for (const part of split?.parts ?? []) {
      await reopenPart(part, opts);
      loader.feed(part.base + part.read - part.prefix.length, part.prefix);
      part.prefix = null;
      let at = part.base + part.read;
      loaded += part.read;
      let skip = part.read;
      for (;;) {
        const { done, value } = await part.reader.read();
        if (done) break;
        const n = Math.min(skip, value.length);
        skip -= n;
        if (n === value.length) continue;
        loader.feed(at, value.subarray(n));
        at += value.length - n;
        loaded += value.length - n;
        report(false);
      }
      if (skip > 0 || at !== part.base + part.total) throw namedError('NetworkError', `${part.name} ended after ${at - part.base - skip} of its ${part.total} bytes`);
    }
    report(true);
    phases[phase] = { ms: performance.now() - t0, bytes: loaded };
    const info = JSON.parse(loader.info());
    info.adapter = await adapterName(info.adapter);
    // finish() takes the loader (its wasm object is gone afterwards, whether it succeeds or not).
    const finishing = loader;
    loader = null;
    const t1 = performance.now();
    // The compile phase's event carries the bytes phase's totals (its rate stays a number).
    post(MSG.PROGRESS, { id: m.id, phase: 'compile', source, loaded, total, resumedFrom, mbPerS: Math.max(loaded - resumedFrom, 0) / 1e6 / Math.max(phases[phase].ms / 1000, 1e-3), etaS: 0, elapsedMs: t1 - t0 });
    engine = await finishing.finish();
    phases.compile = { ms: performance.now() - t1 };
    // finish() checked integrity (when asked): the store keeps the file, noted as verified.
    await store.done({ bytes: ownBytes, sha256: m.integrity ? parseIntegrity(m.integrity) : undefined }).catch(() => {});
    for (const part of split?.parts ?? []) await part.store.done({ bytes: part.total }).catch(() => {});
    const cost = JSON.parse(engine.costPerToken());
    post(MSG.LOADED, { id: m.id, info, stats: { loadMs: performance.now() - t0, wasmMemoryBytes: wasmMemoryBytes(), source, storage: store.kind, resumedFrom, phases, bytes: loaded, cost } });
  } catch (e) {
    reader.cancel().catch(() => {});
    // After a trap the wasm objects cannot be freed (a call into them throws a plain Error that
    // would hide the trap): the engine is gone with them.
    if (!(e instanceof WebAssembly.RuntimeError)) {
      loader?.free();
      header?.free();
    }
    await dropParts(split?.parts ?? [], e);
    // A file that is not a usable model (or a download that went wrong) is not kept; one that failed
    // for a reason that is not the file's (the GPU, its memory, the context or layout asked for)
    // stays stored for the next try, and so does the part of a download that broke off (OPFS).
    // A trap (the engine crashed) drops the file too: at load it is most likely the file's doing,
    // and kept it would crash every load from storage. (One inside an async call ends the worker
    // before the store hears of it: a partial download stays for the next load to continue.)
    await store.failed(e).catch(() => {});
    throw e;
  }
}

// Split models (llama.cpp's gguf-split: NAME-00001-of-00003.gguf, ...).
const PART = /-(\d{5})-of-(\d{5})\.gguf$/;
const partName = (no, count) => `-${String(no + 1).padStart(5, '0')}-of-${String(count).padStart(5, '0')}.gguf`;

// The first part among Files a user picked (a single File is the model itself).
function firstPart(files) {
  if (files.length === 1) return files[0];
  const first = files.find((f) => PART.exec(f?.name ?? '')?.[1] === '00001');
  if (!first) throw namedError('InvalidRequestError', 'of several files, one must be a split model\'s first part (NAME-00001-of-0000N.gguf)');
  return first;
}

// Part `no` (0-based) of `count`: the File of that name, or the URL beside the first part's.
function partSource(model, no, count) {
  const suffix = partName(no, count);
  if (Array.isArray(model)) {
    const stem = firstPart(model).name.replace(PART, '');
    const file = model.find((f) => f.name === `${stem}${suffix}`);
    if (!file) throw namedError('InvalidRequestError', `part ${no + 1} of the split model, ${stem}${suffix}, is not among the files given`);
    return file;
  }
  if (typeof model !== 'string') throw namedError('InvalidRequestError', `a split model (${count} parts) is given by its first part's URL or by all its parts as files`);
  const url = new URL(model);
  if (!url.pathname.endsWith(partName(0, count))) {
    throw namedError('InvalidRequestError', `the model is part 1 of ${count}, but its URL is not named like one (NAME${partName(0, count)})`);
  }
  url.pathname = url.pathname.slice(0, -partName(0, count).length) + suffix;
  return url.href;
}

// A split model's parts after the first (whose header `header` has read, `firstTotal` bytes long):
// each opened in turn, its header read and handed to `header` (which merges the parts' tensors),
// then set aside until its turn (reopenPart): its reader is cancelled and its store keeps the bytes
// read. Left open, each unread response would hold one of the 6 connections a browser allows a host
// over HTTP/1.1, and a seventh part would wait for one for ever. {parts: [{src, name, base, total,
// read (the bytes read from it), prefix (the last of them, past its header), validator, reader and
// store (once opened again)}], total: the bytes of all the parts}.
async function openParts(m, header, count, firstTotal, opts) {
  if (firstTotal == null) throw namedError('InvalidRequestError', 'a split model\'s first part must come with its length (Content-Length)');
  if (m.integrity) throw namedError('InvalidRequestError', 'integrity is the SHA-256 of one file; a split model is several (load it without integrity)');
  const parts = [];
  let base = firstTotal;
  let opened = null;
  let reader = null;
  try {
    for (let no = 1; no < count; no++) {
      const src = partSource(m.model, no, count);
      const name = typeof src === 'string' ? src : src.name;
      opened = await openModel(src, undefined, opts);
      reader = opened.stream.getReader();
      if (opened.total == null) throw namedError('InvalidRequestError', `${name}: a split model's parts must come with their lengths (Content-Length)`);
      const h = new HeaderReader(opened.total);
      // Bytes read from the part so far.
      let read = 0;
      try {
        for (let complete = false; !complete;) {
          const { done, value } = await reader.read();
          if (done) {
            h.end();
            complete = true;
          } else {
            read += value.length;
            complete = h.push(value);
          }
        }
      } catch (e) {
        h.free();
        throw e;
      }
      // The bytes read past the part's header, which end at `read`.
      const prefix = header.addPart(h, opened.total);
      parts.push({ src, name, base, total: opened.total, read, prefix, validator: opened.validator, reader: null, store: null });
      base += opened.total;
      reader.cancel().catch(() => {});
      reader = null;
      await opened.store.pause().catch(() => {});
      opened = null;
    }
  } catch (e) {
    reader?.cancel().catch(() => {});
    await opened?.store.failed(e).catch(() => {});
    await dropParts(parts, e);
    throw e;
  }
  return { parts, total: base };
}

// Opens a part set aside by openParts again: its reader and store, from byte 0 of the same file.
async function reopenPart(part, opts) {
  const opened = await openModel(part.src, undefined, opts);
  part.reader = opened.stream.getReader();
  part.store = opened.store;
  if (opened.total !== part.total || !sameValidator(part.validator, opened.validator)) {
    const was = `${part.total} bytes${describeValidator(part.validator)}`;
    const now = `${opened.total} bytes${describeValidator(opened.validator)}`;
    const e = namedError('NetworkError', `${part.name} changed on the server after its header was read (${was}, then ${now}): load the model again`);
    e.changedFile = true;
    throw e;
  }
}

// ", ETag X" or ", Last-Modified X" (or nothing) of a validator.
function describeValidator(v) {
  if (v?.etag) return `, ETag ${v.etag}`;
  return v?.lastModified ? `, Last-Modified ${v.lastModified}` : '';
}

// A failed load's parts: those open are cancelled and their stores told; of those set aside, what
// is stored goes where the error is the file's.
async function dropParts(parts, e) {
  for (const part of parts) {
    part.reader?.cancel().catch(() => {});
    if (part.store) await part.store.failed(e).catch(() => {});
    else if (typeof part.src === 'string' && !keptAfter(e)) await deleteCached(part.src).catch(() => {});
  }
}

async function generate(m) {
  if (!engine) throw namedError('InvalidRequestError', 'no model is loaded');
  // A completion's prompt is text, or token ids used as they are (the engine checks them).
  const promptIds = (p) => (typeof p === 'string' ? engine.encode(p) : Uint32Array.from(p));
  const ids = m.mode === 'completion' ? promptIds(m.prompt) : chatIdsThatFit(m);
  // logprobs: the JSON of the piece's tokens' log-probabilities, when the request asked for them;
  // reasoning: the piece's thinking, with reasoning_format "parsed" (text is then its answer).
  const onText = (text, index, logprobs, reasoning) => {
    post(MSG.TOKEN, { id: m.id, text, index, logprobs: logprobs === undefined ? undefined : JSON.parse(logprobs), reasoning: reasoning || undefined });
    return !aborted(m.id);
  };
  const result = JSON.parse(await engine.generate(Uint32Array.from(ids), JSON.stringify(m.options), onText));
  result.adapter = adapterLabel ?? engine.adapter;
  result.wasm_memory_bytes = wasmMemoryBytes();
  post(MSG.DONE, { id: m.id, result });
}

// Chat prompt ids; with truncate: 'oldest', the oldest turns after any system message are dropped
// until prompt + max_tokens - 1 fit the context (the engine refuses what does not fit otherwise). A
// turn goes whole: from its message up to the next user message (the reply and any tool calls and
// results with it), so that the chat still starts with a user message, as templates that check the
// roles alternate ask, and no tool result is left without its call. The last turn stays.
function chatIdsThatFit(m) {
  let messages = m.messages;
  // The options bring the tools (the template renders them, or the system prompt offers them).
  const options = JSON.stringify(m.options);
  // A lone surrogate (a string cut mid-emoji) becomes U+FFFD, as in a completion's prompt (JSON's
  // escape of it is refused by the engine's parser).
  const wellFormed = (k, v) => (typeof v === 'string' && v.toWellFormed ? v.toWellFormed() : v);
  let ids = engine.chatIds(JSON.stringify(messages, wellFormed), options);
  // (The last token generated is never fed back: it takes no position.)
  const room = engine.contextLength - Math.max(m.options.max_tokens, 1) + 1;
  while (m.truncate === 'oldest' && ids.length > room) {
    const first = messages.findIndex((x) => x.role !== 'system');
    const next = first < 0 ? -1 : messages.findIndex((x, i) => i > first && x.role === 'user');
    if (next < 0) break;
    messages = [...messages.slice(0, first), ...messages.slice(next)];
    ids = engine.chatIds(JSON.stringify(messages, wellFormed), options);
  }
  return ids;
}

// The browser's own words for the adapter (wgpu has no name for it on the web): the one the engine
// asked for (high-performance: on a laptop with two GPUs, the discrete one).
async function adapterName(fallback) {
  try {
    const info = (await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }))?.info;
    const words = [info?.vendor, info?.architecture, info?.description].filter(Boolean);
    adapterLabel = words.length ? `WebGPU: ${words.join(' ')}` : fallback;
  } catch {
    adapterLabel = fallback;
  }
  return adapterLabel;
}

// The wasm memory's size, reported with errors (null before the module is up).
function memoryNow() {
  try {
    return wasmMemoryBytes();
  } catch {
    return null;
  }
}
