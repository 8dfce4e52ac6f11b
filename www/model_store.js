// Where downloaded models are kept: the Origin Private File System (OPFS) where the browser has it,
// Cache Storage otherwise. The worker opens a store for a URL (openStore); the page lists, deletes
// and clears stored models of both kinds (listCached, deleteCached, clearCached).
//
// OPFS (a folder `webllama-models`): for each URL, `<key>.gguf` (the file's bytes, written as they
// arrive through a sync access handle, so that what has come survives a reload or a killed page) and
// `<key>.json`, its record: {url, bytes (kept so far), total, etag, lastModified (the validator of
// the response the bytes came from), storedAt, complete, verified, sha256}. `key` is the SHA-256 of
// the URL. The record is written (after the bytes are flushed) at most every NOTE_EVERY_MS while
// bytes come, and once when they stop; its `bytes` is what a later load may trust, so a page killed
// between two notes loses only the bytes since the last. A record with complete: false is a partial
// download that a later load continues (download.js); complete: true is the cached model.
// The sync access handle locks `<key>.gguf`: a second load of the same URL while one downloads it
// (another tab) downloads without storing.
//
// Cache Storage (the fallback: no OPFS, or no sync access handles in this worker): the file in
// CACHE keyed by URL and its record {url, bytes, storedAt, verified, sha256} in META. Only a file
// that arrived whole in one response is stored (the Cache API cannot append).

const OPFS_DIR = 'webllama-models';
const CACHE = 'webllama-models-v1';
const META = 'webllama-models-meta-v1';
const NOTE_EVERY_MS = 250;
// Bytes read at a time from a partial file back into the loader.
const READ_CHUNK = 1 << 20;
// Errors that are not the file's: a stored copy stays for the next try (any other error drops it).
const NOT_THE_FILE = ['GpuError', 'DeviceLostError', 'GpuOutOfMemoryError', 'ContextLengthError', 'InvalidRequestError'];

// Where this context keeps models: 'opfs', 'cache' or 'none' (no storage API at all, e.g. an insecure
// origin: every load downloads). In a worker, 'opfs' only where sync access handles are offered.
export function storageKind() {
  const workerScope = typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope;
  if (typeof navigator !== 'undefined' && navigator.storage?.getDirectory && (!workerScope || syncHandlesHere())) return 'opfs';
  return typeof caches === 'undefined' ? 'none' : 'cache';
}

function syncHandlesHere() {
  return typeof FileSystemFileHandle !== 'undefined' && 'createSyncAccessHandle' in FileSystemFileHandle.prototype;
}

// The OPFS folder of stored models, or null where there is none (or it cannot be opened: e.g. a
// private window that refuses it).
async function opfsFolder(create) {
  if (typeof navigator === 'undefined' || !navigator.storage?.getDirectory) return null;
  try {
    return await (await navigator.storage.getDirectory()).getDirectoryHandle(OPFS_DIR, { create });
  } catch {
    return null;
  }
}

async function keyOf(url) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function readRecord(folder, key) {
  try {
    const file = await (await folder.getFileHandle(`${key}.json`)).getFile();
    return checkedRecord(JSON.parse(await file.text()));
  } catch {
    return null;
  }
}

// The record behind a sync access handle (as readRecord reads it, or null).
function readHeldRecord(handle) {
  try {
    const bytes = new Uint8Array(handle.getSize());
    handle.read(bytes, { at: 0 });
    return checkedRecord(JSON.parse(new TextDecoder().decode(bytes)));
  } catch {
    return null;
  }
}

const checkedRecord = (record) => (record && typeof record.url === 'string' && Number.isSafeInteger(record.bytes) ? record : null);

// OPFS calls that take a file's lock are given this long to settle.
const LOCK_WAIT_MS = 10000;

// A sync access handle on `name` in `folder`; an IoError when it does not come within LOCK_WAIT_MS
// (one that comes later is closed at once), so that storage can never hang a load.
async function openHandle(folder, name) {
  const opening = folder.getFileHandle(name, { create: true }).then((f) => f.createSyncAccessHandle());
  let timer;
  const late = new Promise((resolve) => { timer = setTimeout(() => resolve(null), LOCK_WAIT_MS); });
  const handle = await Promise.race([opening, late]).finally(() => clearTimeout(timer));
  if (handle) return handle;
  opening.then((h) => h.close(), () => {});
  throw named('IoError', `the stored file ${name} could not be opened within ${LOCK_WAIT_MS / 1000} s`);
}

// Writes `record` as the whole of the file behind a sync access handle: written over the old one,
// then cut to its length (a write that fails, a full disk, leaves the old record, not an empty one).
function putRecord(handle, record) {
  const bytes = new TextEncoder().encode(JSON.stringify(record));
  handle.write(bytes, { at: 0 });
  handle.truncate(bytes.length);
  handle.flush();
}

// Replaces `<key>.json` (worker only: a sync access handle, held for the write). A download holds
// its record's handle from lock() to close() instead: in Chromium, opening a handle on the record
// again while the download's file is open sometimes never settled, and the load hung.
async function writeRecord(folder, key, record) {
  const handle = await openHandle(folder, `${key}.json`);
  try {
    putRecord(handle, record);
  } finally {
    handle.close();
  }
}

async function removeQuietly(folder, name) {
  try {
    await folder.removeEntry(name);
    return true;
  } catch (e) {
    if (e?.name === 'NotFoundError') return false;
    throw e;
  }
}

// The store for one URL, in the worker: an OpfsEntry, a CacheEntry or NO_STORE.
export async function openStore(url) {
  if (storageKind() === 'opfs') {
    const entry = await OpfsEntry.open(url);
    if (entry) return entry;
  }
  if (typeof caches !== 'undefined') return new CacheEntry(url, await caches.open(CACHE));
  return NO_STORE;
}

// A store that keeps nothing (a File, or no storage in this context).
export const NO_STORE = {
  kind: 'none',
  match: async () => null,
  kept: () => null,
  close() {},
  done: async () => {},
  failed: async () => {},
  pause: async () => {},
};

// Whether what a store keeps for a load that failed with `error` stays: an error that is not the
// file's, or a download that broke off (not one that found the file changed on the server).
export function keptAfter(error) {
  const name = error?.name;
  return NOT_THE_FILE.includes(name) || ((name === 'NetworkError' || name === 'AbortError') && !error?.changedFile);
}

// One URL's files in OPFS. A stored file is read with getFile() (no lock); a download takes the
// sync access handle of `<key>.gguf` (lock) and writes each chunk as it passes to the loader.
class OpfsEntry {
  static async open(url) {
    const folder = await opfsFolder(true);
    if (!folder) return null;
    const key = await keyOf(url);
    const record = await readRecord(folder, key);
    return new OpfsEntry(url, folder, key, record?.url === url ? record : null);
  }

  constructor(url, folder, key, record) {
    this.kind = 'opfs';
    this.url = url;
    this.folder = folder;
    this.key = key;
    this.record = record;
    this.handle = null;
    // The record's handle, held with the file's for a download.
    this.recordHandle = null;
    // Bytes written to the file and flushed; whether the download reached its total; whether a write
    // failed (a full disk: the download goes on unstored).
    this.written = 0;
    this.whole = false;
    this.broken = false;
    this.hit = false;
    this.lastNote = 0;
    this.noteTimer = null;
    // The notes, one after another (a record is never written by two at once).
    this.noting = Promise.resolve();
  }

  // {stream, total, validator} of the stored file when it is complete, else null.
  async match() {
    if (!this.record?.complete) return null;
    try {
      const file = await (await this.folder.getFileHandle(`${this.key}.gguf`)).getFile();
      if (file.size !== this.record.bytes) return null;
      this.hit = true;
      return { stream: file.stream(), total: file.size, validator: validatorOf(this.record) };
    } catch {
      return null;
    }
  }

  // Takes the file's lock for a download; false when another load holds it (or handles fail).
  async lock() {
    try {
      this.handle = await openHandle(this.folder, `${this.key}.gguf`);
      this.recordHandle = await openHandle(this.folder, `${this.key}.json`);
      // Read again under the lock: another tab may have finished (or dropped) the download since.
      const record = readHeldRecord(this.recordHandle);
      this.record = record?.url === this.url ? record : null;
      return true;
    } catch {
      this.close();
      return false;
    }
  }

  // Writes the record: through the handle the download holds, else on its own.
  async save(record) {
    if (this.recordHandle) return putRecord(this.recordHandle, record);
    return writeRecord(this.folder, this.key, record);
  }

  // The partial download a load may continue: {bytes, total, etag, lastModified}, or null (none, no
  // validator to resume with, or no total). Call after lock().
  kept() {
    const r = this.record;
    if (!this.handle || !r || r.complete || !(r.bytes > 0) || !continuable(r)) return null;
    const bytes = Math.min(r.bytes, this.handle.getSize());
    return bytes > 0 ? { bytes, total: r.total, etag: r.etag ?? null, lastModified: r.lastModified ?? null } : null;
  }

  // The first `bytes` of the file as a stream (read back through the handle, READ_CHUNK at a time).
  readKept(bytes) {
    let at = 0;
    return new ReadableStream({
      pull: (controller) => {
        if (at >= bytes) return controller.close();
        const chunk = new Uint8Array(Math.min(READ_CHUNK, bytes - at));
        const n = this.handle.read(chunk, { at });
        if (n !== chunk.length) return controller.error(named('IoError', `the stored part of ${this.url} ends at ${at + n} bytes, not ${bytes}`));
        at += n;
        controller.enqueue(chunk);
      },
    }, { highWaterMark: 0 });
  }

  // Starts (or continues, with from > 0) the download of a response whose validator and total are
  // given: the file is cut to `from` and the record says so.
  async begin({ from, total, etag, lastModified }) {
    this.handle.truncate(from);
    this.written = from;
    const storedAt = from > 0 ? this.record?.storedAt ?? Date.now() : Date.now();
    this.record = { url: this.url, bytes: from, total, etag, lastModified, storedAt, complete: false, verified: false, sha256: null };
    await this.note();
  }

  // `stream` (the bytes from offset `from` on) with each chunk written to the file as it passes.
  storing(stream, from) {
    const reader = stream.getReader();
    let at = from;
    return new ReadableStream({
      pull: async (controller) => {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          await this.note().catch(() => {});
          throw e;
        }
        if (chunk.done) {
          this.whole = this.record.total == null || at === this.record.total;
          await this.note().catch(() => {});
          return controller.close();
        }
        if (!this.broken) {
          try {
            this.handle.write(chunk.value, { at });
          } catch {
            this.broken = true;
          }
        }
        at += chunk.value.length;
        if (!this.broken) this.noteSoon(at);
        controller.enqueue(chunk.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  // Notes `at` bytes in the record now when the last note is NOTE_EVERY_MS old, else shortly (so
  // that the record catches up when the bytes stop coming).
  noteSoon(at) {
    this.pending = at;
    if (this.noteTimer) return;
    const wait = Math.max(0, this.lastNote + NOTE_EVERY_MS - performance.now());
    this.noteTimer = setTimeout(() => {
      this.noteTimer = null;
      this.note().catch(() => {});
    }, wait);
  }

  // Flushes the bytes written and records how many there are (after any note still being written).
  note() {
    this.noting = this.noting.catch(() => {}).then(() => this.noteNow());
    return this.noting;
  }

  async noteNow() {
    if (!this.handle || !this.record || this.broken) return;
    if (this.pending != null) {
      this.written = this.pending;
      this.pending = null;
    }
    this.handle.flush();
    this.lastNote = performance.now();
    this.record.bytes = this.written;
    await this.save(this.record);
  }

  // The download could not start (its request failed): a partial that a later load can continue
  // stays as it was; anything else goes.
  async abandon() {
    if (!this.kept()) return this.discard();
    this.close();
  }

  close() {
    clearTimeout(this.noteTimer);
    this.noteTimer = null;
    try { this.handle?.close(); } catch { /* already closed */ }
    try { this.recordHandle?.close(); } catch { /* already closed */ }
    this.handle = null;
    this.recordHandle = null;
  }

  // The load succeeded: a whole download becomes the stored model; a stored one checked against
  // `sha256` is noted as verified.
  async done({ sha256 }) {
    await this.noting.catch(() => {});
    try {
      if (this.hit) {
        if (sha256 && !(this.record.verified && this.record.sha256 === sha256)) {
          await this.save({ ...this.record, verified: true, sha256 });
        }
        return;
      }
      if (!this.handle) return;
      if (this.broken || !this.whole) return await this.discard();
      clearTimeout(this.noteTimer);
      this.noteTimer = null;
      await this.note();
      this.record = { ...this.record, complete: true, storedAt: Date.now(), verified: !!sha256, sha256: sha256 ?? null };
      await this.save(this.record);
    } finally {
      this.close();
    }
  }

  // The load failed with `error`: a file that is not a usable model (or changed on the server, or
  // could not be stored) is dropped; otherwise what was downloaded stays (whole: as the stored
  // model; partial: for the next load to continue).
  async failed(error) {
    const keep = keptAfter(error);
    await this.noting.catch(() => {});
    try {
      if (this.hit) {
        if (!keep) await this.discard();
        return;
      }
      if (!this.handle) return;
      if (!keep || this.broken || !(this.whole || continuable(this.record))) return await this.discard();
      clearTimeout(this.noteTimer);
      this.noteTimer = null;
      await this.note();
      if (this.whole) {
        this.record = { ...this.record, complete: true, storedAt: Date.now() };
        await this.save(this.record);
      }
    } catch {
      // A record that could not be written: the next load starts over.
    } finally {
      this.close();
    }
  }

  // The load sets the download aside to open it again later (a split model's part, whose header is
  // read long before its data): what came stays, as it would for a download that broke off.
  pause() {
    return this.failed(named('AbortError', 'set aside'));
  }

  async discard() {
    await this.noting.catch(() => {});
    this.close();
    this.record = null;
    await removeQuietly(this.folder, `${this.key}.json`).catch(() => {});
    await removeQuietly(this.folder, `${this.key}.gguf`).catch(() => {});
  }
}

// Whether a later load can continue a partial download of this record: a total, and a validator
// that If-Range takes (a strong ETag or a Last-Modified date).
function continuable(r) {
  const strongEtag = r.etag && !r.etag.startsWith('W/');
  return Number.isSafeInteger(r.total) && r.bytes <= r.total && !!(strongEtag || r.lastModified);
}

// One URL in Cache Storage: the first response's copy (written as the loader reads the original)
// becomes the stored model when the whole body arrived in it.
class CacheEntry {
  constructor(url, cache) {
    this.kind = 'cache';
    this.url = url;
    this.cache = cache;
    this.cached = Promise.resolve(false);
    this.hit = false;
  }

  async match() {
    const hit = await this.cache.match(this.url);
    if (!hit) return null;
    this.hit = true;
    this.cached = Promise.resolve(true);
    return { stream: hit.body, total: contentLength(hit), validator: validatorOf(hit) };
  }

  kept() {
    return null;
  }

  // Stores `resp` (the first response, whole) as it is read through the response this returns; a
  // response that breaks (or is cancelled, or refused: a quota) is not stored. Each chunk is handed
  // to the cache as the loader reads it, and the next is not read before the cache took the last:
  // neither side holds the file in memory (a Response.clone() tees the body, and the branch read
  // more slowly buffers all the other has read). A cache that fails leaves the download going.
  put(resp) {
    const { readable, writable } = new TransformStream();
    const headers = new Headers();
    for (const name of ['content-type', 'content-length', 'etag', 'last-modified']) {
      const value = resp.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    // An encoded body's Content-Length is not the stored (decoded) file's.
    if (contentLength(resp) === null) headers.delete('content-length');
    const writer = writable.getWriter();
    // A cache that refuses (a quota, a URL it cannot store) may stop reading without a word: its
    // writer is ended, so that the download does not wait on it.
    this.cached = this.cache.put(this.url, new Response(readable, { status: 200, headers })).then(() => true, (e) => {
      writer.abort(e).catch(() => {});
      return false;
    });
    const reader = resp.body.getReader();
    const length = contentLength(resp);
    let got = 0;
    const body = new ReadableStream({
      async pull(controller) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          writer.abort(e).catch(() => {});
          return controller.error(e);
        }
        if (chunk.done) {
          // A body that ended short of its Content-Length (the download resumes it) is not stored.
          if (length !== null && got !== length) writer.abort(new Error('the body ended short')).catch(() => {});
          else writer.close().catch(() => {});
          return controller.close();
        }
        got += chunk.value.length;
        await writer.ready.catch(() => {});
        writer.write(chunk.value).catch(() => {});
        controller.enqueue(chunk.value);
      },
      cancel(reason) {
        writer.abort(reason).catch(() => {});
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return new Response(body, { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  }

  close() {}

  // Set aside to open again later: a stored copy stays, a copy being made is not stored (its reader
  // was cancelled).
  async pause() {}

  async done({ bytes, sha256 }) {
    if (await this.cached) await rememberInCache(this.url, { bytes, sha256, hit: this.hit }).catch(() => {});
  }

  // A file that is not a usable model (or a download that went wrong) is not kept.
  async failed(error) {
    if (!NOT_THE_FILE.includes(error?.name)) await this.cached.then(() => deleteFromCache(this.url)).catch(() => {});
  }
}

// Notes what is known of a model the cache holds: its size, when it was stored (kept from the first
// note), and whether its SHA-256 was checked (once true staying true for the same digest, while the
// cache holds the same copy: a new download, `hit` false, inherits nothing from a note left over).
async function rememberInCache(url, { bytes, sha256, hit }) {
  const meta = await caches.open(META);
  const old = hit ? await readCacheMeta(meta, url) : null;
  const verified = sha256 ? true : !!old?.verified;
  const entry = { url, bytes, storedAt: old?.storedAt ?? Date.now(), verified, sha256: sha256 ?? (old?.verified ? old.sha256 : null) };
  await meta.put(url, new Response(JSON.stringify(entry), { headers: { 'Content-Type': 'application/json' } }));
}

async function readCacheMeta(meta, url) {
  try {
    return (await (await meta.match(url))?.json()) ?? null;
  } catch {
    return null;
  }
}

async function deleteFromCache(url) {
  const had = await (await caches.open(CACHE)).delete(url);
  await (await caches.open(META)).delete(url);
  return had;
}

// [{url, bytes, total, storedAt, verified, sha256, storage, complete}] for every stored model, in
// OPFS and in Cache Storage, and every partial download kept in OPFS (complete: false; bytes is what
// is there so far, total the file's size).
export async function listCached() {
  const out = [];
  const folder = await opfsFolder(false);
  if (folder) {
    for await (const [name] of folder.entries()) {
      const m = /^([0-9a-f]{64})\.json$/.exec(name);
      const r = m && (await readRecord(folder, m[1]));
      if (!r) continue;
      out.push({ url: r.url, bytes: r.bytes, total: r.total ?? null, storedAt: r.storedAt ?? null, verified: !!r.verified, sha256: r.sha256 ?? null, storage: 'opfs', complete: !!r.complete });
    }
  }
  if (typeof caches !== 'undefined') {
    const cache = await caches.open(CACHE);
    const meta = await caches.open(META);
    for (const req of await cache.keys()) {
      const m = await readCacheMeta(meta, req.url);
      let bytes = m?.bytes ?? null;
      if (bytes == null) bytes = contentLength(await cache.match(req)) ?? null;
      out.push({ url: req.url, bytes, total: bytes, storedAt: m?.storedAt ?? null, verified: !!m?.verified, sha256: m?.sha256 ?? null, storage: 'cache', complete: true });
    }
  }
  return out;
}

// Drops what is stored for an absolute URL (a model or a partial download, in either store); true
// when something was. A download running in a worker holds its file: removing it then throws
// (NoModificationAllowedError).
export async function deleteCached(url) {
  let had = false;
  const folder = await opfsFolder(false);
  if (folder) {
    const key = await keyOf(url);
    had = await removeQuietly(folder, `${key}.gguf`);
    had = (await removeQuietly(folder, `${key}.json`)) || had;
  }
  if (typeof caches !== 'undefined') had = (await deleteFromCache(url)) || had;
  return had;
}

// Drops every stored model and partial download; the number of them dropped. Cache Storage entry by
// entry: a deleted Cache's space is given back only once no page or worker holds it open.
export async function clearCached() {
  let n = 0;
  const folder = await opfsFolder(false);
  if (folder) {
    const names = [];
    for await (const [name] of folder.entries()) names.push(name);
    // Each model once (its data file, its record or both); one a download holds stays.
    const models = new Set();
    for (const name of names) {
      try {
        if (await removeQuietly(folder, name)) models.add(name.replace(/\.(gguf|json)$/, ''));
      } catch {
        // NoModificationAllowedError: a worker is writing it.
      }
    }
    n += models.size;
  }
  if (typeof caches !== 'undefined') {
    for (const name of [CACHE, META]) {
      const cache = await caches.open(name);
      for (const req of await cache.keys()) {
        if ((await cache.delete(req)) && name === CACHE) n += 1;
      }
    }
  }
  return n;
}

// {etag, lastModified} of a response, or of a stored record that has them.
export function validatorOf(from) {
  if (!from.headers) return { etag: from.etag ?? null, lastModified: from.lastModified ?? null };
  return { etag: from.headers.get('etag'), lastModified: from.headers.get('last-modified') };
}

// The body's length from Content-Length, or null: none, or an encoded body (gzip: the length is the
// encoded one, and the body read is the decoded one). On another origin Content-Encoding is seen
// only where the server exposes it (Access-Control-Expose-Headers); where it doesn't, an encoded
// model's load fails as truncated.
export function contentLength(resp) {
  if ((resp.headers.get('content-encoding') ?? 'identity').toLowerCase() !== 'identity') return null;
  const n = Number(resp.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : null;
}

function named(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}
