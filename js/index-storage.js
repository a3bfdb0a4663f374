// Where a ClipIndex keeps its entries: in memory (Node.js, tests, a page that rebuilds it)
// or in IndexedDB (the browser; survives reloads). Both implement one small interface,
// which a caller may implement too (OPFS, a server, a fault-injecting wrapper in tests):
//
//   open()                -> Promise<meta | null>  what `writeMeta` stored last, or null
//   writeMeta(meta)       -> Promise<void>         { version, fingerprint, dim, precision }
//   rows(after, limit)    -> Promise<Row[]>        stored rows in key order, keys > `after`
//                                                  (undefined: from the first), at most `limit`
//   put(rows)             -> Promise<void>         Row = { key, code: Uint8Array, metadata,
//                                                  exact: Float32Array }; one transaction
//   delete(keys)          -> Promise<void>         one transaction
//   exact(keys)           -> Promise<(Float32Array | null)[]>  the exact embeddings, for re-scoring
//   clear()               -> Promise<void>         every row and the meta
//   close()
//
// Every failure rejects with code `storage` (quota, a blocked or deleted database) and the
// browser's error as `cause` (its `name` says which: `QuotaExceededError`, ...).

import { webclipError } from './errors.js';

const storageError = (what, e) =>
  webclipError('storage', `webclip: index storage: ${what} failed: ${e?.name ?? 'Error'}: ${e?.message ?? e}`, e);

/** Keys compare as IndexedDB compares them: numbers before strings. */
export function compareKeys(a, b) {
  if (typeof a !== typeof b) return typeof a === 'number' ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Rows in JS memory. `exact: false` keeps no exact embeddings (no re-scoring). */
export class MemoryStorage {
  constructor({ exact = true } = {}) {
    this.keepExact = exact;
    this.meta = null;
    this.map = new Map();
  }

  async open() {
    return this.meta;
  }

  async writeMeta(meta) {
    this.meta = { ...meta };
  }

  async rows(after, limit) {
    const keys = [...this.map.keys()].sort(compareKeys);
    const from = after === undefined ? 0 : keys.findIndex((k) => compareKeys(k, after) > 0);
    if (from < 0) return [];
    return keys.slice(from, from + limit).map((key) => {
      const { code, metadata } = this.map.get(key);
      return { key, code, metadata };
    });
  }

  async put(rows) {
    for (const r of rows) {
      this.map.set(r.key, { code: r.code, metadata: r.metadata, exact: this.keepExact ? r.exact : null });
    }
  }

  async delete(keys) {
    for (const k of keys) this.map.delete(k);
  }

  async exact(keys) {
    return keys.map((k) => this.map.get(k)?.exact ?? null);
  }

  async clear() {
    this.map.clear();
    this.meta = null;
  }

  close() {}
}

const req = (r) =>
  new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });

const done = (tx) =>
  new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onabort = () => reject(tx.error ?? new DOMException('transaction aborted', 'AbortError'));
    tx.onerror = () => reject(tx.error);
  });

/**
 * Rows in IndexedDB, database `webclip-index:<name>`: store `rows` ({ key, code, metadata },
 * read on open) and store `exact` (the float32 embeddings, read only to re-score the best
 * candidates of a search), and `meta`.
 */
export class IndexedDbStorage {
  static dbName(name) {
    return `webclip-index:${name}`;
  }

  /** Delete a stored index (every row and its meta). */
  static async destroy(name) {
    try {
      await req(indexedDB.deleteDatabase(IndexedDbStorage.dbName(name)));
    } catch (e) {
      throw storageError(`deleting ${IndexedDbStorage.dbName(name)}`, e);
    }
  }

  constructor(name) {
    if (typeof indexedDB === 'undefined') {
      throw webclipError('unsupported', "webclip: storage: 'indexeddb' needs IndexedDB (a browser); use storage: 'memory' here");
    }
    if (typeof name !== 'string' || !name) throw webclipError('bad-input', 'webclip: an IndexedDB index needs a `name` (a non-empty string)');
    this.name = name;
    this.db = null;
  }

  async open() {
    try {
      const open = indexedDB.open(IndexedDbStorage.dbName(this.name), 1);
      open.onupgradeneeded = () => {
        const db = open.result;
        db.createObjectStore('rows', { keyPath: 'key' });
        db.createObjectStore('exact');
        db.createObjectStore('meta');
      };
      open.onblocked = () => console.warn(`webclip: ${IndexedDbStorage.dbName(this.name)} is held open by another tab with an older version`);
      this.db = await req(open);
      // Another tab deleting or upgrading the database: let go so it can.
      this.db.onversionchange = () => this.close();
      return (await req(this.db.transaction('meta').objectStore('meta').get('meta'))) ?? null;
    } catch (e) {
      throw storageError(`opening ${IndexedDbStorage.dbName(this.name)}`, e);
    }
  }

  tx(stores, mode) {
    if (!this.db) throw webclipError('storage', `webclip: index storage: ${IndexedDbStorage.dbName(this.name)} is closed`);
    return this.db.transaction(stores, mode, { durability: 'default' });
  }

  async writeMeta(meta) {
    try {
      const tx = this.tx(['meta'], 'readwrite');
      tx.objectStore('meta').put(meta, 'meta');
      await done(tx);
    } catch (e) {
      throw storageError('writing the index meta', e);
    }
  }

  async rows(after, limit) {
    try {
      const store = this.tx(['rows'], 'readonly').objectStore('rows');
      const range = after === undefined ? undefined : IDBKeyRange.lowerBound(after, true);
      return await req(store.getAll(range, limit));
    } catch (e) {
      throw storageError('reading rows', e);
    }
  }

  async put(rows) {
    try {
      const tx = this.tx(['rows', 'exact'], 'readwrite');
      const finished = done(tx);
      finished.catch(() => {});
      try {
        const r = tx.objectStore('rows');
        const x = tx.objectStore('exact');
        for (const { key, code, metadata, exact } of rows) {
          r.put({ key, code, metadata });
          x.put(exact, key);
        }
      } catch (e) {
        // A value that cannot be stored (DataCloneError): none of the batch may commit.
        tx.abort();
        throw e;
      }
      await finished;
    } catch (e) {
      throw storageError(`writing ${rows.length} rows`, e);
    }
  }

  async delete(keys) {
    try {
      const tx = this.tx(['rows', 'exact'], 'readwrite');
      for (const k of keys) {
        tx.objectStore('rows').delete(k);
        tx.objectStore('exact').delete(k);
      }
      await done(tx);
    } catch (e) {
      throw storageError(`deleting ${keys.length} rows`, e);
    }
  }

  async exact(keys) {
    try {
      const store = this.tx(['exact'], 'readonly').objectStore('exact');
      return await Promise.all(keys.map((k) => req(store.get(k)).then((v) => (v instanceof Float32Array ? v : null))));
    } catch (e) {
      throw storageError('reading embeddings', e);
    }
  }

  async clear() {
    try {
      const tx = this.tx(['rows', 'exact', 'meta'], 'readwrite');
      for (const s of ['rows', 'exact', 'meta']) tx.objectStore(s).clear();
      await done(tx);
    } catch (e) {
      throw storageError('clearing the index', e);
    }
  }

  close() {
    this.db?.close();
    this.db = null;
  }
}
