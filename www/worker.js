// The worker owns the wasm engine and the GPU. Message kinds: protocol.js.
import init, { HeaderReader, Loader, wasmMemoryBytes } from './pkg/webllama.js';
import { MSG } from './protocol.js';
import { openModel, forget, remember, namedError, parseIntegrity, STORAGE_KIND } from './download.js';

const ready = init();
let engine = null;
let abortRequested = false;
let adapterLabel = null;

const post = (kind, fields) => self.postMessage({ kind, ...fields });

self.onmessage = async (event) => {
  const m = event.data;
  if (m.kind === MSG.ABORT) {
    abortRequested = true;
    return;
  }
  try {
    await ready;
    switch (m.kind) {
      case MSG.LOAD: return await load(m);
      case MSG.GENERATE: return await generate(m);
      case MSG.RESET: engine?.reset(); return post(MSG.DONE, { id: m.id, result: null });
      case MSG.UNLOAD: engine?.free(); engine = null; return post(MSG.DONE, { id: m.id, result: null });
      case MSG.LOSE_DEVICE: engine?.loseDevice(); return post(MSG.DONE, { id: m.id, result: null });
      default: throw namedError('InvalidRequestError', `unknown message kind ${m.kind}`);
    }
  } catch (e) {
    post(MSG.ERROR, { id: m.id, error: { name: e?.name ?? 'Error', message: e?.message ?? String(e), wasmMemoryBytes: memoryNow() } });
  }
};

async function load(m) {
  engine?.free();
  engine = null;
  const t0 = performance.now();
  const { stream, total, source, cached } = await openModel(m.model, m.integrity, { stallTimeoutMs: m.stallTimeoutMs });
  const reader = stream.getReader();
  // The header is read as the chunks come (each item once); its bytes go to the Loader with it.
  let header = new HeaderReader(total ?? undefined);
  let loader = null;
  let loaded = 0;
  let lastReport = 0;
  // Phases: 'download' (bytes from the network, each fed to the GPU as it comes) or 'upload' (from
  // the cache or a File: the GPU upload is the work), then 'compile' (the kernels' pipelines and the
  // session, built once every byte is there). Rates and the ETA are of this load's bytes.
  const phase = source === 'network' ? 'download' : 'upload';
  const phases = {};
  const report = (force) => {
    const now = performance.now();
    if (!force && now - lastReport < 100) return;
    lastReport = now;
    const mbPerS = loaded / 1e6 / Math.max((now - t0) / 1000, 1e-3);
    const etaS = total ? (total - loaded) / 1e6 / Math.max(mbPerS, 1e-6) : null;
    post(MSG.PROGRESS, { id: m.id, phase, source, loaded, total, mbPerS, etaS, elapsedMs: now - t0 });
  };
  // The header is complete: open the GPU; the Loader takes the header and feeds the bytes so far.
  const open = () => {
    const sha256 = m.integrity ? parseIntegrity(m.integrity) : undefined;
    const complete = header;
    header = null;
    return Loader.create(complete, total ?? undefined, m.ctx ?? undefined, m.layout ?? undefined, sha256);
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (loader) {
        loader.feed(loaded, value);
      } else if (header.push(value)) {
        loader = await open();
      }
      loaded += value.length;
      report(false);
    }
    report(true);
    if (!loader) {
      // The last bytes may complete the header (it is tried again only once its bytes have doubled);
      // otherwise a GgufError names what it still needs.
      header.end();
      loader = await open();
    }
    phases[phase] = { ms: performance.now() - t0, bytes: loaded };
    // The cache's copy completes before the model is used (finish() checks integrity, when asked).
    const stored = await cached;
    if (stored && source === 'network') await remember(m.model, { bytes: loaded }).catch(() => {});
    const info = JSON.parse(loader.info());
    info.adapter = await adapterName(info.adapter);
    // finish() takes the loader (its wasm object is gone afterwards, whether it succeeds or not).
    const finishing = loader;
    loader = null;
    const t1 = performance.now();
    // The compile phase's event carries the bytes phase's totals (its rate stays a number).
    post(MSG.PROGRESS, { id: m.id, phase: 'compile', source, loaded, total, mbPerS: loaded / 1e6 / Math.max(phases[phase].ms / 1000, 1e-3), etaS: 0, elapsedMs: t1 - t0 });
    engine = finishing.finish();
    phases.compile = { ms: performance.now() - t1 };
    // A stored file whose SHA-256 was just checked is noted as verified.
    if (stored && m.integrity) await remember(m.model, { bytes: loaded, sha256: parseIntegrity(m.integrity) }).catch(() => {});
    const cost = JSON.parse(engine.costPerToken());
    const storage = source === 'file' ? 'none' : STORAGE_KIND();
    post(MSG.LOADED, { id: m.id, info, stats: { loadMs: performance.now() - t0, wasmMemoryBytes: wasmMemoryBytes(), source, storage, phases, bytes: loaded, cost } });
  } catch (e) {
    reader.cancel().catch(() => {});
    loader?.free();
    header?.free();
    // A file that is not a usable model (or a download that went wrong) is not kept; one that failed
    // for a reason that is not the file's (the GPU, its memory, the context or layout asked for)
    // stays cached for the next try, and the error comes back without waiting for the cache's copy.
    const notTheFile = ['GpuError', 'DeviceLostError', 'GpuOutOfMemoryError', 'ContextLengthError', 'InvalidRequestError'];
    if ((source === 'cache' || source === 'network') && !notTheFile.includes(e?.name)) {
      await cached.then(() => forget(m.model)).catch(() => {});
    }
    throw e;
  }
}

async function generate(m) {
  if (!engine) throw namedError('InvalidRequestError', 'no model is loaded');
  const ids = m.mode === 'completion' ? engine.encode(m.prompt) : chatIdsThatFit(m);
  abortRequested = false;
  // logprobs: the JSON of the piece's tokens' log-probabilities, when the request asked for them.
  const onText = (text, index, logprobs) => {
    post(MSG.TOKEN, { id: m.id, text, index, logprobs: logprobs === undefined ? undefined : JSON.parse(logprobs) });
    return !abortRequested;
  };
  const result = JSON.parse(await engine.generate(Uint32Array.from(ids), JSON.stringify(m.options), onText));
  result.adapter = adapterLabel ?? engine.adapter;
  result.wasm_memory_bytes = wasmMemoryBytes();
  post(MSG.DONE, { id: m.id, result });
}

// Chat prompt ids; with truncate: 'oldest', the oldest turns after any system message are dropped
// until prompt + max_tokens fit the context (the engine refuses what does not fit otherwise).
function chatIdsThatFit(m) {
  let messages = m.messages;
  let ids = engine.chatIds(JSON.stringify(messages));
  const room = engine.contextLength - m.options.max_tokens;
  while (m.truncate === 'oldest' && ids.length > room) {
    const first = messages.findIndex((x) => x.role !== 'system');
    // Keep at least the last message.
    if (first < 0 || first >= messages.length - 1) break;
    messages = messages.filter((_, i) => i !== first);
    ids = engine.chatIds(JSON.stringify(messages));
  }
  return ids;
}

// The browser's own words for the adapter (wgpu has no name for it on the web).
async function adapterName(fallback) {
  try {
    const info = (await navigator.gpu.requestAdapter())?.info;
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
