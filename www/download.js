// Model bytes as a stream, from the network (stored as they arrive: model_store.js, OPFS or Cache
// Storage), the store, or a local File; the caller counts bytes for progress. A connection that
// drops midway is resumed with a Range request from the byte where it stopped (or, when the server
// ignores Range, read again from the start with the bytes already had skipped); so is one that
// stalls: a response whose headers or next bytes do not come within the stall timeout (openModel's
// stallTimeoutMs, 30 s by default) is cancelled and counts as broken. Resuming gives up after
// MAX_RESUMES resumed requests in a row that brought no new byte (however many resumes made progress
// before): a body that keeps ending short of its Content-Length is then an error that names both
// numbers, a connection that keeps stalling one that names the stall. The first response's validator
// (its ETag when strong, else its Last-Modified) goes with each Range request as If-Range, on the
// page's own origin only (If-Range is not a CORS-safelisted header: on another origin it would need
// a preflight the host might not answer). A resumed response (206, or a 200 for an If-Range that no
// longer matches) that shows the file changed on the server (an ETag other than the first
// response's, or none where no If-Range was sent; when the first had no ETag, another Last-Modified,
// or none where no If-Range was sent; a total in Content-Range or a Content-Length other than its
// Content-Length) is an error, not a fresh start: bytes of the old file were already fed to the
// loader. A 200 with the same validator (or none, when the first had none) is a server that ignores
// Range; so, in effect, is another origin that does not expose Content-Range: its 206 is dropped and
// the file asked for whole.
//
// Across reloads (OPFS only): the bytes of a download that did not finish stay in OPFS with the
// validator and total of the response they came from. The next load of the URL asks for the rest
// (Range from the bytes kept, If-Range with the validator on the page's origin; elsewhere the 206's
// own validator is compared) before it feeds the loader anything: a 206 from there of the same file
// continues it (the kept bytes read back from OPFS first, then the network's); anything else (a 200:
// the file changed, or the server ignores Range; a 206 of another file; a 416 for a file now
// shorter) starts over from byte 0. A 206 whose body runs past the file's length is an error.
// `integrity` (sha256-<base64> or 64 hex digits) is checked by the loader in wasm over exactly the
// bytes it is fed (network, resumed, kept and continued, or stored alike); the worker drops the stored
// copy of a model that fails it.

import { openStore, NO_STORE, contentLength, validatorOf } from './model_store.js';

const MAX_RESUMES = 5;
const STALL_TIMEOUT_MS = 30000;

// {stream, total (bytes or null), source ('network', 'cache': stored, 'file'), resumedFrom (bytes
// kept from an earlier load that this one continues), validator ({etag, lastModified} of the
// response the bytes come from, or null for a File), store (model_store.js: the worker tells it how
// the load ended, done() or failed(error), and it keeps or drops what it stored; or sets it aside,
// pause(), to open it again later)}.
// stallTimeoutMs: how long a network read may yield nothing before the connection counts as broken.
export async function openModel(model, integrity, { stallTimeoutMs } = {}) {
  if (integrity) parseIntegrity(integrity);
  if (stallTimeoutMs != null && !(typeof stallTimeoutMs === 'number' && Number.isFinite(stallTimeoutMs) && stallTimeoutMs > 0)) {
    throw namedError('InvalidRequestError', `stallTimeoutMs must be a positive number of milliseconds, not ${JSON.stringify(stallTimeoutMs)}`);
  }
  const stallMs = stallTimeoutMs ?? STALL_TIMEOUT_MS;
  if (typeof Blob !== 'undefined' && model instanceof Blob) {
    return { stream: model.stream(), total: model.size, source: 'file', resumedFrom: 0, validator: null, store: NO_STORE };
  }
  if (typeof model !== 'string' || model === '') throw namedError('InvalidRequestError', 'no model: give a URL or a File');
  const url = new URL(model, self.location.href).href;
  const store = await openStore(url);
  const hit = await store.match();
  if (hit) return { ...hit, source: 'cache', resumedFrom: 0, store };
  if (store.kind === 'opfs') {
    // Another load holding the file (another tab) leaves this one unstored.
    const unstored = async () => ({ ...(await fromNetwork(url, stallMs, null)), source: 'network', resumedFrom: 0, store: NO_STORE });
    if (!(await store.lock())) return unstored();
    if (store.record?.complete) {
      // Another tab finished the download between match() and lock(): its file is read, not
      // downloaded again (match() reads it without the lock; one that fails it downloads anew).
      store.close();
      const stored = await store.match();
      if (stored) return { ...stored, source: 'cache', resumedFrom: 0, store };
      if (!(await store.lock())) return unstored();
    }
    try {
      return { ...(await intoOpfs(url, stallMs, store)), source: 'network', store };
    } catch (e) {
      // What was kept stays for the next load (the request failed before a byte was read).
      await store.abandon().catch(() => {});
      throw e;
    }
  }
  return { ...(await fromNetwork(url, stallMs, store.kind === 'cache' ? store : null)), source: 'network', resumedFrom: 0, store };
}

// {stream, total, validator} of a download from byte 0; a Cache Storage entry (`cacheEntry`)
// stores a copy of the first response (whole, or not at all).
async function fromNetwork(url, stallMs, cacheEntry) {
  let first = await get(url, { stallMs });
  if (!first.resp.body) throw namedError('NetworkError', `empty response for ${url}`);
  const total = contentLength(first.resp);
  // Read through the cache's copy, which stores each chunk as it passes.
  if (cacheEntry) first = { ...first, resp: cacheEntry.put(first.resp) };
  return { stream: resumable(url, first, total, stallMs), total, validator: validatorOf(first.resp) };
}

// {stream, total, resumedFrom, validator} of a download written into OPFS (`entry`, locked) as it
// is read, continuing the bytes kept there when the server still has the same file.
async function intoOpfs(url, stallMs, entry) {
  const kept = entry.kept();
  let first = null;
  if (kept && kept.bytes >= kept.total) {
    // Every byte arrived before the last load ended: nothing to ask the server for.
    await entry.begin({ from: kept.bytes, total: kept.total, etag: kept.etag, lastModified: kept.lastModified });
    entry.whole = true;
    return { stream: entry.readKept(kept.bytes), total: kept.total, resumedFrom: kept.bytes, validator: validatorOf(kept) };
  }
  const keptIfRange = kept && sameOrigin(url) ? ifRangeOf(kept) : null;
  if (kept) {
    try {
      first = await get(url, { from: kept.bytes, ifRange: keptIfRange, stallMs });
    } catch (e) {
      // A 416 (the file is shorter now than the bytes kept) says they cannot be continued: start
      // over. Any other failure (the network, a 503) keeps them for the next load.
      if (e.status !== 416) throw e;
    }
  }
  if (first) {
    const resp = first.resp;
    if (resp.status === 206 && rangeStart(resp) === kept.bytes && !changedFile(kept, kept.total, resp, keptIfRange !== null) && resp.body) {
      await entry.begin({ from: kept.bytes, total: kept.total, etag: kept.etag, lastModified: kept.lastModified });
      const rest = entry.storing(resumable(url, first, kept.total, stallMs, { from: kept.bytes, validator: kept }), kept.bytes);
      return { stream: concat(entry.readKept(kept.bytes), rest), total: kept.total, resumedFrom: kept.bytes, validator: validatorOf(kept) };
    }
    // The file changed on the server (a 200 for the If-Range, or a 206 with another validator), or
    // the server ignores Range: start over, from this response when it is the whole file.
    if (resp.status !== 200) {
      first.abort();
      first = null;
    }
  }
  first ??= await get(url, { stallMs });
  if (!first.resp.body) throw namedError('NetworkError', `empty response for ${url}`);
  const total = contentLength(first.resp);
  await entry.begin({ from: 0, total, ...validatorOf(first.resp) });
  return { stream: entry.storing(resumable(url, first, total, stallMs), 0), total, resumedFrom: 0, validator: validatorOf(first.resp) };
}

// `a`'s chunks, then `b`'s.
function concat(a, b) {
  let reader = a.getReader();
  let second = false;
  return new ReadableStream({
    async pull(controller) {
      for (;;) {
        const chunk = await reader.read();
        if (!chunk.done) return controller.enqueue(chunk.value);
        if (second) return controller.close();
        second = true;
        reader = b.getReader();
      }
    },
    cancel(reason) {
      return Promise.all([reader.cancel(reason), second ? null : b.cancel(reason)]);
    },
  }, { highWaterMark: 0 });
}

const sameOrigin = (url) => new URL(url).origin === self.location.origin;

// The If-Range value for a validator {etag, lastModified}: a strong ETag or a date (or null).
function ifRangeOf(validator) {
  return validator.etag && !validator.etag.startsWith('W/') ? validator.etag : validator.lastModified ?? null;
}

// The first byte of a 206's Content-Range (NaN when it has none).
function rangeStart(resp) {
  const m = /^bytes (\d+)-/.exec(resp.headers.get('content-range') ?? '');
  return m ? Number(m[1]) : NaN;
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
    throw Object.assign(namedError('NetworkError', `HTTP ${resp.status} ${resp.statusText} for ${url}`), { status: resp.status });
  }
  return { resp, abort: () => ac.abort() };
}

// The body of `first` ({resp, abort}), continued by Range requests when it breaks off (or stalls)
// before `total` bytes. With `from`, `first` is a 206 from that byte of the file whose validator
// (that of the response the bytes before it came from) is `validator`.
function resumable(url, first, total, stallMs, { from = 0, validator = validatorOf(first.resp) } = {}) {
  // If-Range takes a strong ETag or a date; on another origin it is not sent (see the top).
  const ifRange = sameOrigin(url) ? ifRangeOf(validator) : null;
  let current = first;
  let reader = first.resp.body.getReader();
  let got = from;
  let skip = 0;
  // Resumed requests in a row that brought no new byte.
  let stuck = 0;
  // Whether the server's 206s hide where they start (another origin, Content-Range not exposed).
  let rangeHidden = false;
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
          // A body past the file's length (a chunked 206 that does not end) is refused, not read
          // for as long as it lasts (a first response stops at its Content-Length).
          if (total !== null && got + value.length > total && current.resp.status === 206) {
            const e = namedError('NetworkError', `resuming ${url}: the server sent more than the file's ${total} bytes`);
            // Nor are the bytes kept so far trusted: the store drops them.
            e.changedFile = true;
            return fail(controller, e);
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
            next = await get(url, rangeHidden ? { stallMs } : { from: got, ifRange, stallMs });
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
        const changed = changedFile(validator, total, resp, ifRange !== null && resp.status === 206);
        if (changed) {
          const e = namedError('NetworkError', `the file at ${url} changed on the server while it downloaded (${changed}): ${got} bytes of the old file were already read, so it cannot go on; load it again`);
          // The bytes kept so far are of the old file: the store drops them.
          e.changedFile = true;
          return fail(controller, e);
        }
        if (resp.status === 206 && rangeStart(resp) === got) {
          skip = 0;
        } else if (resp.status === 200) {
          skip = got;
        } else if (resp.status === 206 && resp.headers.get('content-range') === null) {
          // Another origin that does not expose Content-Range (Access-Control-Expose-Headers; S3's
          // and R2's defaults): where its 206 starts can't be read. It is dropped, and this and
          // every later resume asks for the file whole, skipping the bytes already had.
          rangeHidden = true;
          current.abort();
          reader = ended();
          continue;
        } else {
          return fail(controller, namedError('NetworkError', `resuming ${url} at byte ${got}: the server answered ${resp.status} with Content-Range ${resp.headers.get('content-range')}`));
        }
        reader = current.resp.body.getReader();
      }
    },
    cancel(reason) {
      cancelled = true;
      // The request too (its connection); Cache Storage's copy ends with the reader.
      current.abort();
      return reader.cancel(reason);
    },
  });
}

// A reader that has nothing (a response dropped: the next read resumes).
function ended() {
  return new ReadableStream({ start: (c) => c.close() }).getReader();
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

// An ETag as a weak comparison sees it (W/ aside).
const weakTag = (tag) => tag.replace(/^W\//, '');

// Whether two opens of a file are of the same file, as their validators tell (null: a File). ETags
// compare weakly; without an ETag at first, Last-Modified; with neither, nothing tells them apart.
export function sameValidator(first, now) {
  if (first === null || now === null) return first === now;
  if (first.etag) return !!now.etag && weakTag(first.etag) === weakTag(now.etag);
  if (first.lastModified) return now.lastModified === first.lastModified;
  return true;
}

// Why a resumed response `resp` is not of the file that the first response (its validator, its
// total) began, or null; `validated`: it is a 206 for a request with If-Range. ETags compare weakly
// (W/ aside); a total of * or none says nothing. Without an ETag at first, its Last-Modified is
// compared.
function changedFile(first, total, resp, validated = false) {
  const now = validatorOf(resp);
  // A validator the first response had and this one lacks can't be compared: that fails closed,
  // unless the server checked it (a 206 for a request whose If-Range named it: RFC 9110 lets that
  // 206 leave out Last-Modified).
  if (first.etag) {
    if (!now.etag && !validated) return `ETag ${first.etag}, then none`;
    if (now.etag && weakTag(first.etag) !== weakTag(now.etag)) return `ETag ${first.etag}, then ${now.etag}`;
  } else if (first.lastModified && (now.lastModified ? now.lastModified !== first.lastModified : !validated)) {
    return `Last-Modified ${first.lastModified}, then ${now.lastModified ?? 'none'}`;
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

export function namedError(name, message) {
  const e = new Error(message);
  e.name = name;
  return e;
}
