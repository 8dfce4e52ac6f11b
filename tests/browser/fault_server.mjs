// A test server on 127.0.0.1 that misbehaves on purpose: in front of `webllama serve` (everything
// else is proxied to it, so the page keeps one origin and its CSP), it serves a model file under
// /fault/<mode>/<file> with one fault per mode:
//   404        HTTP 404
//   403        HTTP 403
//   drop       the first response breaks off after DROP_AT bytes; Range requests are honoured
//   norange    the first response breaks off after DROP_AT bytes; Range is ignored (200, whole file)
//   short      every response ends cleanly after DROP_AT bytes, though Content-Length says more
//   lie        Content-Length is DROP_AT: the body is cut there (a size that disagrees with the file)
//   slow       the body trickles (64 KiB every 200 ms), for cancelling
//   tamper     as drop, but the resumed part has one byte changed (a hostile server's splice)
//   stall      the first response sends DROP_AT bytes, then nothing, its connection left open (half
//              open); Range requests are honoured
//   hang       as stall, and a Range request gets no answer at all (not even its headers)
//   flaky      every response, resumed ones too, breaks off after FLAKY_AT more bytes: far more
//              drops than the client's MAX_RESUMES, (nearly) each with progress; Range is honoured
//   changed    the first response (ETag "v1") breaks off after DROP_AT bytes; the file then changed:
//              a Range request is answered with ETag "v2", as 200 (the whole file) when it names
//              another validator in If-Range (it always does), else as 206
//   retotal    as drop, but the resumed 206 says in Content-Range that the file has another size
//   untagged   as drop, but the resumed 206 has no ETag (the first response had one)
//   hidden     as drop, but (with `cors`) the resumed 206 does not expose its Content-Range (S3's
//              and R2's default Access-Control-Expose-Headers)
//   chunked    the whole file with no Content-Length (chunked transfer encoding)
//   gzip       the whole file gzip-encoded (Content-Encoding: gzip), its Content-Length the encoded one's
//   endless    as chunked, but the file is followed by zeros for as long as the client reads
//   overlong   as drop, but the resumed 206 comes chunked (no Content-Length) and goes on past the
//              file's end with zeros for as long as the client reads
//   stallchanged  the first request gets ETag "v1" and DROP_AT bytes, then silence (as stall); then
//              the file changed: every later request is answered as `changed` answers a Range one
//              (ETag "v2"; 200, the whole file, for an If-Range that names another validator)
//   stallshrunk  the first request gets ETag "v1" and DROP_AT bytes, then silence (as stall); then
//              every Range request is refused (416, as for a file now shorter than the bytes kept)
//              and a plain one gets the file whole (ETag "v2")
//   held       a split model's later parts (not NAME-00001-of-N.gguf): a request without Range gets
//              HELD_AT bytes (the part's header) and then nothing, its connection left open, as a
//              browser holds the connection of a large response that is not read; a Range request
//              is answered at once (206). Other files are served whole.
//   heldchanged  as held, with ETag "v1"; then the part changed: a Range request gets the whole
//              file as 200 with ETag "v2" (its If-Range names "v1")
// Every response but 404 and 403 has an ETag (the file's size and mtime unless the mode says
// otherwise), and a Range request honoured is answered 200 (whole) when its If-Range names another.
// `log` lists "METHOD path range if-range=<If-Range>" (the last two when sent) for each fault
// request, and `bytesServed(prefix)` the body bytes sent for the requests whose log line starts with
// it. With `cors` (for a second server on another port, i.e. another origin) the fault
// responses allow any origin (and expose Content-Range and ETag), and so do the proxied ones (the
// page's scripts, as a CDN serves them); without, a cross-origin fetch of them is refused by the
// browser. `files` ({path: [content type, body]}) adds fixed answers (e.g. a
// test's own worker script).
import http from 'node:http';
import { statSync, createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

export const DROP_AT = 3_000_000;
export const FLAKY_AT = 1 << 20;
export const HELD_AT = 1024;
const LATER_PART = /-(?!00001-)\d{5}-of-\d{5}\.gguf$/;

export async function startFaultServer(upstreamUrl, modelsDir, { cors = false, files = {} } = {}) {
  const upstream = new URL(upstreamUrl);
  const log = [];
  const sent = [];
  const served = new Map();
  const server = http.createServer((req, res) => {
    if (Object.hasOwn(files, req.url)) return res.writeHead(200, { 'Content-Type': files[req.url][0] }).end(files[req.url][1]);
    const m = /^\/fault\/([a-z0-9]+)\/([^/]+)$/.exec(req.url);
    if (!m) return proxy(req, res, upstream, cors);
    const [, mode, file] = m;
    const ifRange = req.headers['if-range'];
    log.push([req.method, req.url, req.headers.range, ifRange !== undefined && `if-range=${ifRange}`].filter(Boolean).join(' '));
    countBody(res, sent, log.length - 1);
    const path = join(modelsDir, file);
    let size;
    let etag;
    try {
      const st = statSync(path);
      size = st.size;
      etag = `"${size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    } catch { res.writeHead(404).end(); return; }
    if (cors) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range, ETag');
    }
    const n = (served.get(req.url) ?? 0) + 1;
    served.set(req.url, n);
    if (mode === '404') return res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not here');
    if (mode === '403') return res.writeHead(403, { 'Content-Type': 'text/plain' }).end('forbidden');
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const octets = { 'Content-Type': 'application/octet-stream' };
    if (mode === 'stallshrunk' && n > 1) {
      if (range) return res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
      res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v2"' });
      return createReadStream(path).pipe(res);
    }
    if ((mode === 'stallchanged' || mode === 'stallshrunk') && n === 1) {
      res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v1"' });
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).pipe(res, { end: false });
    }
    if (mode === 'heldchanged' && LATER_PART.test(file)) {
      if (!range) {
        res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v1"' });
        return createReadStream(path, { start: 0, end: HELD_AT - 1 }).pipe(res, { end: false });
      }
      res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v2"' });
      return createReadStream(path).pipe(res);
    }
    if (mode === 'changed' || mode === 'stallchanged') {
      if (!range && mode === 'changed') {
        res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v1"' });
        return createReadStream(path, { start: 0, end: DROP_AT - 1 }).on('end', () => res.socket.destroy()).pipe(res, { end: false });
      }
      // The file is "v2" now (the same bytes here: only the validator tells the change).
      const from = range ? Number(range[1]) : 0;
      if (!range || (ifRange !== undefined && ifRange !== '"v2"')) {
        res.writeHead(200, { ...octets, 'Content-Length': size, ETag: '"v2"' });
        return createReadStream(path).pipe(res);
      }
      res.writeHead(206, { ...octets, 'Content-Length': size - from, 'Content-Range': `bytes ${from}-${size - 1}/${size}`, ETag: '"v2"' });
      return createReadStream(path, { start: from }).pipe(res);
    }
    res.setHeader('ETag', etag);
    const honoured = range && (ifRange === undefined || ifRange === etag);
    if (mode === 'hang' && range) {
      // Never answered; the client gives up on it (and the server's stop() closes it).
      return;
    }
    if (mode === 'flaky') {
      // From the byte asked for (0 for the first request), FLAKY_AT bytes, then the connection drops.
      const from = honoured ? Number(range[1]) : 0;
      const headers = from > 0 ? { ...octets, 'Content-Length': size - from, 'Content-Range': `bytes ${from}-${size - 1}/${size}` } : { ...octets, 'Content-Length': size };
      res.writeHead(from > 0 ? 206 : 200, headers);
      const part = readFileSync(path).subarray(from, from + FLAKY_AT);
      // Dropped a little after the part is flushed (not while it is still buffered), so that the
      // client has read it: a browser may discard what it had received but not yet read when the
      // connection breaks.
      return res.write(part, () => (from + FLAKY_AT < size ? setTimeout(() => res.socket.destroy(), 150) : res.end()));
    }
    if ((mode === 'drop' || mode === 'tamper' || mode === 'stall' || mode === 'hang' || mode === 'retotal' || mode === 'untagged' || mode === 'held' || mode === 'hidden') && honoured) {
      const from = Number(range[1]);
      const claimed = mode === 'retotal' ? size + 4096 : size;
      if (mode === 'untagged') res.removeHeader('ETag');
      if (mode === 'hidden' && cors) res.setHeader('Access-Control-Expose-Headers', 'Content-Length, ETag');
      res.writeHead(206, { ...octets, 'Content-Length': size - from, 'Content-Range': `bytes ${from}-${size - 1}/${claimed}` });
      if (mode === 'tamper') {
        // The file's last byte (tensor data) changed: still a loadable model, not the same one.
        const body = readFileSync(path).subarray(from);
        body[body.length - 1] ^= 0x40;
        return res.end(body);
      }
      return createReadStream(path, { start: from }).pipe(res);
    }
    if (mode === 'overlong' && honoured) {
      const from = Number(range[1]);
      res.writeHead(206, { ...octets, 'Content-Range': `bytes ${from}-${size - 1}/${size}` });
      const zeros = Buffer.alloc(1 << 20);
      const more = () => { while (!res.destroyed && res.write(zeros)); };
      return createReadStream(path, { start: from }).on('end', () => { res.on('drain', more); more(); }).pipe(res, { end: false });
    }
    if (mode === 'gzip') {
      const body = gzipSync(readFileSync(path));
      return res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip', 'Content-Length': body.length }).end(body);
    }
    if (mode === 'chunked') {
      // No Content-Length: the body comes chunked, its size unknown until it ends.
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      return createReadStream(path).pipe(res);
    }
    if (mode === 'endless') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
      const zeros = Buffer.alloc(1 << 20);
      const more = () => { while (!res.destroyed && res.write(zeros)); };
      // Zeros only once the file is written (the pipe waits for 'drain' too).
      return createReadStream(path).on('end', () => { res.on('drain', more); more(); }).pipe(res, { end: false });
    }
    if (mode === 'lie') {
      res.writeHead(200, { 'Content-Length': DROP_AT, 'Content-Type': 'application/octet-stream' });
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).pipe(res);
    }
    res.writeHead(200, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' });
    if (mode === 'short') {
      // End the response cleanly short of Content-Length: the client sees a body that stops early.
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).on('end', () => res.socket.destroy()).pipe(res, { end: false });
    }
    if ((mode === 'drop' || mode === 'norange' || mode === 'tamper' || mode === 'retotal' || mode === 'overlong' || mode === 'untagged' || mode === 'hidden') && n === 1) {
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).on('end', () => res.socket.destroy()).pipe(res, { end: false });
    }
    if (mode === 'held' && LATER_PART.test(file)) {
      // The part's header, then silence on an open connection (until the client closes it).
      return createReadStream(path, { start: 0, end: HELD_AT - 1 }).pipe(res, { end: false });
    }
    if (mode === 'stall' || mode === 'hang') {
      // DROP_AT bytes, then silence on an open connection (a half-open one, as the client sees it).
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).pipe(res, { end: false });
    }
    if (mode === 'slow') {
      const s = createReadStream(path, { highWaterMark: 64 << 10 });
      s.on('data', (chunk) => { s.pause(); res.write(chunk); setTimeout(() => s.resume(), 200); });
      s.on('end', () => res.end());
      res.on('close', () => s.destroy());
      return;
    }
    createReadStream(path).pipe(res);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  // stop() also closes the connections left open (stall, hang) or kept alive.
  const bytesServed = (prefix) => log.reduce((sum, line, i) => sum + (line.startsWith(prefix) ? sent[i] : 0), 0);
  return { url: `http://127.0.0.1:${server.address().port}/`, log, bytesServed, stop: () => { server.close(); server.closeAllConnections(); } };
}

// Counts the body bytes written to `res` into sent[i].
function countBody(res, sent, i) {
  sent[i] = 0;
  const count = (chunk) => {
    if (chunk && typeof chunk !== 'function') sent[i] += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
  };
  const write = res.write.bind(res);
  const end = res.end.bind(res);
  res.write = (chunk, ...rest) => { count(chunk); return write(chunk, ...rest); };
  res.end = (chunk, ...rest) => { count(chunk); return end(chunk, ...rest); };
}

// With `cors`, the upstream's files may be read from any origin too (a CDN's: the page's scripts
// imported from there).
function proxy(req, res, upstream, cors) {
  // The Host the upstream serves (webllama serve answers only requests that name it).
  const headers = { ...req.headers, host: upstream.host };
  const p = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers }, (up) => {
    res.writeHead(up.statusCode, cors ? { ...up.headers, 'access-control-allow-origin': '*' } : up.headers);
    up.pipe(res);
  });
  p.on('error', () => res.writeHead(502).end());
  req.pipe(p);
}
