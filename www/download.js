// Model bytes as a stream, from the network (cached in Cache Storage by URL), the cache, or a local
// File; the caller counts bytes for progress. A connection that drops midway is resumed with a Range
// request from the byte where it stopped (or, when the server ignores Range, read again from the
// start with the bytes already had skipped); so is one that stalls: a response whose headers or next
// bytes do not come within the stall timeout (openModel's stallTimeoutMs, 30 s by default) is
// cancelled and counts as broken. Resuming gives up after MAX_RESUMES resumed requests in a row that
// brought no new byte (however many resumes made progress before): a body that keeps ending short of
// its Content-Length is then an error that names both numbers, a connection that keeps stalling one
// that names the stall. The first response's validator (its ETag when strong, else its
// Last-Modified) goes with each Range request as If-Range, on the page's own origin only (If-Range
// is not a CORS-safelisted header: on another origin it would need a preflight the host might not
// answer). A resumed response (206, or a 200 for an If-Range that no longer matches) that shows the
// file changed on the server (an ETag other than the first response's, or without ETags another
// Last-Modified; a total in Content-Range or a Content-Length other than its Content-Length) is an
// error, not a fresh start: bytes of the old file were already fed to the loader. A 200 with the
// same (or no) validator is a server that ignores Range. Only a download that arrived whole in one
// response is cached; a partial one never lands in the cache. `integrity` (sha256-<base64> or 64 hex
// digits) is checked by the loader in wasm over exactly the bytes it is fed (from the network, a
// resumed download or the cache alike); the worker drops the cache entry of a model that fails it.
//
// Stored models: the file in Cache Storage (CACHE, keyed by URL) and what is known of it in META
// (keyed by the same URL: {url, bytes, storedAt, verified, sha256}), which listCached() reports.

const CACHE = 'webllama-models-v1';
const META = 'webllama-models-meta-v1';
const MAX_RESUMES = 5;
const STALL_TIMEOUT_MS = 30000;

// {stream, total (bytes or null), source, cached: Promise<boolean> (settles once the cache's copy is
// stored, true, or refused, false)}
// stallTimeoutMs: how long a network read may yield nothing before the connection counts as broken.
export async function openModel(model, integrity, { stallTimeoutMs } = {}) {
  if (integrity) parseIntegrity(integrity);
  if (stallTimeoutMs != null && !(typeof stallTimeoutMs === 'number' && Number.isFinite(stallTimeoutMs) && stallTimeoutMs > 0)) {
    throw namedError('InvalidRequestError', `stallTimeoutMs must be a positive number of milliseconds, not ${JSON.stringify(stallTimeoutMs)}`);
  }
  const stallMs = stallTimeoutMs ?? STALL_TIMEOUT_MS;
  if (typeof Blob !== 'undefined' && model instanceof Blob) {
    return { stream: model.stream(), total: model.size, source: 'file', cached: Promise.resolve(false) };
  }
  if (typeof model !== 'string' || model === '') throw namedError('InvalidRequestError', 'no model: give a URL or a File');
  const url = new URL(model, self.location.href).href;
  const cache = typeof caches !== 'undefined' ? await caches.open(CACHE) : null;
  const hit = cache ? await cache.match(url) : undefined;
  if (hit) {
    return { stream: hit.body, total: contentLength(hit), source: 'cache', cached: Promise.resolve(true) };
  }
  const first = await get(url, { stallMs });
  if (!first.resp.body) throw namedError('NetworkError', `empty response for ${url}`);
  const total = contentLength(first.resp);
  // The cache reads its own copy of the body; if that response breaks (or is cancelled for a stall,
  // or the cache refuses it: a quota, Vary: *), put() rejects and nothing is stored. The copy it
  // stores is the first response whole, the bytes the loader verifies.
  // `cached` resolves to whether the cache holds the file.
  const cached = cache ? cache.put(url, first.resp.clone()).then(() => true, () => false) : Promise.resolve(false);
  return { stream: resumable(url, first, total, stallMs), total, source: 'network', cached };
}

// {resp, abort}: a response whose headers came within stallMs; abort() cancels it (its body and any
// copy of it). With `from`, a Range request for the rest of the file from that byte.
async function get(url, { from = 0, ifRange = null, stallMs }) {
  const ac = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ac.abort(); }, stallMs);
  const headers = {};
  if (from > 0) {
    headers.Range = `bytes=${from}-`;
    if (ifRange) headers['If-Range'] = ifRange;
  }
  let resp;
  try {
    resp = await fetch(url, { headers, signal: ac.signal });
  } catch (e) {
    if (timedOut) throw stallError(url, stallMs);
    throw namedError('NetworkError', `could not fetch ${url}: the network failed, the server does not allow cross-origin requests, or the worker's Content-Security-Policy does not allow the host (${e.message})`);
  } finally {
    clearTimeout(timer);
  }
  if (!resp.ok) {
    ac.abort();
    throw namedError('NetworkError', `HTTP ${resp.status} ${resp.statusText} for ${url}`);
  }
  return { resp, abort: () => ac.abort() };
}

// The body of `first` ({resp, abort}), continued by Range requests when it breaks off (or stalls)
// before `total` bytes.
function resumable(url, first, total, stallMs) {
  const validator = validatorOf(first.resp);
  // If-Range takes a strong ETag or a date; on another origin it is not sent (see the top).
  const sameOrigin = new URL(url).origin === self.location.origin;
  const ifRange = sameOrigin ? (validator.etag && !validator.etag.startsWith('W/') ? validator.etag : validator.lastModified) : null;
  let current = first;
  let reader = first.resp.body.getReader();
  let got = 0;
  let skip = 0;
  // Resumed requests in a row that brought no new byte.
  let stuck = 0;
  let cancelled = false;
  const fail = (controller, e) => {
    current.abort();
    controller.error(e);
  };
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        const chunk = await readWithin(reader, stallMs, current, url);
        if (cancelled) return;
        if (!chunk.done) {
          let value = chunk.value;
          if (skip > 0) {
            // A server that ignored Range sends the file from the start again: drop what we have.
            const n = Math.min(skip, value.length);
            skip -= n;
            value = value.subarray(n);
            if (value.length === 0) continue;
          }
          got += value.length;
          stuck = 0;
          controller.enqueue(value);
          return;
        }
        if (total === null || got >= total) {
          if (chunk.broken) return fail(controller, namedError('NetworkError', `the download of ${url} broke off after ${got} bytes (${chunk.broken.message})`));
          return controller.close();
        }
        // Ended, broke off or stalled short of Content-Length: resume from where it stopped.
        let broken = chunk.broken;
        for (;;) {
          if (stuck === MAX_RESUMES) {
            const why = broken?.stalled
              ? `stalled at ${got} of ${total} bytes (${broken.stalled})`
              : `ended at ${got} of ${total} bytes (Content-Length)`;
            return fail(controller, namedError('NetworkError', `the download of ${url} ${why}, after ${stuck} resumed requests in a row that brought no new bytes`));
          }
          stuck += 1;
          let next;
          try {
            next = await get(url, { from: got, ifRange, stallMs });
          } catch (e) {
            // A resumed request whose answer does not come is one more resume without progress.
            if (e.stalled) {
              broken = e;
              continue;
            }
            return fail(controller, e);
          }
          if (cancelled) return next.abort();
          current = next;
          break;
        }
        const resp = current.resp;
        const changed = changedFile(validator, total, resp);
        if (changed) {
          return fail(controller, namedError('NetworkError', `the file at ${url} changed on the server while it downloaded (${changed}): ${got} bytes of the old file were already read, so it cannot go on; load it again`));
        }
        const range = /^bytes (\d+)-/.exec(resp.headers.get('content-range') ?? '');
        if (resp.status === 206 && range && Number(range[1]) === got) {
          skip = 0;
        } else if (resp.status === 200) {
          skip = got;
        } else {
          return fail(controller, namedError('NetworkError', `resuming ${url} at byte ${got}: the server answered ${resp.status} with Content-Range ${resp.headers.get('content-range')}`));
        }
        reader = resp.body.getReader();
      }
    },
    cancel(reason) {
      cancelled = true;
      return reader.cancel(reason);
    },
  });
}

// The next chunk of `reader`, or {done: true, broken} when the read fails or yields nothing for
// stallMs (then the response is cancelled: a half-open connection would never answer).
async function readWithin(reader, stallMs, response, url) {
  let timer;
  const stall = new Promise((resolve) => { timer = setTimeout(() => resolve(null), stallMs); });
  try {
    const chunk = await Promise.race([reader.read(), stall]);
    if (chunk) return chunk;
    response.abort();
    reader.cancel().catch(() => {});
    return { done: true, broken: stallError(url, stallMs) };
  } catch (e) {
    return { done: true, broken: e };
  } finally {
    clearTimeout(timer);
  }
}

// A NetworkError for a response (its headers or its next bytes) that did not come within stallMs;
// its `stalled` is "no bytes for <seconds> s".
function stallError(url, stallMs) {
  const stalled = `no bytes for ${stallMs / 1000} s`;
  const e = namedError('NetworkError', `${stalled} from ${url}: the connection stalled`);
  e.stalled = stalled;
  return e;
}

function validatorOf(resp) {
  return { etag: resp.headers.get('etag'), lastModified: resp.headers.get('last-modified') };
}

// Why a resumed response `resp` is not of the file that the first response (its validator, its
// total) began, or null. ETags compare weakly (W/ aside); a total of * or none says nothing.
function changedFile(first, total, resp) {
  const now = validatorOf(resp);
  const weak = (tag) => tag.replace(/^W\//, '');
  if (first.etag && now.etag) {
    if (weak(first.etag) !== weak(now.etag)) return `ETag ${first.etag}, then ${now.etag}`;
  } else if (first.lastModified && now.lastModified && first.lastModified !== now.lastModified) {
    return `Last-Modified ${first.lastModified}, then ${now.lastModified}`;
  }
  if (resp.status === 206) {
    const m = /^bytes \d+-\d+\/(\d+)$/.exec(resp.headers.get('content-range') ?? '');
    if (m && Number(m[1]) !== total) return `${total} bytes, then ${m[1]} in Content-Range`;
  } else if (resp.status === 200) {
    const n = contentLength(resp);
    if (n !== null && n !== total) return `${total} bytes, then ${n} in Content-Length`;
  }
  return null;
}

// sha256-<base64> (as in Subresource Integrity) or 64 hex digits, as lowercase hex.
export function parseIntegrity(integrity) {
  const s = String(integrity).trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return s.toLowerCase();
  const m = /^sha256-([A-Za-z0-9+/]{43}=)$/.exec(s);
  if (!m) throw namedError('InvalidRequestError', `integrity must be sha256-<base64> or 64 hex digits, not ${JSON.stringify(s)}`);
  return Array.from(atob(m[1]), (c) => c.charCodeAt(0).toString(16).padStart(2, '0')).join('');
}

// Drops a URL from the cache (e.g. after it turned out not to be a usable model).
export async function forget(model) {
  if (typeof model !== 'string' || typeof caches === 'undefined') return;
  await deleteCached(new URL(model, self.location.href).href);
}

// Where stored models live: 'cache' (Cache Storage) or 'none' (this context has no Cache Storage:
// e.g. an insecure origin; every load downloads).
export function STORAGE_KIND() {
  return typeof caches === 'undefined' ? 'none' : 'cache';
}

// Notes what is known of a model the cache holds (after a load that used it): its size, when it was
// stored (kept from the first note), and whether its SHA-256 was checked (integrity), once true
// staying true for the same digest.
export async function remember(model, { bytes, sha256 }) {
  if (typeof model !== 'string' || typeof caches === 'undefined') return;
  const url = new URL(model, self.location.href).href;
  const meta = await caches.open(META);
  const old = await readMeta(meta, url);
  const verified = sha256 ? true : !!(old?.verified);
  const entry = { url, bytes, storedAt: old?.storedAt ?? Date.now(), verified, sha256: sha256 ?? (old?.verified ? old.sha256 : null) };
  await meta.put(url, new Response(JSON.stringify(entry), { headers: { 'Content-Type': 'application/json' } }));
}

async function readMeta(meta, url) {
  try {
    return await (await meta.match(url))?.json() ?? null;
  } catch {
    return null;
  }
}

// [{url, bytes, storedAt, verified, sha256, storage}] for every model the cache holds.
export async function listCached() {
  if (typeof caches === 'undefined') return [];
  const cache = await caches.open(CACHE);
  const meta = await caches.open(META);
  const out = [];
  for (const req of await cache.keys()) {
    const m = await readMeta(meta, req.url);
    let bytes = m?.bytes ?? null;
    if (bytes == null) bytes = contentLength(await cache.match(req)) ?? null;
    out.push({ url: req.url, bytes, storedAt: m?.storedAt ?? null, verified: !!m?.verified, sha256: m?.sha256 ?? null, storage: 'cache' });
  }
  return out;
}

// Drops the model stored for an absolute URL and its note; true when the cache held it.
export async function deleteCached(url) {
  if (typeof caches === 'undefined') return false;
  const had = await (await caches.open(CACHE)).delete(url);
  await (await caches.open(META)).delete(url);
  return had;
}

// Drops every stored model; the number dropped. Entry by entry: a deleted Cache's space is given
// back only once no page or worker holds it open, an entry's at once.
export async function clearCached() {
  if (typeof caches === 'undefined') return 0;
  let n = 0;
  for (const name of [CACHE, META]) {
    const cache = await caches.open(name);
    for (const req of await cache.keys()) {
      if ((await cache.delete(req)) && name === CACHE) n += 1;
    }
  }
  return n;
}

function contentLength(resp) {
  const n = Number(resp.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : null;
}

export function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}
