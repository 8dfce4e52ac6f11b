// Model bytes as a stream, from the network (cached in Cache Storage by URL), the cache, or a local
// File; the caller counts bytes for progress. A download that fails midway never lands in the cache.

const CACHE = 'webllama-models-v1';

// {stream, total (bytes or null), source, cached: Promise (resolves once the cache holds the file)}
export async function openModel(model) {
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
  let resp;
  try {
    resp = await fetch(url);
  } catch (e) {
    throw namedError('NetworkError', `could not fetch ${url}: the network failed or the server does not allow cross-origin requests (${e.message})`);
  }
  if (!resp.ok) throw namedError('NetworkError', `HTTP ${resp.status} ${resp.statusText} for ${url}`);
  if (!resp.body) throw namedError('NetworkError', `empty response for ${url}`);
  // The cache reads its own copy of the body; if the download breaks, put() rejects and nothing is stored.
  const cached = cache ? cache.put(url, resp.clone()).catch(() => {}) : Promise.resolve();
  return { stream: resp.body, total: contentLength(resp), source: 'network', cached };
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
