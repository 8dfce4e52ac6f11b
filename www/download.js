// Model bytes as a stream, from the network (cached in Cache Storage by URL), the cache, or a local
// File; the caller counts bytes for progress. A connection that drops midway is resumed with a Range
// request from the byte where it stopped (or, when the server ignores Range, read again from the
// start with the bytes already had skipped); a body that ends short of its Content-Length is an
// error that names both numbers. Only a download that arrived whole in one response is cached; a
// partial one never lands in the cache. `integrity` (sha256-<base64> or 64 hex digits) is checked
// by the loader in wasm over exactly the bytes it is fed (from the network, a resumed download or
// the cache alike); the worker drops the cache entry of a model that fails it.

const CACHE = 'webllama-models-v1';

// {stream, total (bytes or null), source, cached: Promise (resolves once the cache holds the file)}
export async function openModel(model, integrity) {
  if (integrity) parseIntegrity(integrity);
  if (typeof Blob !== 'undefined' && model instanceof Blob) {
    return { stream: model.stream(), total: model.size, source: 'file', cached: Promise.resolve() };
  }
  if (typeof model !== 'string' || model === '') throw namedError('InvalidRequestError', 'no model: give a URL or a File');
  const url = new URL(model, self.location.href).href;
  const cache = typeof caches !== 'undefined' ? await caches.open(CACHE) : null;
  const hit = cache ? await cache.match(url) : undefined;
  if (hit) {
    return { stream: hit.body, total: contentLength(hit), source: 'cache', cached: Promise.resolve() };
  }
  const resp = await get(url);
  if (!resp.body) throw namedError('NetworkError', `empty response for ${url}`);
  const total = contentLength(resp);
  // The cache reads its own copy of the body; if that response breaks (or the cache refuses it: a
  // quota, Vary: *), put() rejects and nothing is stored. The copy it stores is the first response
  // whole, the bytes the loader verifies.
  const cached = cache ? cache.put(url, resp.clone()).catch(() => {}) : Promise.resolve();
  return { stream: resumable(url, resp, total), total, source: 'network', cached };
}

const MAX_RESUMES = 5;

async function get(url, from = 0) {
  let resp;
  try {
    resp = await fetch(url, from > 0 ? { headers: { Range: `bytes=${from}-` } } : {});
  } catch (e) {
    throw namedError('NetworkError', `could not fetch ${url}: the network failed, the server does not allow cross-origin requests, or the worker's Content-Security-Policy does not allow the host (${e.message})`);
  }
  if (!resp.ok) throw namedError('NetworkError', `HTTP ${resp.status} ${resp.statusText} for ${url}`);
  return resp;
}

// The body of `first`, continued by Range requests when it breaks off before `total` bytes.
function resumable(url, first, total) {
  let reader = first.body.getReader();
  let got = 0;
  let skip = 0;
  let resumes = 0;
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          chunk = { done: true, broken: e };
        }
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
          controller.enqueue(value);
          return;
        }
        if (total === null || got >= total) {
          if (chunk.broken) return controller.error(namedError('NetworkError', `the download of ${url} broke off after ${got} bytes (${chunk.broken.message})`));
          return controller.close();
        }
        // Ended or broke off short of Content-Length: resume from where it stopped.
        if (resumes === MAX_RESUMES) {
          return controller.error(namedError('NetworkError', `the download of ${url} ended at ${got} of ${total} bytes (Content-Length) after ${resumes} resumed requests`));
        }
        resumes += 1;
        const resp = await get(url, got).catch((e) => e);
        if (resp instanceof Error) return controller.error(resp);
        const range = /^bytes (\d+)-/.exec(resp.headers.get('content-range') ?? '');
        if (resp.status === 206 && range && Number(range[1]) === got) {
          skip = 0;
        } else if (resp.status === 200) {
          skip = got;
        } else {
          return controller.error(namedError('NetworkError', `resuming ${url} at byte ${got}: the server answered ${resp.status} with Content-Range ${resp.headers.get('content-range')}`));
        }
        reader = resp.body.getReader();
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
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
  const cache = await caches.open(CACHE);
  await cache.delete(new URL(model, self.location.href).href);
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
