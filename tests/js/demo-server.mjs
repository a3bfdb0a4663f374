// A tiny static file server for the demo test: www/ at /, pkg/ at /pkg/, the shared fixtures
// at /fixtures/ (the layout `./build.sh demo` serves, plus the fixtures). Supports HEAD and
// single Range requests, as a model host does. Listens on 127.0.0.1 only.

import { createServer } from 'node:http';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const fixturesDir = resolve(process.env.WEBCLIP_FIXTURES || join(repoRoot, '..', 'shared', 'fixtures'));

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm', '.css': 'text/css', '.md': 'text/markdown; charset=utf-8',
  '.png': 'image/png', '.jpg': 'image/jpeg', '.txt': 'text/plain', '.safetensors': 'application/octet-stream',
};

/** Starts the server; resolves to { url, port, close, requests } (requests: paths served, in order). */
export async function startDemoServer({ mounts } = {}) {
  const table = mounts ?? [
    ['/pkg/', join(repoRoot, 'pkg')],
    ['/fixtures/', fixturesDir],
    ['/', join(repoRoot, 'www')],
  ];
  const requests = [];
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    requests.push(path);
    const mount = table.find(([prefix]) => path.startsWith(prefix));
    let file = mount && normalize(join(mount[1], path.slice(mount[0].length)));
    if (!file || !(file + sep).startsWith(mount[1] + sep) && file !== mount[1]) return send(res, 403);
    let st = await stat(file).catch(() => null);
    if (st?.isDirectory()) {
      file = join(file, 'index.html');
      st = await stat(file).catch(() => null);
    }
    if (!st?.isFile()) return send(res, 404);
    const headers = {
      'content-type': TYPES[extname(file)] || 'application/octet-stream',
      'accept-ranges': 'bytes',
      'cache-control': 'no-cache',
      'access-control-allow-origin': '*',
    };
    const m = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range || '');
    let start = 0;
    let end = st.size - 1;
    if (m) {
      start = m[1] ? Number(m[1]) : st.size - Number(m[2]);
      end = m[1] && m[2] ? Math.min(Number(m[2]), st.size - 1) : st.size - 1;
      if (start > end || start < 0) return send(res, 416, { 'content-range': `bytes */${st.size}` });
      headers['content-range'] = `bytes ${start}-${end}/${st.size}`;
    }
    headers['content-length'] = end - start + 1;
    res.writeHead(m ? 206 : 200, headers);
    if (req.method === 'HEAD') return res.end();
    createReadStream(file, { start, end }).pipe(res);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address();
  return {
    port,
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () => new Promise((ok) => { server.closeAllConnections?.(); server.close(ok); }),
  };
}

function send(res, status, headers = {}) {
  res.writeHead(status, { 'content-type': 'text/plain', ...headers });
  res.end(status === 404 ? 'not found' : String(status));
}
