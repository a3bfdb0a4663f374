// ClipIndex: a searchable library of embeddings. Entries are `{ key, embedding, metadata }`;
// the rows live compactly in WebAssembly (i8 by default, or f16, or f32: src/index/), which
// scans them with SIMD for a top-k search; the best candidates are re-scored with the exact
// float32 embeddings kept in storage. Keys and metadata stay here in JS. Storage is memory
// or IndexedDB (index-storage.js); a stored index is loaded in batches after `open`, and is
// tied to the model's fingerprint, so an index made by another model is refused.

import { wasm } from './wasm.js';
import { initWasm } from './engine.js';
import { webclipError, withCode } from './errors.js';
import { IndexedDbStorage, MemoryStorage } from './index-storage.js';

const FORMAT = 1;
const PRECISIONS = ['i8', 'f16', 'f32'];
const LOAD_BATCH = 4096;

const badInput = (m) => withCode(new TypeError(m), 'bad-input');

function checkKey(key) {
  if (typeof key === 'string' || (typeof key === 'number' && Number.isFinite(key))) return key;
  throw badInput(`webclip: an index key must be a string or a finite number, not ${key === null ? 'null' : typeof key}`);
}

/** `embedding` as a unit-length Float32Array of `dim` (a copy), or a bad-input TypeError. */
function unitVector(embedding, dim, what) {
  if (!embedding || typeof embedding.length !== 'number') throw badInput(`webclip: ${what} must be a Float32Array or an array of numbers`);
  if (embedding.length !== dim) throw badInput(`webclip: ${what} has ${embedding.length} values, but the index holds embeddings of ${dim}`);
  const v = Float32Array.from(embedding);
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i])) throw badInput(`webclip: ${what} holds a non-finite value at ${i}`);
    n += v[i] * v[i];
  }
  if (n === 0) throw badInput(`webclip: ${what} is a zero vector`);
  const inv = 1 / Math.sqrt(n);
  for (let i = 0; i < v.length; i++) v[i] *= inv;
  return v;
}

function dot(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * A filter as a predicate `(metadata, key) => boolean`: a function as it is, or an object
 * whose every field must match: a value (===), an array (one of), or `{ gt, gte, lt, lte, ne }`.
 */
export function compileFilter(filter) {
  if (filter == null) return null;
  if (typeof filter === 'function') return filter;
  if (typeof filter !== 'object') throw badInput('webclip: filter must be a function or an object of field conditions');
  const tests = Object.entries(filter).map(([field, cond]) => {
    if (Array.isArray(cond)) return (m) => cond.includes(m?.[field]);
    if (cond && typeof cond === 'object') {
      const ops = { gt: (a, b) => a > b, gte: (a, b) => a >= b, lt: (a, b) => a < b, lte: (a, b) => a <= b, ne: (a, b) => a !== b };
      const checks = Object.entries(cond).map(([op, v]) => {
        if (!ops[op]) throw badInput(`webclip: filter on ${field}: unknown condition ${op} (use gt, gte, lt, lte, ne, a value or an array)`);
        return (x) => x !== undefined && ops[op](x, v);
      });
      return (m) => checks.every((c) => c(m?.[field]));
    }
    return (m) => m?.[field] === cond;
  });
  return (m) => tests.every((t) => t(m));
}

export class ClipIndex {
  /**
   * Open (or create) an index. Options: `clip` (a Clip: gives `dim` and `fingerprint`, and
   * lets `search` take text and images), or `dim` and `fingerprint` themselves;
   * `precision` ('f16' | 'i8' | 'f32'), `storage` ('memory' | 'indexeddb' | an object),
   * `name` (the IndexedDB database), `rescore` (candidates per result re-scored exactly),
   * `onMismatch` ('throw' | 'reset'), `onProgress({ loaded, total })` while loading.
   * Resolves once the stored meta is read; rows keep loading in batches (`ready`).
   */
  static async open(options = {}) {
    if (!options || typeof options !== 'object') throw badInput('webclip: ClipIndex.open takes an options object');
    const clip = options.clip ?? null;
    const dim = options.dim ?? clip?.dim;
    const fingerprint = options.fingerprint ?? clip?.fingerprint ?? null;
    const precision = options.precision ?? 'i8';
    const rescore = options.rescore ?? 4;
    if (!Number.isInteger(dim) || dim <= 0) throw badInput('webclip: ClipIndex.open needs `clip` or `dim` (the embedding length)');
    if (!PRECISIONS.includes(precision)) throw badInput(`webclip: precision must be one of ${PRECISIONS.join(', ')}, not ${JSON.stringify(precision)}`);
    if (!Number.isInteger(rescore) || rescore < 0) throw badInput('webclip: rescore must be a non-negative integer');
    if (fingerprint !== null && typeof fingerprint !== 'string') throw badInput('webclip: fingerprint must be a string');
    const onMismatch = options.onMismatch ?? 'throw';
    if (!['throw', 'reset'].includes(onMismatch)) throw badInput("webclip: onMismatch must be 'throw' or 'reset'");
    let storage = options.storage ?? (options.name ? 'indexeddb' : 'memory');
    if (storage === 'memory') storage = new MemoryStorage();
    else if (storage === 'indexeddb') storage = new IndexedDbStorage(options.name);
    else if (!storage || typeof storage.open !== 'function') throw badInput("webclip: storage must be 'memory', 'indexeddb' or a storage object (see index-storage.js)");

    await initWasm(options.wasmUrl);
    const meta = { version: FORMAT, fingerprint, dim, precision };
    let stored = await storage.open();
    if (stored) {
      const why = mismatch(stored, meta);
      if (why && onMismatch === 'reset') {
        await storage.clear();
        stored = null;
      } else if (why) {
        storage.close();
        throw webclipError(
          'index-mismatch',
          `webclip: the stored index${options.name ? ` "${options.name}"` : ''} ${why}; re-index it (open with onMismatch: 'reset'), or load the model it was made with`,
        );
      }
    }
    if (!stored) await storage.writeMeta(meta);
    const index = new ClipIndex({ clip, meta, storage, rescore, onProgress: options.onProgress });
    index.ready = index._enqueue(() => index._load());
    index.ready.catch(() => {});
    return index;
  }

  /** Delete the IndexedDB index `name` (the database and all its rows). */
  static async deleteStored(name) {
    return IndexedDbStorage.destroy(name);
  }

  constructor({ clip, meta, storage, rescore, onProgress }) {
    if (!storage) throw badInput('webclip: use `await ClipIndex.open(options)` to make a ClipIndex');
    this.clip = clip;
    this.dim = meta.dim;
    this.precision = meta.precision;
    this.fingerprint = meta.fingerprint;
    this.rescore = rescore;
    this._storage = storage;
    this._store = new wasm.WasmVectorStore(meta.dim, meta.precision);
    this._keys = []; // slot -> key
    this._meta = []; // slot -> metadata
    this._slot = new Map(); // key -> slot
    this._queue = Promise.resolve();
    this._onProgress = onProgress;
    /** Stored rows that could not be read back (damaged): `{ key, error }`; they are skipped. */
    this.damaged = [];
    /** Whether every stored row is loaded (`ready` resolves then). */
    this.loaded = false;
    this.closed = false;
  }

  /** Entries in memory (while loading: those loaded so far). */
  get size() {
    return this._keys.length;
  }

  /** Bytes of the compact rows in WebAssembly, and per row. */
  get memoryBytes() {
    return this._store.memoryBytes;
  }

  get bytesPerRow() {
    return this._store.rowBytes;
  }

  /** Writes run one at a time, in call order, after the load. */
  _enqueue(fn) {
    const run = () => {
      if (this.closed) throw webclipError('disposed', 'webclip: this ClipIndex was closed');
      return fn();
    };
    const p = this._queue.then(run, run);
    this._queue = p.catch(() => {});
    return p;
  }

  async _load() {
    let after;
    for (;;) {
      const rows = await this._storage.rows(after, LOAD_BATCH);
      if (!rows.length) break;
      after = rows[rows.length - 1].key;
      const rb = this._store.rowBytes;
      const ok = rows.filter((r) => {
        if (r.code instanceof Uint8Array && r.code.length === rb && !this._slot.has(r.key)) return true;
        this.damaged.push({ key: r.key, error: `stored row has ${r.code?.length ?? 'no'} bytes, not ${rb}` });
        return false;
      });
      const flat = new Uint8Array(ok.length * rb);
      ok.forEach((r, i) => flat.set(r.code, i * rb));
      try {
        this._store.pushEncoded(flat);
        for (const r of ok) this._append(r.key, r.metadata);
      } catch {
        // One damaged row refuses the whole batch: add them one by one, skipping it.
        for (const r of ok) {
          try {
            this._store.pushEncoded(r.code);
            this._append(r.key, r.metadata);
          } catch (e) {
            this.damaged.push({ key: r.key, error: String(e?.message ?? e) });
          }
        }
      }
      try {
        this._onProgress?.({ loaded: this.size });
      } catch (e) {
        console.error('webclip: onProgress threw', e);
      }
      // Let the page paint between batches.
      await new Promise((r) => setTimeout(r, 0));
    }
    if (this.damaged.length) console.warn(`webclip: ${this.damaged.length} stored index rows are damaged and were skipped (index.damaged lists them)`);
    this.loaded = true;
  }

  _append(key, metadata) {
    this._slot.set(key, this._keys.length);
    this._keys.push(key);
    this._meta.push(metadata);
  }

  has(key) {
    return this._slot.has(key);
  }

  /** `{ key, metadata, embedding }` (the stored, compact embedding decoded), or undefined. */
  get(key) {
    const s = this._slot.get(key);
    if (s === undefined) return undefined;
    return { key, metadata: this._meta[s], embedding: this._store.get(s) };
  }

  keys() {
    return this._keys.slice();
  }

  /** Add or replace one entry. */
  add(key, embedding, metadata) {
    return this.addMany([{ key, embedding, metadata }]);
  }

  /**
   * Add or replace entries `[{ key, embedding, metadata }]`: one storage transaction;
   * all are written or, if storage refuses (full: code `storage`), none.
   */
  addMany(entries) {
    if (!Array.isArray(entries)) return Promise.reject(badInput('webclip: addMany takes an array of { key, embedding, metadata }'));
    let rows;
    try {
      const seen = new Map();
      for (const [i, e] of entries.entries()) {
        const key = checkKey(e?.key);
        seen.set(key, { key, exact: unitVector(e.embedding, this.dim, `the embedding of entry ${i} (${JSON.stringify(key)})`), metadata: e.metadata ?? null });
      }
      rows = [...seen.values()];
    } catch (e) {
      return Promise.reject(e);
    }
    return this._enqueue(async () => {
      const fresh = rows.filter((r) => !this._slot.has(r.key));
      const old = rows.filter((r) => this._slot.has(r.key));
      // Memory first (so the encoded rows exist), storage next; if storage refuses, undo.
      const first = this._store.length;
      const flat = new Float32Array(fresh.length * this.dim);
      fresh.forEach((r, i) => flat.set(r.exact, i * this.dim));
      this._store.pushMany(flat);
      const previous = old.map((r) => {
        const s = this._slot.get(r.key);
        const before = this._store.get(s);
        this._store.set(s, r.exact);
        return { s, before };
      });
      const code = (r, i) => this._store.encoded(i < fresh.length ? first + i : this._slot.get(r.key));
      try {
        await this._storage.put([...fresh, ...old].map((r, i) => ({ key: r.key, code: code(r, i), metadata: r.metadata, exact: r.exact })));
      } catch (e) {
        for (let i = fresh.length - 1; i >= 0; i--) this._store.swapRemove(first + i);
        for (const { s, before } of previous) this._store.set(s, before);
        throw e;
      }
      for (const r of fresh) this._append(r.key, r.metadata);
      for (const r of old) this._meta[this._slot.get(r.key)] = r.metadata;
      return rows.length;
    });
  }

  /** Replace the metadata of `key` (the embedding stays). */
  setMetadata(key, metadata) {
    return this._enqueue(async () => {
      const s = this._slot.get(key);
      if (s === undefined) throw webclipError('not-found', `webclip: the index has no entry ${JSON.stringify(key)}`);
      const [exact] = await this._storage.exact([key]);
      await this._storage.put([{ key, code: this._store.encoded(s), metadata: metadata ?? null, exact: exact ?? this._store.get(s) }]);
      this._meta[s] = metadata ?? null;
    });
  }

  /** Remove entries by key; resolves to how many were there. */
  remove(...keys) {
    const list = keys.flat();
    return this._enqueue(async () => {
      const present = list.filter((k) => this._slot.has(k));
      if (!present.length) return 0;
      await this._storage.delete(present);
      for (const k of present) {
        const s = this._slot.get(k);
        const moved = this._store.swapRemove(s);
        this._slot.delete(k);
        const lastKey = this._keys.pop();
        const lastMeta = this._meta.pop();
        if (moved >= 0) {
          this._keys[s] = lastKey;
          this._meta[s] = lastMeta;
          this._slot.set(lastKey, s);
        }
      }
      return present.length;
    });
  }

  /** Remove every entry (keeps the model fingerprint). */
  clear() {
    return this._enqueue(async () => {
      await this._storage.clear();
      await this._storage.writeMeta({ version: FORMAT, fingerprint: this.fingerprint, dim: this.dim, precision: this.precision });
      this._store.clear();
      this._keys = [];
      this._meta = [];
      this._slot.clear();
    });
  }

  _mask(filter) {
    const pred = compileFilter(filter);
    if (!pred) return new Uint32Array(0);
    const n = this._keys.length;
    const mask = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
    for (let s = 0; s < n; s++) if (pred(this._meta[s], this._keys[s])) mask[s >> 5] |= 1 << (s & 31);
    return mask;
  }

  async _query(query) {
    if (typeof query === 'string') {
      if (!this.clip) throw badInput('webclip: a text query needs the index opened with `clip`');
      return this.clip.embedText(query);
    }
    if (query && typeof query.length === 'number' && typeof query !== 'string' && !(query instanceof ArrayBuffer) && !(query instanceof Uint8Array) && query.length === this.dim) {
      return query;
    }
    if (!this.clip) throw badInput(`webclip: search takes an embedding of ${this.dim} values (or, with \`clip\`, a text or an image)`);
    return this.clip.embedImage(query);
  }

  /**
   * The `k` entries most similar to `query` (an embedding; with `clip`, a text or an
   * image), best first: `[{ key, score, metadata }]`, `score` the cosine similarity.
   * Options: `k` (10), `filter` (function or field conditions), `minScore`.
   */
  async search(query, { k = 10, filter, minScore = -Infinity } = {}) {
    if (!Number.isInteger(k) || k < 0) throw badInput('webclip: k must be a non-negative integer');
    if (this.closed) throw webclipError('disposed', 'webclip: this ClipIndex was closed');
    const q = unitVector(await this._query(query), this.dim, 'the query');
    const mask = this._mask(filter);
    const exactly = this.precision === 'f32' || this.rescore === 0;
    const want = exactly ? k : k * this.rescore;
    // A candidate below minScore by the compact score may be above it exactly: widen a little.
    const slack = exactly ? 0 : this.precision === 'i8' ? 0.03 : 0.003;
    const { slots, scores } = this._store.search(q, want, mask, minScore - slack);
    let hits = Array.from(slots, (s, i) => ({ key: this._keys[s], score: scores[i], metadata: this._meta[s] }));
    if (!exactly && hits.length) {
      const exact = await this._storage.exact(hits.map((h) => h.key));
      hits.forEach((h, i) => {
        if (exact[i]?.length === this.dim) h.score = dot(q, exact[i]);
      });
      hits.sort((a, b) => b.score - a.score);
      hits = hits.filter((h) => h.score >= minScore);
    }
    return hits.slice(0, k);
  }

  /**
   * Groups of near-duplicates: entries whose embeddings have cosine >= `threshold`
   * (chained), among those passing `filter`. `[[key, ...], ...]`, each group in insertion
   * order. Exact up to 4,096 entries, by locality-sensitive hashing above (a pair at cosine
   * 0.95 is missed with probability about 2%).
   */
  duplicates({ threshold = 0.95, filter } = {}) {
    if (typeof threshold !== 'number' || !(threshold > -1 && threshold <= 1)) throw badInput('webclip: threshold must be a number in (-1, 1]');
    const flat = this._store.duplicateGroups(threshold, this._mask(filter));
    const groups = [];
    for (let i = 0; i < flat.length; ) {
      const n = flat[i++];
      groups.push(Array.from(flat.subarray(i, i + n), (s) => this._keys[s]));
      i += n;
    }
    return groups;
  }

  /**
   * Add the entries of an index file (what `webclip index DIR --model M --out FILE` or
   * `exportFile` wrote), `batch` per storage transaction; entries with a key already here
   * are replaced. A file made with another model is refused (`index-mismatch`), a file that
   * is no index file (`bad-input`). Resolves to the number of entries read.
   */
  async importFile(bytes, { batch = 4096, onProgress } = {}) {
    let data = bytes;
    if (typeof Blob !== 'undefined' && bytes instanceof Blob) data = new Uint8Array(await bytes.arrayBuffer());
    if (data instanceof ArrayBuffer) data = new Uint8Array(data);
    if (!(data instanceof Uint8Array)) throw badInput('webclip: importFile takes the file as a Uint8Array, an ArrayBuffer or a Blob');
    const file = wasm.parseIndexFile(data);
    if (file.fingerprint !== this.fingerprint) {
      throw webclipError(
        'index-mismatch',
        `webclip: the index file was made with another model (fingerprint ${file.fingerprint ?? 'none'}; this index's is ${this.fingerprint ?? 'none'}); re-index the photos with this model, or open the index with the model the file was made with`,
      );
    }
    if (file.dim !== this.dim) throw webclipError('index-mismatch', `webclip: the index file holds embeddings of ${file.dim}, not ${this.dim}`);
    const entries = JSON.parse(file.entries);
    for (let at = 0; at < entries.length; at += batch) {
      const part = entries.slice(at, at + batch).map((e, i) => ({
        key: e.key,
        metadata: e.metadata,
        embedding: file.embeddings.subarray((at + i) * this.dim, (at + i + 1) * this.dim),
      }));
      await this.addMany(part);
      try {
        onProgress?.({ loaded: Math.min(at + batch, entries.length), total: entries.length });
      } catch (e) {
        console.error('webclip: onProgress threw', e);
      }
    }
    return entries.length;
  }

  /**
   * The whole index as an index file (`Uint8Array`, safetensors: `embeddings` F32 [n, dim]
   * and the keys and metadata), with the exact embeddings where storage keeps them.
   */
  async exportFile() {
    await this.ready;
    return this._enqueue(async () => {
      const keys = this._keys.slice();
      const exact = await this._storage.exact(keys);
      const flat = new Float32Array(keys.length * this.dim);
      keys.forEach((k, s) => flat.set(exact[s]?.length === this.dim ? exact[s] : this._store.get(s), s * this.dim));
      const entries = JSON.stringify(keys.map((key, s) => ({ key, metadata: this._meta[s] ?? null })));
      return wasm.writeIndexFile(this.fingerprint, this.dim, entries, flat);
    });
  }

  /** `{ size, dim, precision, bytesPerRow, memoryBytes, fingerprint, loaded, damaged }` */
  stats() {
    return {
      size: this.size,
      dim: this.dim,
      precision: this.precision,
      bytesPerRow: this.bytesPerRow,
      memoryBytes: this.memoryBytes,
      fingerprint: this.fingerprint,
      loaded: this.loaded,
      damaged: this.damaged.length,
    };
  }

  /** Finish pending writes, then free the rows and close the storage. */
  async close() {
    if (this.closed) return;
    await this._queue;
    this.closed = true;
    this._store.free();
    this._storage.close();
  }
}

function mismatch(stored, meta) {
  if (stored.version !== FORMAT) return `has format ${stored.version}, not ${FORMAT}`;
  if (stored.fingerprint !== meta.fingerprint) {
    return `was made with another model (fingerprint ${stored.fingerprint ?? 'none'}; this model's is ${meta.fingerprint ?? 'none'})`;
  }
  if (stored.dim !== meta.dim) return `holds embeddings of ${stored.dim}, not ${meta.dim}`;
  if (stored.precision !== meta.precision) return `stores ${stored.precision} rows, not ${meta.precision}`;
  return null;
}

export default ClipIndex;
