// A tiny static server for the tests and the demo, on 127.0.0.1 only.
//
//   /pkg/...       the built package (pkg/)
//   /pages/...     the browser tests' pages (tests/js/pages/)
//   /fixtures/...  the reference models and images (../shared/fixtures, or $WEBCLIP_FIXTURES)
//   /...           the demo (www/), when started with --www
//
// It answers single-range `Range` requests with 206, logs every request (path, range,
// status, bytes sent) so tests can check what went over the wire, sends `no-store` so
// the browser's HTTP cache never hides a request, and injects faults by path prefix:
//
//   /norange/<path>   ignores Range (200 with the whole file)
//   /html/<path>      an HTML page with status 200, as a misconfigured host sends
//   /cut/<path>       announces the full Content-Length, sends half, drops the connection
//   /short/<path>     serves the first half of the file as if it were all of it
//   /missing/<path>   404
//
// and, for a retry to meet a working server at the same URL, `cutNext(suffix, over)`: the
// next request for a path ending with `suffix` whose body is over `over` bytes is cut as
// /cut/ cuts it; later ones are served.

import { createServer } from 'node:http';
import { createReadStream, existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '../..');
export const fixturesDir = process.env.WEBCLIP_FIXTURES
  ? path.resolve(process.env.WEBCLIP_FIXTURES)
  : path.resolve(repoRoot, '../shared/fixtures');

const TYPES = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.ts': 'text/plain',
  '.md': 'text/plain',
};

const FAULTS = ['norange', 'html', 'cut', 'short', 'missing'];

/** The package a demo folder runs with: the one built beside it (`www/../pkg`, as in a
 * checkout: an older checkout's demo runs with its own), else this checkout's. */
const packageFor = (www) =>
  www && existsSync(path.join(www, '..', 'pkg', 'index.js')) ? path.join(www, '..', 'pkg') : path.join(repoRoot, 'pkg');

export async function startServer({ port = 0, www = null, pkg = packageFor(www), isolated: isolateAll = false, mounts: extra = [] } = {}) {
  // `extra`: more [prefix, folder] pairs (a benchmark's model folder), ahead of the demo's `/`.
  // `pkg`: the package served at /pkg/ (by default the one beside `www`).
  const mounts = [
    ['/pkg/', path.resolve(pkg)],
    ['/pages/', path.join(here, 'pages')],
    ['/fixtures/', fixturesDir],
    ...extra.map(([prefix, dir]) => [prefix, path.resolve(dir)]),
  ];
  if (www) mounts.push(['/', path.resolve(www)]);
  const log = [];
  const cutOnce = [];

  const server = createServer(async (req, res) => {
    const entry = { method: req.method, path: '', range: req.headers.range ?? null, status: 0, bytes: 0 };
    log.push(entry);
    let url = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    let fault = null;
    // `/isolated/...`: the same files, cross-origin isolated (COOP + COEP), as a page needs
    // for SharedArrayBuffer and so for webclip's threaded builds.
    const isolated = isolateAll || url.startsWith('/isolated/');
    if (url.startsWith('/isolated/')) url = url.slice('/isolated'.length);
    const m = /^\/([a-z]+)(\/.*)$/.exec(url);
    if (m && FAULTS.includes(m[1])) [fault, url] = [m[1], m[2]];
    entry.path = url;
    entry.fault = fault;
    const send = (status, body, type = 'text/plain') => {
      entry.status = status;
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
      entry.bytes = Buffer.byteLength(body);
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed');
    const mount = mounts.find(([prefix]) => url.startsWith(prefix));
    if (!mount) return send(404, 'not found');
    let file = path.normalize(path.join(mount[1], url.slice(mount[0].length)));
    if (!file.startsWith(mount[1])) return send(403, 'forbidden');
    let stat = await fs.stat(file).catch(() => null);
    if (stat?.isDirectory()) {
      file = path.join(file, 'index.html');
      stat = await fs.stat(file).catch(() => null);
    }
    if (!stat || fault === 'missing') return send(404, `not found: ${url}`);
    if (fault === 'html') {
      return send(200, '<!DOCTYPE html><html><body><h1>Welcome</h1><p>Sign in to continue.</p></body></html>', TYPES['.html']);
    }
    const type = TYPES[path.extname(file)] ?? 'application/octet-stream';
    let size = stat.size;
    if (fault === 'short') size = Math.floor(size / 2);
    const headers = {
      'content-type': type,
      'cache-control': 'no-store',
      'access-control-allow-origin': '*',
      'access-control-expose-headers': 'content-length, content-range',
    };
    if (fault !== 'norange') headers['accept-ranges'] = 'bytes';
    if (isolated) {
      headers['cross-origin-opener-policy'] = 'same-origin';
      headers['cross-origin-embedder-policy'] = 'require-corp';
    }
    let start = 0;
    let end = size; // exclusive
    let status = 200;
    const r = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (r && fault !== 'norange') {
      if (r[1] === '') [start, end] = [Math.max(0, size - Number(r[2])), size];
      else [start, end] = [Number(r[1]), r[2] === '' ? size : Math.min(size, Number(r[2]) + 1)];
      if (start >= size || start >= end) {
        entry.status = 416;
        res.writeHead(416, { 'content-range': `bytes */${size}`, 'cache-control': 'no-store' });
        return res.end();
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end - 1}/${size}`;
    }
    headers['content-length'] = String(end - start);
    const once = fault ? -1 : cutOnce.findIndex((c) => url.endsWith(c.suffix) && end - start > c.over);
    if (once >= 0) {
      cutOnce.splice(once, 1);
      fault = entry.fault = 'cut';
    }
    entry.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return res.end();
    if (fault === 'cut') {
      // Half the body, then a dropped connection: the client sees a short read.
      const half = start + Math.floor((end - start) / 2);
      const stream = createReadStream(file, { start, end: Math.max(start, half - 1) });
      stream.on('data', (c) => {
        entry.bytes += c.length;
        res.write(c);
      });
      stream.on('end', () => setTimeout(() => res.destroy(), 50));
      return;
    }
    const stream = createReadStream(file, { start, end: end - 1 });
    stream.on('data', (c) => (entry.bytes += c.length));
    stream.pipe(res);
  });
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const { port: actual } = server.address();
  return {
    url: `http://127.0.0.1:${actual}`,
    log,
    /** Requests whose path ends with `suffix` (faults stripped). */
    requests: (suffix) => log.filter((e) => e.path.endsWith(suffix)),
    clearLog: () => log.splice(0),
    /** Cut the next request for `suffix` with a body over `over` bytes (see above). */
    cutNext: (suffix, over = 0) => cutOnce.push({ suffix, over }),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}

// `node tests/js/server.js [--port 8080] [--www www] [--isolated]`: serve until stopped
// (--isolated: every response cross-origin isolated, so the demo runs on every core).
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : dflt;
  };
  const s = await startServer({ port: Number(arg('--port', 8080)), www: arg('--www', null), isolated: process.argv.includes('--isolated') });
  console.log(`serving on ${s.url}/  (package: ${s.url}/pkg/, fixtures: ${s.url}/fixtures/)`);
  if (process.argv.includes('--log')) {
    setInterval(() => {
      for (const e of s.log.splice(0)) console.log(`${e.status} ${e.method} ${e.path}${e.range ? ` [${e.range}]` : ''} ${e.bytes} B`);
    }, 500);
  }
}
