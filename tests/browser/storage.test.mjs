// Model storage in headless Chromium: the Origin Private File System (OPFS) keeps a download that a
// killed browser left unfinished (the browser is closed mid-file and opened again on the same
// profile), and the next createEngine for the URL downloads only the rest (Range + If-Range; the
// fault server counts the bytes it sends) and loads the model, verified with `integrity`; a file
// that changed on the server meanwhile is downloaded again from byte 0. Then the storage API over
// OPFS: list (complete and partial), delete one, clear all, the storage estimate shrinking. And the
// fallback: a worker without OPFS sync access handles stores in Cache Storage (a whole download
// only), which the same API lists and deletes. And two tabs: one that finds nothing stored, then
// takes the lock after another stored the file, reads that file instead of downloading it again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage, MODEL_NAME, TINY, TINY_MODELS } from './harness.mjs';
import { startFaultServer, DROP_AT } from './fault_server.mjs';

// A small model keeps each load short; the default model when ../shared/fixtures is absent.
const FILE = existsSync(join(TINY, TINY_MODELS[0])) ? TINY_MODELS[0] : MODEL_NAME;
// A worker whose scope has no sync access handles: the Cache Storage fallback.
const CACHE_WORKER = "import '/worker.js';\ndelete FileSystemFileHandle.prototype.createSyncAccessHandle;\n";
// A worker whose OPFS locks wait until the page posts 'go' on the 'late-lock' channel (it posts
// 'waiting' at its first): two tabs' race between one's match() and lock(), made to happen. The
// store gives a lock 10 s (LOCK_WAIT_MS) before it loads unstored; here that wait is 10 minutes,
// so that a slow first load in the other tab does not end the race early.
const LATE_LOCK_WORKER = `import '/worker.js';
const setTimer = self.setTimeout;
self.setTimeout = (f, ms, ...rest) => setTimer(f, ms === 10000 ? 600000 : ms, ...rest);
const channel = new BroadcastChannel('late-lock');
const go = new Promise((resolve) => { channel.onmessage = (m) => m.data === 'go' && resolve(); });
const open = FileSystemFileHandle.prototype.createSyncAccessHandle;
FileSystemFileHandle.prototype.createSyncAccessHandle = async function (...args) {
  channel.postMessage('waiting');
  await go;
  return open.apply(this, args);
};
`;
let dir;
let server;
let faults;
let profile;
let size;
let sri;
let sha;
// Every browser opened, closed in after() when a failed test left it open (the next test needs the
// profile).
const contexts = [];
async function launchOnProfile() {
  const context = await launch(profile);
  contexts.push(context);
  return context;
}

before(async () => {
  dir = modelsDir();
  server = await startServer(dir);
  faults = await startFaultServer(server.url, dir, {
    files: { '/test/cache-worker.js': ['text/javascript', CACHE_WORKER], '/test/late-lock-worker.js': ['text/javascript', LATE_LOCK_WORKER] },
  });
  profile = mkdtempSync(join(tmpdir(), 'webllama-profile-'));
  const bytes = readFileSync(join(dir, FILE));
  size = bytes.length;
  sha = createHash('sha256').update(bytes).digest('hex');
  sri = `sha256-${Buffer.from(sha, 'hex').toString('base64')}`;
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  faults?.stop();
  server?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

const requests = (mode) => faults.log.filter((l) => l.startsWith(`GET /fault/${mode}/${FILE}`));

test('a download cut off by a killed browser continues in the next one; a changed file, or a refused resume, starts over', { timeout: 600000 }, async () => {
  // Browser 1: two downloads that stop after DROP_AT bytes (the server goes silent, the stall timeout
  // is far off); once OPFS has their bytes noted, the browser is closed mid-download.
  let context = await launchOnProfile();
  let page = await openPage(context, faults.url);
  const partial = await page.evaluate(async ({ file, want }) => {
    const api = await import('./webllama.js');
    for (const mode of ['stall', 'stallchanged', 'stallshrunk']) {
      window[mode] = api.createEngine({ model: `fault/${mode}/${file}`, stallTimeoutMs: 600000 }).catch((e) => `${e.name}: ${e.message}`);
    }
    const t0 = performance.now();
    for (;;) {
      const listed = await api.listCachedModels();
      if (listed.filter((m) => m.bytes >= want).length === 3 || performance.now() - t0 > 120000) return listed;
      await new Promise((r) => setTimeout(r, 100));
    }
  }, { file: FILE, want: DROP_AT });
  console.log('kept when the browser was killed:', JSON.stringify(partial));
  await context.close();
  assert.equal(partial.length, 3, 'three partial downloads listed');
  for (const m of partial) {
    assert.deepEqual({ bytes: m.bytes, total: m.total, complete: m.complete, storage: m.storage, verified: m.verified }, { bytes: DROP_AT, total: size, complete: false, storage: 'opfs', verified: false }, m.url);
  }
  assert.equal(faults.bytesServed(`GET /fault/stall/${FILE}`), DROP_AT);

  // Browser 2, the same profile: each load continues (or restarts) and is verified with integrity.
  context = await launchOnProfile();
  page = await openPage(context, faults.url);
  const r = await page.evaluate(async ({ file, sri }) => {
    const api = await import('./webllama.js');
    const out = { before: await api.listCachedModels() };
    for (const mode of ['stall', 'stallchanged', 'stallshrunk']) {
      const progress = [];
      try {
        const e = await api.createEngine({ model: `fault/${mode}/${file}`, integrity: sri, onProgress: (p) => progress.push(p) });
        const c = await e.completions.create({ prompt: 'Once upon a time,', max_tokens: 6, temperature: 0 });
        out[mode] = { ok: true, text: c.choices[0].text, storage: e.stats.storage, source: e.stats.source, resumedFrom: e.stats.resumed_from };
        await e.unload();
      } catch (e) {
        out[mode] = { ok: false, error: `${e.name}: ${e.message}` };
      }
      out[mode].progress = [progress[0], progress.at(-1)];
    }
    out.after = await api.listCachedModels();
    return out;
  }, { file: FILE, sri });
  console.log('after the reload:', JSON.stringify(r, null, 1));
  console.log('requests:', requests('stall'), requests('stallchanged'), requests('stallshrunk'));

  // The same file: Range from the bytes kept, If-Range with its ETag; only the rest is sent.
  assert.ok(r.stall.ok, r.stall.error);
  assert.equal(r.stall.storage, 'opfs');
  assert.equal(r.stall.source, 'network');
  assert.equal(r.stall.resumedFrom, DROP_AT);
  assert.equal(r.stall.progress[0].resumedFrom, DROP_AT, 'progress says how much was already there');
  assert.equal(r.stall.progress[1].loaded, size);
  const stall = requests('stall');
  assert.equal(stall.length, 2, stall.join('\n'));
  assert.match(stall[1], new RegExp(`^GET /fault/stall/${FILE} bytes=${DROP_AT}- if-range="[0-9a-f]+-[0-9a-f]+"$`));
  assert.equal(faults.bytesServed(`GET /fault/stall/${FILE}`), size, 'every byte sent once: DROP_AT, then the rest');
  assert.equal(faults.bytesServed(stall[1]), size - DROP_AT, 'the second browser got only the rest');

  // The file changed on the server (ETag "v1", then "v2"): the 200 for If-Range "v1" is read whole.
  assert.ok(r.stallchanged.ok, r.stallchanged.error);
  assert.equal(r.stallchanged.resumedFrom, 0);
  assert.equal(r.stallchanged.progress[0].resumedFrom, 0);
  assert.equal(r.stallchanged.text, r.stall.text, 'the same model, the same text');
  const changed = requests('stallchanged');
  assert.equal(changed.length, 2, changed.join('\n'));
  assert.equal(changed[1], `GET /fault/stallchanged/${FILE} bytes=${DROP_AT}- if-range="v1"`);
  assert.equal(faults.bytesServed(changed[1]), size, 'started over: the whole file');

  // The resume refused (416): the bytes kept are dropped and the file read whole, not an error
  // every load from now on.
  assert.ok(r.stallshrunk.ok, r.stallshrunk.error);
  assert.equal(r.stallshrunk.resumedFrom, 0);
  // (The browser's HTTP cache may ask its own way for the whole file: a one-byte range it holds a
  // truncated copy for, which the server answers whole.)
  const shrunk = requests('stallshrunk');
  assert.equal(shrunk[1], `GET /fault/stallshrunk/${FILE} bytes=${DROP_AT}- if-range="v1"`, shrunk.join('\n'));
  assert.equal(shrunk.length, 3, shrunk.join('\n'));
  assert.equal(faults.bytesServed(`GET /fault/stallshrunk/${FILE}`), DROP_AT + size, 'DROP_AT bytes, nothing for the 416, then the whole file');

  // All stored whole now, verified.
  assert.equal(r.after.length, 3);
  for (const m of r.after) {
    assert.deepEqual({ bytes: m.bytes, total: m.total, complete: m.complete, storage: m.storage, verified: m.verified, sha256: m.sha256 }, { bytes: size, total: size, complete: true, storage: 'opfs', verified: true, sha256: sha }, m.url);
  }
  // A third load is a stored one: no request.
  const third = await page.evaluate(async (file) => {
    const api = await import('./webllama.js');
    const e = await api.createEngine({ model: `fault/stall/${file}` });
    const s = { source: e.stats.source, storage: e.stats.storage };
    await e.unload();
    return s;
  }, FILE);
  assert.deepEqual(third, { source: 'cache', storage: 'opfs' });
  assert.equal(requests('stall').length, 2, 'no request for a stored model');
  await context.close();
});

test('storage API over OPFS and Cache Storage: list, delete, clear; the estimate shrinks', { timeout: 600000 }, async () => {
  for (const c of contexts) await c.close().catch(() => {});
  const context = await launchOnProfile();
  const page = await openPage(context, faults.url);
  const r = await page.evaluate(async ({ file }) => {
    const api = await import('./webllama.js');
    // What the first test stored, cleared (Chromium's estimate of files a killed browser wrote is not
    // to be trusted; this session's own files are counted).
    const out = { listed: await api.listCachedModels(), clearedFirst: await api.clearCache(), est0: await api.storageEstimate() };
    const load = async (mode, workerUrl) => {
      const e = await api.createEngine({ model: `fault/${mode}/${file}`, workerUrl });
      const s = { storage: e.stats.storage, source: e.stats.source };
      await e.unload();
      return s;
    };
    out.opfs = await load('opfs');
    // A worker without OPFS: a whole download goes to Cache Storage, a resumed one is not stored.
    out.cacheWhole = await load('whole', '/test/cache-worker.js');
    out.cacheDrop = await load('drop', '/test/cache-worker.js');
    out.cacheAgain = await load('whole', '/test/cache-worker.js');
    // A server that never ends its body (no Content-Length): refused past the model's end, at once,
    // though Cache Storage's copy of the body would read on.
    const t0 = performance.now();
    out.cacheEndless = await api.createEngine({ model: `fault/endless/${file}`, workerUrl: '/test/cache-worker.js', signal: AbortSignal.timeout(60000) })
      .then((e) => e.unload().then(() => 'loaded'), (e) => `${e.name}: ${e.message}`);
    out.cacheEndlessMs = performance.now() - t0;
    out.withCache = await api.listCachedModels();
    out.est1 = await api.storageEstimate();
    out.deleted = await api.deleteCachedModel(`fault/opfs/${file}`);
    out.deletedAgain = await api.deleteCachedModel(`fault/opfs/${file}`);
    out.afterDelete = await api.listCachedModels();
    out.est2 = await api.storageEstimate();
    out.cleared = await api.clearCache();
    out.afterClear = await api.listCachedModels();
    out.est3 = await api.storageEstimate();
    return out;
  }, { file: FILE });
  console.log('storage API:', JSON.stringify(r, null, 1));
  await context.close();
  const path = (m) => new URL(m.url).pathname;
  assert.deepEqual(r.listed.map(path).sort(), [`/fault/stall/${FILE}`, `/fault/stallchanged/${FILE}`, `/fault/stallshrunk/${FILE}`]);
  assert.equal(r.clearedFirst, 3);
  assert.equal(r.est0.storage, 'opfs');
  assert.deepEqual(r.opfs, { storage: 'opfs', source: 'network' });
  assert.deepEqual(r.cacheWhole, { storage: 'cache', source: 'network' });
  assert.deepEqual(r.cacheDrop, { storage: 'cache', source: 'network' });
  assert.deepEqual(r.cacheAgain, { storage: 'cache', source: 'cache' }, 'the Cache Storage copy is read back');
  assert.match(r.cacheEndless, /^NetworkError: the server sent more than the model's \d+ bytes/);
  assert.ok(r.cacheEndlessMs < 20000, `the endless download was refused in ${r.cacheEndlessMs} ms`);
  const stored = Object.fromEntries(r.withCache.map((m) => [path(m), m]));
  assert.deepEqual(Object.keys(stored).sort(), [`/fault/opfs/${FILE}`, `/fault/whole/${FILE}`], 'not the resumed download (Cache Storage)');
  assert.deepEqual([stored[`/fault/opfs/${FILE}`].storage, stored[`/fault/whole/${FILE}`].storage], ['opfs', 'cache']);
  for (const m of r.withCache) {
    assert.deepEqual({ bytes: m.bytes, total: m.total, complete: m.complete, verified: m.verified }, { bytes: size, total: size, complete: true, verified: false }, m.url);
    assert.ok(m.storedAt > Date.now() - 600e3 && m.storedAt <= Date.now(), `${m.url} stored just now (${m.storedAt})`);
  }
  assert.ok(r.est1.usage > r.est0.usage + 1.5 * size, `an estimate that holds both models (${r.est0.usage} -> ${r.est1.usage})`);
  assert.equal(r.deleted, true);
  assert.equal(r.deletedAgain, false);
  assert.deepEqual(r.afterDelete.map(path), [`/fault/whole/${FILE}`]);
  assert.ok(r.est2.usage < r.est1.usage - size / 2, `deleting the OPFS one shrinks usage (${r.est1.usage} -> ${r.est2.usage})`);
  assert.equal(r.cleared, 1);
  assert.deepEqual(r.afterClear, []);
  assert.ok(r.est3.usage < r.est2.usage - size / 2, `clearing the Cache Storage one shrinks usage (${r.est2.usage} -> ${r.est3.usage})`);
});

test('a download another tab finishes between this one\'s lookup and its lock is read from storage, not fetched again', { timeout: 300000 }, async () => {
  for (const c of contexts) await c.close().catch(() => {});
  const context = await launchOnProfile();
  const page = await openPage(context, faults.url);
  const r = await page.evaluate(async ({ file }) => {
    const api = await import('./webllama.js');
    const model = `fault/race/${file}`;
    const stats = (e) => ({ storage: e.stats.storage, source: e.stats.source });
    const channel = new BroadcastChannel('late-lock');
    const waiting = new Promise((resolve) => { channel.onmessage = (m) => m.data === 'waiting' && resolve(); });
    // The late tab finds nothing stored and waits at its lock ...
    const late = api.createEngine({ model, workerUrl: '/test/late-lock-worker.js' });
    await waiting;
    // ... while another downloads the model and stores it whole.
    const first = await api.createEngine({ model });
    const out = { first: stats(first) };
    await first.unload();
    channel.postMessage('go');
    const e = await late;
    out.late = stats(e);
    out.text = (await e.completions.create({ prompt: 'Once upon a time,', max_tokens: 4, temperature: 0 })).choices[0].text;
    await e.unload();
    out.deleted = await api.deleteCachedModel(model);
    // A gzip-encoded download stored in Cache Storage is read back as the decoded file (the stored
    // copy once kept the encoded Content-Length, and every load from it failed as truncated).
    for (const k of ['gzip', 'gzipAgain']) {
      const g = await api.createEngine({ model: `fault/gzip/${file}`, workerUrl: '/test/cache-worker.js' });
      out[k] = stats(g);
      await g.unload();
    }
    out.gzipDeleted = await api.deleteCachedModel(`fault/gzip/${file}`);
    return out;
  }, { file: FILE });
  await context.close();
  assert.deepEqual(r.gzip, { storage: 'cache', source: 'network' });
  assert.deepEqual(r.gzipAgain, { storage: 'cache', source: 'cache' });
  assert.equal(r.gzipDeleted, true);
  assert.deepEqual(r.first, { storage: 'opfs', source: 'network' });
  assert.deepEqual(r.late, { storage: 'opfs', source: 'cache' }, 'the late tab reads the stored file');
  assert.equal(requests('race').length, 1, 'one download for the two tabs');
  assert.ok(r.text.length > 0);
  assert.equal(r.deleted, true);
});
