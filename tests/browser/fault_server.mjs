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
// `log` lists "METHOD path range" for each fault request. With `cors` (for a second server on another
// port, i.e. another origin) the fault responses allow any origin; without, a cross-origin fetch of
// them is refused by the browser.
import http from 'node:http';
import { statSync, createReadStream, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const DROP_AT = 3_000_000;

export async function startFaultServer(upstreamUrl, modelsDir, { cors = false } = {}) {
  const upstream = new URL(upstreamUrl);
  const log = [];
  const served = new Map();
  const server = http.createServer((req, res) => {
    const m = /^\/fault\/([a-z0-9]+)\/([^/]+)$/.exec(req.url);
    if (!m) return proxy(req, res, upstream);
    const [, mode, file] = m;
    log.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`.trim());
    const path = join(modelsDir, file);
    let size;
    try { size = statSync(path).size; } catch { res.writeHead(404).end(); return; }
    if (cors) {
      res.setHeader('Access-Control-Allow-Origin', '*');
      res.setHeader('Access-Control-Expose-Headers', 'Content-Length, Content-Range');
    }
    const n = (served.get(req.url) ?? 0) + 1;
    served.set(req.url, n);
    if (mode === '404') return res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not here');
    if (mode === '403') return res.writeHead(403, { 'Content-Type': 'text/plain' }).end('forbidden');
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if ((mode === 'drop' || mode === 'tamper') && range) {
      const from = Number(range[1]);
      res.writeHead(206, { 'Content-Length': size - from, 'Content-Range': `bytes ${from}-${size - 1}/${size}`, 'Content-Type': 'application/octet-stream' });
      if (mode === 'tamper') {
        // The file's last byte (tensor data) changed: still a loadable model, not the same one.
        const body = readFileSync(path).subarray(from);
        body[body.length - 1] ^= 0x40;
        return res.end(body);
      }
      return createReadStream(path, { start: from }).pipe(res);
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
    if ((mode === 'drop' || mode === 'norange' || mode === 'tamper') && n === 1) {
      return createReadStream(path, { start: 0, end: DROP_AT - 1 }).on('end', () => res.socket.destroy()).pipe(res, { end: false });
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
  return { url: `http://127.0.0.1:${server.address().port}/`, log, stop: () => server.close() };
}

function proxy(req, res, upstream) {
  // The Host the upstream serves (webllama serve answers only requests that name it).
  const headers = { ...req.headers, host: upstream.host };
  const p = http.request({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers }, (up) => {
    res.writeHead(up.statusCode, up.headers);
    up.pipe(res);
  });
  p.on('error', () => res.writeHead(502).end());
  req.pipe(p);
}
