// Where model files come from and how their bytes get here: HTTP (with progress, Range
// requests for one tower, Cache Storage), Blobs, ArrayBuffers and, in Node.js, file paths.
// Every failure is an Error that names the file and, for downloads, the URL, with a `code`
// (errors.js): `not-found`, `network`, `io`, `bad-weights`, `bad-input`.

import { wasm } from './wasm.js';
import { webclipError } from './errors.js';

export const isNode =
  typeof process !== 'undefined' && !!process.versions?.node && typeof window === 'undefined';

const CACHE_NAME = 'webclip-v1';

/** `{ kind: 'url' | 'path' | 'bytes' | 'blob', ... }` from what the caller gave. */
export function toSource(value, what) {
  if (value == null) return null;
  if (typeof value === 'string' || value instanceof URL) {
    const s = String(value);
    if (/^(https?|blob|data):/i.test(s)) return { kind: 'url', url: s, what };
    if (/^file:/i.test(s)) {
      if (!isNode) throw webclipError('bad-input', `webclip: cannot read ${what} from a file: URL in a browser (${s})`);
      return { kind: 'path', path: s, what };
    }
    if (isNode) return { kind: 'path', path: s, what };
    // A relative URL in the browser: resolved by the main thread before it gets here.
    return { kind: 'url', url: new URL(s, globalThis.location?.href).href, what };
  }
  if (typeof Blob !== 'undefined' && value instanceof Blob) return { kind: 'blob', blob: value, what };
  if (value instanceof ArrayBuffer) return { kind: 'bytes', bytes: new Uint8Array(value), what };
  if (ArrayBuffer.isView(value)) {
    return { kind: 'bytes', bytes: new Uint8Array(value.buffer, value.byteOffset, value.byteLength), what };
  }
  throw webclipError(
    'bad-input',
    `webclip: ${what} must be a URL, a file path (Node.js), a Blob, an ArrayBuffer or a Uint8Array, not ${describe(value)}`,
  );
}

function describe(v) {
  return v === null ? 'null' : typeof v === 'object' ? v.constructor?.name ?? 'an object' : typeof v;
}

function where(src) {
  return src.kind === 'url' ? ` from ${src.url}` : src.kind === 'path' ? ` from ${src.path}` : '';
}

// ---------------------------------------------------------------------------------------
// HTTP

async function httpFetch(src, range) {
  const headers = range ? { Range: `bytes=${range[0]}-${range[1] - 1}` } : {};
  let res;
  try {
    res = await fetch(src.url, { headers });
  } catch (e) {
    throw webclipError('network', `webclip: could not download ${src.what} from ${src.url}: ${e?.message ?? e}`, e);
  }
  if (!res.ok) {
    const [code, why] = res.status === 404 ? ['not-found', 'not found'] : ['network', 'the server refused it'];
    throw webclipError(code, `webclip: ${src.what} ${why} at ${src.url} (HTTP ${res.status} ${res.statusText})`.trimEnd());
  }
  const type = res.headers.get('content-type') ?? '';
  if (/text\/html/i.test(type)) {
    res.body?.cancel().catch(() => {});
    throw webclipError(
      'network',
      `webclip: ${src.url} returned an HTML page, not ${src.what}: is the model URL right (a folder with config.json, model.safetensors, ...)?`,
    );
  }
  return res;
}

/** Read a response body, reporting each chunk; `expected` bytes when known. */
async function readBody(res, src, expected, onBytes) {
  const reader = res.body.getReader();
  let buf = expected > 0 ? new Uint8Array(expected) : null;
  const chunks = [];
  let got = 0;
  for (;;) {
    let step;
    try {
      step = await reader.read();
    } catch (e) {
      throw webclipError(
        'network',
        `webclip: download of ${src.what} from ${src.url} failed after ${got}${expected > 0 ? ` of ${expected}` : ''} bytes: ${e?.message ?? e}`,
        e,
      );
    }
    if (step.done) break;
    const chunk = step.value;
    if (buf && got + chunk.length <= buf.length) buf.set(chunk, got);
    else {
      // More than announced (a compressed body whose Content-Length is the wire size).
      if (buf) chunks.push(buf.subarray(0, got));
      buf = null;
      chunks.push(chunk);
    }
    got += chunk.length;
    onBytes?.(chunk.length);
  }
  if (buf) {
    if (got < expected) {
      throw webclipError(
        'network',
        `webclip: truncated download of ${src.what} from ${src.url}: got ${got} of ${expected} bytes`,
      );
    }
    return buf;
  }
  return concat(chunks, got);
}

function concat(chunks, total) {
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

const contentLength = (res) => {
  const n = Number(res.headers.get('content-length'));
  return Number.isFinite(n) && n > 0 ? n : 0;
};

/** `[start, end)` of the file by HTTP Range; `null` when the server sent the whole file. */
async function httpRange(src, start, end, onBytes) {
  const res = await httpFetch(src, [start, end]);
  if (res.status !== 206) return { whole: res };
  const m = /bytes\s+(\d+)-(\d+)\/(\d+|\*)/i.exec(res.headers.get('content-range') ?? '');
  if (!m || Number(m[1]) !== start || Number(m[2]) !== end - 1) {
    res.body?.cancel().catch(() => {});
    throw webclipError(
      'network',
      `webclip: ${src.url} answered a request for bytes ${start}-${end - 1} with ${res.headers.get('content-range') ?? 'no Content-Range'}`,
    );
  }
  const bytes = await readBody(res, src, end - start, onBytes);
  return { bytes, size: m[3] === '*' ? 0 : Number(m[3]) };
}

// ---------------------------------------------------------------------------------------
// Cache Storage: entries carry their length and a checksum, so a truncated or corrupted
// entry is found and downloaded again rather than fed to the model.

function cacheKey(url, part) {
  const u = new URL(url);
  if (part) u.searchParams.set('webclip-part', part);
  return u.href;
}

/** FNV-style 32-bit hash over 32-bit words (about 1 GB/s in V8): catches torn writes and bit rot. */
export function checksum(bytes) {
  let h = 0x811c9dc5 ^ bytes.length;
  const words = bytes.byteOffset % 4 === 0 ? new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2) : null;
  const n4 = bytes.length >> 2;
  if (words) for (let i = 0; i < n4; i++) h = Math.imul(h ^ words[i], 0x01000193) ^ (h >>> 15);
  else {
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < n4; i++) h = Math.imul(h ^ dv.getInt32(i * 4, true), 0x01000193) ^ (h >>> 15);
  }
  for (let i = n4 * 4; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16);
}

/** Entries larger than this are stored as chunks of this size (Chromium fails to store a single 600 MB Response). */
export const CHUNK_BYTES = 32 << 20;

/**
 * Cache Storage (`webclip-v1`) for model files. An entry is one Response of the bytes, or,
 * above `chunkBytes`, a manifest Response (no body; `x-webclip-chunks: N`) written after N
 * chunk Responses (`?webclip-chunk=i`). Every Response carries its length and checksum, and
 * every chunk is checked when read: a damaged, truncated or missing chunk drops the whole
 * entry (a console warning) and the file is downloaded again. A write the browser refuses
 * (`QuotaExceededError`, or Chromium's "Unexpected internal error") removes what it wrote and
 * sets `notice`: the model stays in memory for this session and is downloaded next time.
 */
export class ByteCache {
  static async open(enabled, { chunkBytes = CHUNK_BYTES } = {}) {
    if (!enabled || typeof caches === 'undefined') return null;
    try {
      return new ByteCache(await caches.open(CACHE_NAME), chunkBytes);
    } catch {
      return null; // opaque origins and some private modes have no Cache Storage
    }
  }

  /** Delete every cached model file; resolves to whether there was anything to delete. */
  static async clear() {
    if (typeof caches === 'undefined') return false;
    try {
      await caches.delete('webclip-auto-v1'); // auto's measured verdicts (engine.js)
      return await caches.delete(CACHE_NAME);
    } catch (e) {
      throw webclipError('unsupported', `webclip: Cache Storage cannot be cleared here: ${e?.message ?? e}`, e);
    }
  }

  constructor(cache, chunkBytes = CHUNK_BYTES) {
    this.cache = cache;
    this.chunkBytes = chunkBytes;
    /** Why a file could not be cached this time (`clip.cacheNotice`; null while every
     * write succeeded): the first failure, with the file and the browser's error. */
    this.notice = null;
  }

  /** Bytes of one Response, checked against its length and checksum headers; null when damaged. */
  async read(key) {
    let res;
    try {
      res = await this.cache.match(key);
    } catch {
      return null;
    }
    if (!res) return undefined;
    let bytes;
    try {
      bytes = new Uint8Array(await res.arrayBuffer());
    } catch {
      bytes = null;
    }
    const h = (name) => res.headers.get(name);
    const chunks = Number(h('x-webclip-chunks'));
    if (chunks > 0) return { manifest: true, chunks, length: Number(h('x-webclip-length')), size: Number(h('x-webclip-file-size')) || 0 };
    if (!bytes || bytes.length !== Number(h('x-webclip-length')) || checksum(bytes) !== h('x-webclip-checksum')) return null;
    return { bytes, size: Number(h('x-webclip-file-size')) || 0 };
  }

  async get(url, part) {
    const key = cacheKey(url, part);
    const entry = await this.read(key);
    if (entry === undefined) return null;
    if (entry?.manifest) {
      const out = new Uint8Array(entry.length);
      let at = 0;
      for (let i = 0; i < entry.chunks; i++) {
        const chunk = await this.read(chunkKey(key, i));
        if (!chunk?.bytes || at + chunk.bytes.length > out.length) return this.drop(key, entry.chunks, `chunk ${i} of ${entry.chunks}`);
        out.set(chunk.bytes, at);
        at += chunk.bytes.length;
      }
      if (at !== out.length) return this.drop(key, entry.chunks, `${at} of ${out.length} bytes`);
      return { bytes: out, size: entry.size };
    }
    if (!entry) return this.drop(key, 0, 'its checksum or length');
    return entry;
  }

  async drop(key, chunks, what) {
    console.warn(`webclip: the cached copy of ${key} is damaged (${what}); downloading it again`);
    await this.remove(key, chunks);
    return null;
  }

  async remove(key, chunks) {
    await this.cache.delete(key).catch(() => {});
    for (let i = 0; i < chunks; i++) await this.cache.delete(chunkKey(key, i)).catch(() => {});
  }

  /** Store `bytes`; resolves to whether it was stored (else `notice` says why). */
  async put(url, part, bytes, size = bytes.length) {
    const key = cacheKey(url, part);
    const n = bytes.length > this.chunkBytes ? Math.ceil(bytes.length / this.chunkBytes) : 0;
    const entry = (body, length, extra = {}) =>
      new Response(body, {
        headers: {
          'content-type': 'application/octet-stream',
          'x-webclip-length': String(length),
          'x-webclip-checksum': body ? checksum(body) : '',
          'x-webclip-file-size': String(size),
          ...extra,
        },
      });
    try {
      if (!n) await this.cache.put(key, entry(bytes, bytes.length));
      else {
        for (let i = 0; i < n; i++) {
          const c = bytes.subarray(i * this.chunkBytes, Math.min(bytes.length, (i + 1) * this.chunkBytes));
          await this.cache.put(chunkKey(key, i), entry(c, c.length));
        }
        // The manifest last: until it is there, a reader sees no entry at all.
        await this.cache.put(key, entry(null, bytes.length, { 'x-webclip-chunks': String(n) }));
      }
      return true;
    } catch (e) {
      // Out of quota is not fatal: the model still loads, it is just not cached.
      await this.remove(key, n);
      const notice =
        `webclip: could not store ${url} in Cache Storage (${e?.name ?? 'Error'}: ${e?.message ?? e}); ` +
        'the model is kept in memory for this session and will be downloaded again next time';
      this.notice ??= notice;
      console.warn(notice);
      return false;
    }
  }
}

function chunkKey(key, i) {
  const u = new URL(key);
  u.searchParams.set('webclip-chunk', String(i));
  return u.href;
}

// ---------------------------------------------------------------------------------------
// Whole small files (config, tokenizer, preprocessor)

async function localFile(src) {
  const fs = await import(/* webpackIgnore: true */ 'node:fs/promises');
  const path = /^file:/i.test(src.path) ? new URL(src.path) : src.path;
  try {
    return await fs.open(path, 'r');
  } catch (e) {
    const code = e?.code === 'ENOENT' ? 'not-found' : 'io';
    throw webclipError(code, `webclip: cannot open ${src.what} at ${src.path}: ${e.message}`, e);
  }
}

/** All bytes of one file; `progress(loaded, total)` as they arrive. */
export async function readWhole(src, progress, cache) {
  if (src.kind === 'bytes') {
    progress(src.bytes.length, src.bytes.length);
    return src.bytes;
  }
  if (src.kind === 'blob') {
    const bytes = new Uint8Array(await src.blob.arrayBuffer());
    progress(bytes.length, bytes.length);
    return bytes;
  }
  if (src.kind === 'path') {
    const fh = await localFile(src);
    try {
      const bytes = new Uint8Array(await fh.readFile());
      progress(bytes.length, bytes.length);
      return bytes;
    } finally {
      await fh.close();
    }
  }
  const hit = await cache?.get(src.url);
  if (hit) {
    progress(hit.bytes.length, hit.bytes.length);
    return hit.bytes;
  }
  const res = await httpFetch(src);
  const bytes = await readResponse(res, src, progress);
  await cache?.put(src.url, null, bytes);
  return bytes;
}

async function readResponse(res, src, progress) {
  const total = contentLength(res);
  let loaded = 0;
  progress(0, total);
  const bytes = await readBody(res, src, total, (n) => progress((loaded += n), Math.max(total, loaded)));
  if (bytes.length !== total) progress(bytes.length, bytes.length);
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Weights: `model.safetensors`, whole or only one tower's tensors.

/**
 * Returns `{ segments: [[offset, Uint8Array], ...], size }`: the parts of the file the
 * requested towers need (the whole file when that is what the server sent).
 */
export async function readWeights(src, towers, progress, cache) {
  if (src.kind === 'url') return readWeightsHttp(src, towers, progress, cache);
  let size;
  let read;
  let close = async () => {};
  if (src.kind === 'bytes') {
    size = src.bytes.length;
    read = async (a, b) => src.bytes.subarray(a, b);
  } else if (src.kind === 'blob') {
    size = src.blob.size;
    read = async (a, b) => new Uint8Array(await src.blob.slice(a, b).arrayBuffer());
  } else {
    const fh = await localFile(src);
    size = (await fh.stat()).size;
    read = async (a, b) => {
      const out = new Uint8Array(b - a);
      const { bytesRead } = await fh.read(out, 0, b - a, a);
      return out.subarray(0, bytesRead);
    };
    close = () => fh.close();
  }
  try {
    const first8 = await read(0, Math.min(8, size));
    const headerLen = headerLength(src, first8);
    const header = await read(0, Math.min(headerLen, size));
    const plan = planFor(src, header, towers, size);
    const ranges = plan.ranges;
    const total = plan.totalBytes;
    let loaded = headerLen;
    progress(loaded, total);
    const segments = [[0, header]];
    for (let i = 0; i < ranges.length; i += 2) {
      segments.push([ranges[i], await read(ranges[i], ranges[i + 1])]);
      progress((loaded += ranges[i + 1] - ranges[i]), total);
    }
    return { segments, size };
  } finally {
    await close();
  }
}

function headerLength(src, first8) {
  try {
    return wasm.WeightPlan.headerLength(first8);
  } catch (e) {
    throw webclipError('bad-weights', `webclip: ${src.what}${where(src)} is not a safetensors file: ${e.message}`, e);
  }
}

/** Parse the header and check the file is as long as it says; `size` 0 = unknown. */
function planFor(src, header, towers, size) {
  let plan;
  try {
    plan = wasm.WeightPlan.parse(header, towers);
  } catch (e) {
    throw webclipError('bad-weights', `webclip: ${src.what}${where(src)} is not a valid safetensors file: ${e.message}`, e);
  }
  try {
    if (size && size < plan.dataEnd) {
      throw webclipError(
        'bad-weights',
        `webclip: ${src.what}${where(src)} is truncated: ${size} bytes, but its header describes ${plan.dataEnd}`,
      );
    }
    return { headerLen: plan.headerLen, totalBytes: plan.totalBytes, ranges: Array.from(plan.ranges) };
  } finally {
    plan.free();
  }
}

function wholeFile(src, bytes) {
  const first8 = bytes.subarray(0, 8);
  const headerLen = headerLength(src, first8);
  planFor(src, bytes.subarray(0, headerLen), 'both', bytes.length);
  return { segments: [[0, bytes]], size: bytes.length };
}

async function readWeightsHttp(src, towers, progress, cache) {
  const whole = await cache?.get(src.url);
  if (whole) {
    progress(whole.bytes.length, whole.bytes.length);
    return wholeFile(src, whole.bytes);
  }
  const fetchWhole = async (res) => {
    const bytes = await readResponse(res ?? (await httpFetch(src)), src, progress);
    const out = wholeFile(src, bytes);
    await cache?.put(src.url, null, bytes);
    return out;
  };
  if (towers === 'both') return fetchWhole();

  // One tower: the header first, then only that tower's byte ranges.
  let header = await cache?.get(src.url, 'header');
  let size = header?.size ?? 0;
  header = header?.bytes;
  if (!header) {
    const first = await httpRange(src, 0, 8);
    if (first.whole) return fetchWhole(first.whole); // the server ignores Range: take it all
    size = first.size;
    const headerLen = headerLength(src, first.bytes);
    header = first.bytes;
    if (headerLen > 8) {
      const rest = await httpRange(src, 8, headerLen);
      if (rest.whole) return fetchWhole(rest.whole);
      header = concat([first.bytes, rest.bytes], headerLen);
    }
  }
  const plan = planFor(src, header, towers, size);
  const total = plan.totalBytes;
  let loaded = plan.headerLen;
  progress(loaded, total);
  const segments = [[0, header]];
  await cache?.put(src.url, 'header', header, size);
  for (let i = 0; i < plan.ranges.length; i += 2) {
    const [start, end] = [plan.ranges[i], plan.ranges[i + 1]];
    const part = `${start}-${end}`;
    const hit = await cache?.get(src.url, part);
    let bytes = hit?.bytes;
    if (!bytes) {
      const got = await httpRange(src, start, end, (n) => progress((loaded += n), total));
      if (got.whole) return fetchWhole(got.whole);
      bytes = got.bytes;
      await cache?.put(src.url, part, bytes, size);
    } else progress((loaded += bytes.length), total);
    segments.push([start, bytes]);
  }
  return { segments, size };
}
