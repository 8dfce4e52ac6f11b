// Network faults in headless Chromium, made by tests/browser/fault_server.mjs: a 404, a connection
// that drops (resumed with Range and If-Range, or read again when the server ignores Range), one that
// stalls half open (cancelled after stallTimeoutMs and resumed, or given up with the stall named),
// one that drops every megabyte (more drops than MAX_RESUMES, each with progress: it completes), a
// file that changed on the server between the first response and the resumed one (another ETag,
// another total), a body that keeps ending short of its Content-Length, a Content-Length that cuts
// the file, integrity (SHA-256) right and wrong, a cancelled load, and a lost GPU device. Each gets a
// named error or a successful resume (loaded with integrity: every byte checked), nothing wrong is
// stored (a part of a download that broke off is kept, marked partial, for the next load to
// continue), and a load works afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage, MODEL_NAME, TINY, TINY_MODELS } from './harness.mjs';
import { startFaultServer, DROP_AT, FLAKY_AT, HELD_AT } from './fault_server.mjs';
import { gguf, tinyLlama } from './gguf_writer.mjs';

// A small model keeps each load short; the default model when ../shared/fixtures is absent.
const FILE = existsSync(join(TINY, TINY_MODELS[0])) ? TINY_MODELS[0] : MODEL_NAME;
let server;
let faults;
let otherNoCors;
let otherCors;
let context;
let page;
let dir;

before(async () => {
  dir = modelsDir();
  server = await startServer(dir);
  // A page of the test's own with no Content-Security-Policy (a static site's), for a CDN import.
  faults = await startFaultServer(server.url, dir, { files: { '/bare.html': ['text/html', '<!doctype html><title>a static site</title>'] } });
  // Two more origins (other ports): one refuses cross-origin reads, one allows them.
  otherNoCors = await startFaultServer(server.url, dir);
  otherCors = await startFaultServer(server.url, dir, { cors: true });
  context = await launch();
  page = await openPage(context, faults.url);
});

after(async () => {
  await context?.close();
  faults?.stop();
  otherNoCors?.stop();
  otherCors?.stop();
  server?.stop();
});

test('network faults: clear errors or a resumed download; nothing wrong is stored', { timeout: 600000 }, async () => {
  const sha = createHash('sha256').update(readFileSync(join(dir, FILE))).digest('hex');
  const sri = `sha256-${Buffer.from(sha, 'hex').toString('base64')}`;
  const r = await page.evaluate(async ({ file, sha, sri, noCors, withCors }) => {
    const { createEngine } = await import('./webllama.js');
    const out = {};
    // run: 'greedy' (6 tokens), 'sampled' (then 4 sampled), or 'load' (no generation: each new
    // engine's first tokens cost SwiftShader seconds of shader compiles; a download that must
    // arrive whole is loaded with integrity, which checks every byte in wasm).
    const attempt = async (name, opts, run = 'greedy') => {
      const t = performance.now();
      try {
        const e = await createEngine(opts);
        const loaded = Math.round(performance.now() - t);
        const c = run !== 'load' && await e.completions.create({ prompt: 'Once upon a time,', max_tokens: 6, temperature: 0 });
        // Sampled with penalties: edited and drawn by the host on the CPU family, on the GPU
        // (edit_logits.wgsl, sample.wgsl) in the GPU family.
        const s = run === 'sampled' && await e.completions.create({
          prompt: 'Once upon a time,', max_tokens: 4, temperature: 1.5, top_k: 40, seed: 7,
          repetition_penalty: 1.3, frequency_penalty: 0.5, penalty_last_n: 8,
        });
        const layout = e.stats.layout;
        await e.unload();
        out[name] = { ok: true, text: c && c.choices[0].text, sampled: s && s.choices[0].text, layout, loaded, ms: Math.round(performance.now() - t) };
      } catch (e) {
        out[name] = { ok: false, error: `${e.name}: ${e.message}`, ms: Math.round(performance.now() - t) };
      }
    };
    await attempt('whole', { model: `fault/whole/${file}`, integrity: sri }, 'sampled');
    // The GPU kernel family forced on this CPU adapter (createEngine's layout option), and a layout
    // that does not exist.
    await attempt('gpu layout', { model: `fault/whole/${file}`, layout: 'gpu' }, 'sampled');
    out.adapterSubgroups = (await navigator.gpu.requestAdapter()).features.has('subgroups');
    await attempt('gpu layout, no subgroups', { model: `fault/whole/${file}`, layout: 'gpu', subgroups: false });
    await attempt('bad subgroups', { model: `fault/whole/${file}`, subgroups: 'yes' });
    await attempt('bad layout', { model: `fault/whole/${file}`, layout: 'npu' });
    await attempt('404', { model: `fault/404/${file}` });
    await attempt('403', { model: `fault/403/${file}` });
    await attempt('cors refused', { model: `${noCors}fault/whole/${file}` });
    await attempt('cors allowed', { model: `${withCors}fault/drop/${file}`, integrity: sri }, 'load');
    // A worker made for one model host (its Content-Security-Policy, from `webllama serve`, names
    // only that host) cannot fetch from another, though that one allows CORS.
    const noCorsOrigin = new URL(noCors).origin;
    const workerUrl = `./worker.js?model_origin=${encodeURIComponent(noCorsOrigin)}`;
    out.workerCsp = (await fetch(workerUrl)).headers.get('content-security-policy');
    await attempt('other host', { model: `${withCors}fault/whole/${file}`, workerUrl });
    await attempt('drop', { model: `fault/drop/${file}`, integrity: sri }, 'load');
    await attempt('norange', { model: `fault/norange/${file}`, integrity: sri }, 'load');
    await attempt('short', { model: `fault/short/${file}` });
    // No Content-Length, and zeros after the file for as long as they are read.
    await attempt('endless', { model: `fault/endless/${file}`, signal: AbortSignal.timeout(60000) }, 'load');
    await attempt('lie', { model: `fault/lie/${file}` });
    // gzip-encoded: Content-Length is the encoded body's, the body read is the decoded file.
    await attempt('gzip', { model: `fault/gzip/${file}`, integrity: sri }, 'load');
    // A half-open connection: no bytes after DROP_AT. The stall timeout cancels it and the download
    // resumes (the signal only bounds a client that would wait forever).
    const t1 = performance.now();
    await attempt('stall', { model: `fault/stall/${file}`, integrity: sri, stallTimeoutMs: 2000, signal: AbortSignal.timeout(60000) }, 'load');
    out.stall.ms = performance.now() - t1;
    // Stalls again and again, resumed requests unanswered: the stall is named.
    await attempt('hang', { model: `fault/hang/${file}`, stallTimeoutMs: 500, signal: AbortSignal.timeout(30000) });
    await attempt('bad stall timeout', { model: `fault/whole/${file}`, stallTimeoutMs: -1 });
    // Drops every FLAKY_AT bytes, far more often than MAX_RESUMES, but always with progress.
    await attempt('flaky', { model: `fault/flaky/${file}`, integrity: sri }, 'load');
    // The file changed on the server between the first response and the resumed one.
    await attempt('changed', { model: `fault/changed/${file}` });
    await attempt('changed, other origin', { model: `${withCors}fault/changed/${file}` });
    await attempt('retotal', { model: `fault/retotal/${file}` });
    // A resumed 206 without the ETag the first response had: taken where If-Range named it (the
    // server checked it); on another origin (no If-Range) it can't be compared, so it is refused.
    await attempt('untagged', { model: `fault/untagged/${file}`, integrity: sri }, 'load');
    await attempt('untagged, other origin', { model: `${withCors}fault/untagged/${file}` });
    // Another origin whose resumed 206 hides its Content-Range: the file asked for whole again.
    await attempt('hidden range, other origin', { model: `${withCors}fault/hidden/${file}`, integrity: sri }, 'load');
    // A resumed 206 that goes on past the file's end: refused, not read for as long as it lasts.
    await attempt('overlong', { model: `fault/overlong/${file}`, signal: AbortSignal.timeout(60000) }, 'load');
    await attempt('bad integrity', { model: `fault/wrong/${file}`, integrity: sha.replace(/^./, (c) => (c === '0' ? '1' : '0')) });
    await attempt('bad integrity syntax', { model: `fault/whole/${file}`, integrity: 'md5-abc' });
    // Integrity fails closed: a resumed download whose resumed part was tampered with (the cache
    // refuses the broken first response, so only the loader sees these bytes), and a cache hit of a
    // file stored without integrity, asked for later with a digest it does not have.
    await attempt('tampered resume', { model: `fault/tamper/${file}`, integrity: sri });
    await attempt('cached plain', { model: `fault/again/${file}` }, 'load');
    // A context the GPU cannot bind is not the file's fault: the cached file stays (and loads again).
    await attempt('keep', { model: `fault/keep/${file}` }, 'load');
    await attempt('keep, context too large', { model: `fault/keep/${file}`, ctx: 100000000 });
    await attempt('cache hit, other digest', { model: `fault/again/${file}`, integrity: sha.replace(/^./, (c) => (c === '0' ? '1' : '0')) });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 700);
    const t0 = performance.now();
    await attempt('cancel', { model: `fault/slow/${file}`, signal: ac.signal });
    out.cancel.ms = performance.now() - t0;
    await attempt('after', { model: `fault/after/${file}`, integrity: sri }, 'load');
    // A lost GPU device: a named error, then a new engine works.
    const lost = await createEngine({ model: `fault/whole/${file}` });
    await lost._loseDevice();
    try {
      await lost.completions.create({ prompt: 'Once upon a time,', max_tokens: 6, temperature: 0 });
      out.lost = 'no error';
    } catch (e) {
      out.lost = `${e.name}: ${e.message}`;
    }
    await lost.unload().catch(() => {});
    // Lost while a streamed generation runs (the worker's engine is busy): a named error, no panic.
    const midway = await createEngine({ model: `fault/whole/${file}` });
    try {
      let chunks = 0;
      for await (const _ of midway.completions.create({ prompt: 'Once upon a time,', max_tokens: 40, temperature: 0, ignore_eos: true, stream: true })) {
        if (++chunks === 2) await midway._loseDevice();
      }
      out.midway = `no error after ${chunks} chunks`;
    } catch (e) {
      out.midway = `${e.name}: ${e.message}`;
    }
    await midway.unload().catch(() => {});
    // Lost while a long prompt is read (no chunk streamed yet), and while 3 candidates decode.
    const lostStream = async (name, request, loseAt) => {
      const e = await createEngine({ model: `fault/whole/${file}` });
      let chunks = 0;
      try {
        const stream = e.completions.create({ ...request, temperature: 0, ignore_eos: true, stream: true });
        if (loseAt === 0) setTimeout(() => e._loseDevice(), 50);
        for await (const _ of stream) {
          if (++chunks === loseAt) await e._loseDevice();
        }
        out[name] = `no error after ${chunks} chunks`;
      } catch (err) {
        out[name] = `${err.name}: ${err.message}`;
        out[`${name} chunks`] = chunks;
      }
      await e.unload().catch(() => {});
    };
    await lostStream('lost in prefill', { prompt: 'The quick brown fox jumps over the lazy dog. '.repeat(40), max_tokens: 8 }, 0);
    await lostStream('lost in n=3', { prompt: 'Once upon a time,', max_tokens: 30, n: 3 }, 4);
    await attempt('after lost', { model: `fault/whole/${file}` });
    // What is stored (OPFS here), as paths on this origin (whole URLs on another).
    const listed = await (await import('./webllama.js')).listCachedModels();
    const where = (m) => m.url.replace(location.origin, '');
    out.cached = listed.filter((m) => m.complete).map(where);
    out.partial = listed.filter((m) => !m.complete).map(where);
    out.storage = [...new Set(listed.map((m) => m.storage))];
    return out;
  }, { file: FILE, sha, sri, noCors: otherNoCors.url, withCors: otherCors.url });
  console.log(JSON.stringify(r, null, 1));
  assert.ok(r.whole.ok, r.whole.error);
  assert.match(r.whole.layout, /^cpu /);
  assert.ok(r['gpu layout'].ok, r['gpu layout'].error);
  assert.match(r['gpu layout'].layout, /^gpu /);
  assert.equal(r['gpu layout'].text, r.whole.text, 'the GPU kernel family gives the same greedy text');
  // ... and the same sampled text: its draws on the GPU pick what the host's sampler picks.
  // (top_k keeps the draws off the flat tail, where float rounding alone may move a draw.)
  assert.ok(typeof r.whole.sampled === 'string' && !r.whole.text.startsWith(r.whole.sampled), `sampling left the greedy text: ${r.whole.sampled}`);
  assert.equal(r['gpu layout'].sampled, r.whole.sampled, 'the GPU sampler draws as the host does');
  // The worker asks for subgroups where the adapter has them (wgpu does not: www/worker.js), and
  // the GPU family's reductions then use them (SwiftShader has 4-lane subgroups).
  if (r.adapterSubgroups) assert.match(r['gpu layout'].layout, /^gpu \(subgroups \d+/);
  // ... and with them turned off, the GPU family's kernels without subgroups (as in browsers that
  // have none) give the same text.
  assert.ok(r['gpu layout, no subgroups'].ok, r['gpu layout, no subgroups'].error);
  assert.match(r['gpu layout, no subgroups'].layout, /^gpu \(no subgroups/);
  assert.equal(r['gpu layout, no subgroups'].text, r.whole.text);
  assert.match(r['bad subgroups'].error, /^InvalidRequestError: subgroups must be true or false, not yes/);
  assert.match(r['bad layout'].error, /^InvalidRequestError: invalid request: layout "npu": the layouts are "gpu" and "cpu"/);
  assert.match(r['404'].error, /^NetworkError: HTTP 404/);
  assert.match(r['403'].error, /^NetworkError: HTTP 403/);
  assert.equal(r.workerCsp, `default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' ${new URL(otherNoCors.url).origin}`);
  assert.match(r['other host'].error, /^NetworkError: could not fetch .*Content-Security-Policy/);
  assert.match(r['cors refused'].error, /^NetworkError: could not fetch .* does not allow cross-origin requests/);
  // The resumed downloads loaded with integrity: every byte is the file's (an IntegrityError else).
  assert.ok(r['cors allowed'].ok, `another origin that allows CORS, with a dropped connection resumed: ${r['cors allowed'].error}`);
  for (const k of ['drop', 'norange', 'after', 'gzip', 'untagged']) assert.ok(r[k].ok, `${k}: ${r[k].error}`);
  assert.ok(faults.log.some((l) => l.startsWith(`GET /fault/drop/${FILE} bytes=`)), 'the dropped download resumed with a Range request');
  assert.equal(faults.log.filter((l) => l.startsWith(`GET /fault/norange/${FILE}`)).length, 2, 'a server that ignores Range is read again once');
  assert.match(r.short.error, new RegExp(`^NetworkError: the download of .* ended at \\d+ of ${statSync(join(dir, FILE)).size} bytes`));
  assert.match(r.lie.error, /^GgufError: .*truncated/);
  assert.match(r.endless.error, /^NetworkError: the server sent more than the model's \d+ bytes .* no Content-Length/);
  const endlessBytes = faults.bytesServed(`GET /fault/endless/${FILE}`);
  assert.ok(endlessBytes < statSync(join(dir, FILE)).size + (64 << 20), `the endless download stopped, after ${endlessBytes} bytes`);
  const size = statSync(join(dir, FILE)).size;
  const requests = (mode, log = faults.log) => log.filter((l) => l.startsWith(`GET /fault/${mode}/${FILE}`));
  // Resumed requests carry the first response's ETag as If-Range (on the page's origin).
  assert.match(requests('drop')[1] ?? '', new RegExp(`^GET /fault/drop/${FILE} bytes=\\d+- if-range="[0-9a-f]+-[0-9a-f]+"$`), 'the dropped download resumed with Range and If-Range');
  assert.ok(r.stall.ok, `stall: ${r.stall.error}`);
  assert.ok(r.stall.ms >= 2000, `the stalled download resumed after the stall timeout, not before (${r.stall.ms} ms)`);
  assert.match(requests('stall')[1] ?? '', /bytes=\d+- if-range=/, 'the stalled download resumed with a Range request');
  assert.match(r.hang.error, /^NetworkError: the download of .* stalled at \d+ of \d+ bytes \(no bytes for 0\.5 s\), after 5 resumed requests in a row that brought no new bytes/);
  assert.equal(requests('hang').length, 6, 'the first request and 5 resumed ones');
  assert.match(r['bad stall timeout'].error, /^InvalidRequestError: stallTimeoutMs must be a positive number/);
  assert.ok(r.flaky.ok, `flaky: ${r.flaky.error}`);
  // More resumed requests than MAX_RESUMES (5) brought progress, each starting further on (the
  // browser may drop bytes it had not handed over when a connection breaks, so a few may not).
  const flakyFrom = requests('flaky').map((l) => Number(/bytes=(\d+)-/.exec(l)?.[1] ?? 0));
  assert.ok(flakyFrom.every((b, i) => i === 0 || b >= flakyFrom[i - 1]), `flaky: resumed from ${flakyFrom}`);
  assert.ok(new Set(flakyFrom).size > 6 && flakyFrom.length >= Math.ceil(size / FLAKY_AT), `flaky: more drops than MAX_RESUMES, with progress (resumed from ${flakyFrom})`);
  for (const k of ['changed', 'changed, other origin', 'retotal', 'untagged, other origin']) {
    assert.match(r[k].error ?? 'no error', /^NetworkError: the file at .* changed on the server while it downloaded/, k);
  }
  assert.match(r.changed.error, /ETag "v1", then "v2"/);
  assert.match(r['changed, other origin'].error, /ETag "v1", then "v2"/);
  assert.match(r.retotal.error, new RegExp(`${size} bytes, then ${size + 4096} in Content-Range`));
  assert.match(r['untagged, other origin'].error, /ETag "[0-9a-f]+-[0-9a-f]+", then none/);
  assert.ok(r['hidden range, other origin'].ok, r['hidden range, other origin'].error);
  const hidden = otherCors.log.filter((l) => l.startsWith(`GET /fault/hidden/${FILE}`));
  // (Chromium's HTTP cache may ask for the bytes it holds between the two: bytes=0-N.)
  assert.ok(hidden.length >= 3 && / bytes=\d+-$/.test(hidden[1]) && hidden.at(-1) === `GET /fault/hidden/${FILE}`, `the first request, the resumed one, the whole file again: ${hidden.join('; ')}`);
  assert.match(r.overlong.error ?? 'no error', new RegExp(`^NetworkError: resuming .* the server sent more than the file's ${size} bytes`));
  assert.match(requests('changed')[1] ?? '', /bytes=\d+- if-range="v1"$/, 'If-Range names the first response\'s ETag');
  // If-Range is not sent to another origin: it would need a CORS preflight (Range alone does not).
  assert.deepEqual(otherCors.log.filter((l) => l.startsWith('OPTIONS')), [], 'no preflight for a resumed cross-origin request');
  assert.match(r['bad integrity'].error, /^IntegrityError: .* has SHA-256 [0-9a-f]{64}, not the/);
  assert.match(r['bad integrity syntax'].error, /^InvalidRequestError: integrity must be/);
  assert.match(r['tampered resume'].error, /^IntegrityError: .* has SHA-256 [0-9a-f]{64}, not the/);
  assert.ok(r['cached plain'].ok, r['cached plain'].error);
  assert.match(r['keep, context too large'].error, /^ContextLengthError: /);
  assert.match(r['cache hit, other digest'].error, /^IntegrityError: .* has SHA-256 [0-9a-f]{64}, not the/);
  assert.match(r.cancel.error, /^AbortError/);
  assert.match(r.lost, /^(DeviceLostError|GpuError): .*lost/i);
  assert.match(r.midway, /^(DeviceLostError|GpuError): .*lost/i, 'a device lost mid-generation is a named error');
  assert.match(r['lost in prefill'], /^(DeviceLostError|GpuError): .*lost/i, 'a device lost while the prompt is read');
  assert.equal(r['lost in prefill chunks'], 0, 'lost before the first token');
  assert.match(r['lost in n=3'], /^(DeviceLostError|GpuError): .*lost/i, 'a device lost while 3 candidates decode');
  assert.ok(r['after lost'].ok, r['after lost'].error);
  assert.equal(r['after lost'].text, r.whole.text);
  assert.ok(r.cancel.ms < 5000, `cancel took ${r.cancel.ms} ms`);
  // Stored whole (in OPFS): the downloads that completed and loaded, resumed ones too; not the cut,
  // wrong, changed or tampered ones, nor one whose cache hit failed integrity. Kept to be continued
  // by the next load: the parts of the downloads that broke off (short, stalled, cancelled).
  assert.deepEqual(r.storage, ['opfs']);
  const stored = ['after', 'keep', 'whole', 'drop', 'norange', 'stall', 'flaky', 'gzip', 'untagged'].map((m) => `/fault/${m}/${FILE}`);
  assert.deepEqual(r.cached.sort(), [...stored, ...['drop', 'hidden'].map((m) => `${otherCors.url}fault/${m}/${FILE}`)].sort());
  assert.deepEqual(r.partial.sort(), ['hang', 'short', 'slow'].map((m) => `/fault/${m}/${FILE}`));
  assert.ok(DROP_AT > 0);
});

// A split model of 8 parts over HTTP/1.1, where a browser allows 6 connections a host: each later
// part's header is read and the part set aside (its connection closed), then continued at its turn
// (OPFS keeps the header's bytes: a Range request for the rest). Held open instead, the 7th request
// waited for a connection until the stall timeout dropped the stalled ones (30 s by default; 20 s
// here). The `held` parts never send more than their header unasked.
test('a split model of 8 parts loads over HTTP/1.1 (6 connections a host); a part that changed meanwhile is named', { timeout: 180000 }, async () => {
  const { metadata, tensors } = tinyLlama();
  // Tensors by part (the first has the metadata); every later part is larger than HELD_AT.
  const byPart = [[0, 1, 2], [3], [4], [5], [6], [7, 8], [9], [10]];
  const name = (no) => `split8-${String(no + 1).padStart(5, '0')}-of-00008.gguf`;
  byPart.forEach((ids, no) => {
    const split = [['split.no', 'u32', no], ['split.count', 'u32', byPart.length], ['split.tensors.count', 'i32', tensors.length]];
    const file = gguf(no === 0 ? [...metadata, ...split] : split, ids.map((i) => tensors[i]));
    if (no > 0) assert.ok(file.length > HELD_AT, `part ${no + 1} is ${file.length} bytes`);
    writeFileSync(join(dir, name(no)), file);
  });
  const r = await page.evaluate(async ({ first }) => {
    const { createEngine, listCachedModels } = await import('./webllama.js');
    const load = async (model) => {
      const t = performance.now();
      try {
        const e = await createEngine({ model, stallTimeoutMs: 20000, signal: AbortSignal.timeout(90000) });
        const ms = Math.round(performance.now() - t);
        const c = await e.completions.create({ prompt: 'ab', max_tokens: 2, temperature: 0 });
        const got = { ok: true, source: e.stats.source, tokens: c.usage.completion_tokens, ms };
        await e.unload();
        return got;
      } catch (err) {
        return { ok: false, error: `${err.name}: ${err.message}` };
      }
    };
    const out = { held: await load(`fault/held/${first}`), again: await load(`fault/held/${first}`), changed: await load(`fault/heldchanged/${first}`) };
    const listed = await listCachedModels();
    out.stored = listed.filter((m) => m.url.includes('split8-')).map((m) => `${m.complete ? 'whole' : 'partial'} ${m.url.replace(location.origin, '')}`).sort();
    return out;
  }, { first: name(0) });
  console.log(JSON.stringify(r, null, 1));
  assert.ok(r.held.ok, r.held.error);
  // Within the stall timeout: no request waited for a connection until a stalled one was dropped.
  assert.ok(r.held.ms < 10000, `loaded in ${r.held.ms} ms`);
  assert.equal(r.held.source, 'network');
  assert.equal(r.held.tokens, 2);
  // Each later part: its header from a plain request, the rest from a Range request (If-Range).
  for (let no = 1; no < 8; no++) {
    const asked = faults.log.filter((l) => l.startsWith(`GET /fault/held/${name(no)}`));
    assert.equal(asked.length, 2, `${name(no)}: ${asked.join('; ')}`);
    assert.match(asked[1], /bytes=\d+- if-range="/);
  }
  // Loaded again from storage, every part whole there.
  assert.ok(r.again.ok, r.again.error);
  assert.equal(r.again.source, 'cache');
  assert.equal(faults.log.filter((l) => l.startsWith('GET /fault/held/')).length, 15, 'nothing downloaded again');
  assert.match(r.changed.error ?? 'no error', /^NetworkError: .*split8-00002-of-00008\.gguf changed on the server after its header was read/);
  // A part that changed says the model did: nothing of it stays stored (its first part neither).
  assert.deepEqual(r.stored, Array.from({ length: 8 }, (_, no) => `whole /fault/held/${name(no)}`));
});

// A GPU buffer that cannot be made (the GPU's memory full) is reported by a browser later, as an
// event: the KV cache and activations are made and awaited before the download, the model's
// pipelines before the load says it is ready, and the candidates' KV branches before a request of
// n > 1 uses them, so a failure there fails that request alone: the next one makes them again and
// works. An internal error (wgpu 30 panicked on one) fails the request it came in, then on.
test('a GPU allocation that fails fails the load or the request that made it, not every later one; so does an internal error', { timeout: 180000 }, async () => {
  const r = await page.evaluate(async ({ file }) => {
    const { createEngine } = await import('./webllama.js');
    const run = async (f) => {
      try {
        return { ok: true, value: await f() };
      } catch (err) {
        return { ok: false, error: `${err.name}: ${err.message}` };
      }
    };
    const out = {};
    let progress = { loaded: 0, total: 0 };
    out.kvCache = await run(async () => {
      // A URL of its own: downloaded (not from storage an earlier test filled), its progress seen.
      const e = await createEngine({ model: `fault/kvcache/${file}`, _failBuffers: ['k_cache.0'], onProgress: (p) => { progress = p; } });
      await e.unload();
      return 'loaded';
    });
    out.kvCacheProgress = [progress.loaded, progress.total];
    const e = await createEngine({ model: `fault/whole/${file}`, _failBuffers: ['k_branch.0'] });
    const ask = (n) => run(async () => (await e.completions.create({ prompt: 'ab', max_tokens: 3, n, temperature: 0 })).choices.length);
    out.branches = await ask(2);
    out.one = await ask(1);
    out.again = await ask(2);
    // An internal error (wgpu 30 panicked on one): a GpuError for the request it came in, then on.
    await e._gpuError();
    out.internal = await ask(1);
    out.afterInternal = await ask(1);
    await e.unload();
    return out;
  }, { file: FILE });
  console.log(JSON.stringify(r, null, 1));
  assert.match(r.kvCache.error ?? 'loaded', /^Gpu\w*Error: .*size/i);
  // The KV cache is made before the weights: refused with the header read, not the file.
  const size = statSync(join(dir, FILE)).size;
  assert.ok(r.kvCacheProgress[0] < size / 2, `refused after ${r.kvCacheProgress[0]} of ${size} bytes`);
  assert.match(r.branches.error ?? 'no error', /^Gpu\w*Error: .*size/i);
  assert.deepEqual([r.one, r.again], [{ ok: true, value: 1 }, { ok: true, value: 2 }]);
  assert.match(r.internal.error ?? 'no error', /^GpuError: .*internal error: raised by a test/);
  assert.deepEqual(r.afterInternal, { ok: true, value: 1 });
});

// webllama.js imported from another origin, as from a CDN (jsDelivr, unpkg: scripts and wasm with
// CORS) into a static site's page: a browser starts no worker from another origin, so the worker
// is started from a blob: module of the page's own that imports worker.js from the CDN; it loads a
// model and generates.
test('imported from a CDN (another origin), the package starts its worker and generates', { timeout: 180000 }, async () => {
  const cdnPage = await context.newPage();
  cdnPage.on('pageerror', (e) => console.log('page error:', e.message));
  try {
    await cdnPage.goto(`${faults.url}bare.html`);
    const r = await cdnPage.evaluate(async ({ cdn, model }) => {
      try {
        const { createEngine } = await import(`${cdn}webllama.js`);
        const e = await createEngine({ model });
        const c = await e.completions.create({ prompt: 'Once upon a time,', max_tokens: 3, temperature: 0 });
        await e.unload();
        return { ok: true, tokens: c.usage.completion_tokens, text: c.choices[0].text };
      } catch (err) {
        return { ok: false, error: `${err.name}: ${err.message}` };
      }
    }, { cdn: otherCors.url, model: `${faults.url}fault/whole/${FILE}` });
    console.log(JSON.stringify(r));
    assert.ok(r.ok, r.error);
    assert.equal(r.tokens, 3);
  } finally {
    await cdnPage.close();
  }
});
