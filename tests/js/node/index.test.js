// ClipIndex in Node.js (memory storage): add / update / remove by key, top-k search against
// an exact ranking computed here, filters, near-duplicate groups, every precision with and
// without exact re-scoring, storage that refuses a write (nothing changes), a stored index
// reloaded from its storage, fingerprints (a model served from elsewhere keeps its index,
// another model is refused), and search by text and image through a Clip.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { Clip, ClipIndex, MemoryStorage } from '../../../pkg/index.js';
import { fixturesDir, repoRoot } from '../common.js';

/** Deterministic pseudo-random unit vectors (mulberry32). */
function vectors(n, dim, seed) {
  let a = seed >>> 0;
  const rnd = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5;
  };
  return Array.from({ length: n }, () => {
    const v = Float32Array.from({ length: dim }, rnd);
    const norm = Math.hypot(...v);
    return v.map((x) => x / norm);
  });
}

const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);

function exactTop(rows, keys, q, k, keep = () => true) {
  return rows
    .map((r, i) => ({ key: keys[i], score: dot(r, q), i }))
    .filter((h) => keep(h.i))
    .sort((a, b) => b.score - a.score)
    .slice(0, k);
}

const DIM = 67; // no multiple of a SIMD width

test('search ranks as an exact scan does, for every precision', async () => {
  const rows = vectors(2000, DIM, 1);
  const keys = rows.map((_, i) => `photo-${i}`);
  const queries = vectors(5, DIM, 2);
  for (const precision of ['f32', 'f16', 'i8']) {
    const index = await ClipIndex.open({ dim: DIM, precision });
    await index.ready;
    await index.addMany(rows.map((embedding, i) => ({ key: keys[i], embedding, metadata: { i, even: i % 2 === 0 } })));
    assert.equal(index.size, 2000);
    assert.equal(index.bytesPerRow, { f32: 4 * DIM, f16: 2 * DIM, i8: DIM + 4 }[precision]);
    assert.equal(index.memoryBytes, 2000 * index.bytesPerRow);
    for (const q of queries) {
      const want = exactTop(rows, keys, q, 10);
      const got = await index.search(q, { k: 10 });
      // Re-scored with the exact embeddings: the same keys, the same scores.
      assert.deepEqual(got.map((h) => h.key), want.map((h) => h.key), precision);
      got.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) < 1e-5, `${precision}: ${h.score} vs ${want[i].score}`));
      assert.equal(got[0].metadata.i, Number(want[0].key.slice(6)));
    }
    // Without re-scoring the compact scores are close, and the set mostly the same.
    index.rescore = 0;
    const q = queries[0];
    const want = exactTop(rows, keys, q, 20);
    const got = await index.search(q, { k: 20 });
    const overlap = got.filter((h) => want.some((w) => w.key === h.key)).length;
    assert.ok(overlap >= (precision === 'i8' ? 14 : 18), `${precision}: overlap ${overlap}`);
    const tol = { f32: 1e-5, f16: 2e-3, i8: 2e-2 }[precision];
    for (const h of got) assert.ok(Math.abs(h.score - dot(rows[h.metadata.i], q)) < tol, `${precision}: ${h.score}`);
    await index.close();
  }
});

test('filters, minScore, update and remove by key', async () => {
  const rows = vectors(300, DIM, 3);
  const keys = rows.map((_, i) => i * 10);
  const index = await ClipIndex.open({ dim: DIM });
  await index.addMany(rows.map((embedding, i) => ({ key: keys[i], embedding, metadata: { i, album: i % 3 === 0 ? 'a' : 'b', year: 2000 + (i % 25) } })));
  const q = rows[7];
  // A function filter and the same as field conditions.
  const even = await index.search(q, { k: 5, filter: (m) => m.i % 2 === 0 });
  assert.deepEqual(even.map((h) => h.key), exactTop(rows, keys, q, 5, (i) => i % 2 === 0).map((h) => h.key));
  const albumA = await index.search(q, { k: 5, filter: { album: 'a', year: { gte: 2010, lt: 2020 } } });
  const keepA = (i) => i % 3 === 0 && 2000 + (i % 25) >= 2010 && 2000 + (i % 25) < 2020;
  assert.deepEqual(albumA.map((h) => h.key), exactTop(rows, keys, q, 5, keepA).map((h) => h.key));
  assert.ok(albumA.every((h) => h.metadata.album === 'a'));
  assert.equal((await index.search(q, { k: 5, filter: { album: ['c'] } })).length, 0);
  // The query itself scores 1; minScore 0.99 keeps only it.
  const self = await index.search(q, { k: 5, minScore: 0.99 });
  assert.deepEqual(self.map((h) => h.key), [70]);

  // Update: key 70 gets row 8's embedding; the best hit for row 8 is now a tie of 70 and 80.
  await index.add(70, rows[8], { i: 8, moved: true });
  assert.equal(index.size, 300);
  const top2 = await index.search(rows[8], { k: 2 });
  assert.deepEqual(top2.map((h) => h.key).sort((a, b) => a - b), [70, 80]);
  assert.equal(index.get(70).metadata.moved, true);
  await index.setMetadata(70, { i: 8, moved: 'twice' });
  assert.equal(index.get(70).metadata.moved, 'twice');

  // Remove (swap-remove inside): every other key still finds itself.
  assert.equal(await index.remove(0, 80, 12345), 2);
  assert.equal(index.size, 298);
  assert.equal(index.has(80), false);
  for (const i of [1, 150, 299]) {
    const [hit] = await index.search(rows[i], { k: 1 });
    assert.equal(hit.key, keys[i]);
    assert.equal(hit.metadata.i, i);
  }
  assert.ok(!(await index.search(rows[8], { k: 300 })).some((h) => h.key === 80));
  await index.close();
  await assert.rejects(index.search(q), (e) => e.code === 'disposed');
});

test('near-duplicate groups', async () => {
  const rows = vectors(500, DIM, 4);
  const noise = vectors(20, DIM, 5);
  const index = await ClipIndex.open({ dim: DIM, precision: 'i8' });
  await index.addMany(rows.map((embedding, i) => ({ key: `p${i}`, embedding })));
  // Near-copies of p0..p19 (cosine about 0.995) and an exact copy of p0.
  await index.addMany(noise.map((n, i) => ({ key: `copy${i}`, embedding: rows[i].map((x, j) => x + 0.1 * n[j]) })));
  await index.add('p0-again', rows[0]);
  const groups = index.duplicates({ threshold: 0.95 });
  assert.equal(groups.length, 20);
  const g0 = groups.find((g) => g.includes('p0'));
  assert.deepEqual([...g0].sort(), ['copy0', 'p0', 'p0-again']);
  for (let i = 1; i < 20; i++) assert.ok(groups.some((g) => g.length === 2 && g.includes(`p${i}`) && g.includes(`copy${i}`)), `p${i}`);
  // A filter that leaves the copies out leaves only p0 and p0-again.
  assert.deepEqual(index.duplicates({ threshold: 0.95, filter: (_, key) => !String(key).startsWith('copy') }), [['p0', 'p0-again']]);
  assert.throws(() => index.duplicates({ threshold: 2 }), (e) => e.code === 'bad-input');
});

test('bad input is refused with codes, and the index stays as it was', async () => {
  const index = await ClipIndex.open({ dim: 4 });
  await index.add('a', [1, 0, 0, 0]);
  for (const [args, re] of [
    [['b', [1, 2]]],
    [['b', [0, 0, 0, 0]]],
    [['b', [1, NaN, 0, 0]]],
    [[null, [1, 0, 0, 0]]],
    [[{}, [1, 0, 0, 0]]],
  ]) {
    await assert.rejects(index.add(...args), (e) => e.code === 'bad-input' && e instanceof TypeError, re);
  }
  // One bad entry in a batch adds none.
  await assert.rejects(index.addMany([{ key: 'ok', embedding: [0, 1, 0, 0] }, { key: 'bad', embedding: [1] }]), (e) => e.code === 'bad-input');
  assert.deepEqual(index.keys(), ['a']);
  await assert.rejects(index.search([1, 0]), (e) => e.code === 'bad-input');
  await assert.rejects(index.search('a text'), (e) => e.code === 'bad-input' && /needs the index opened with `clip`/.test(e.message));
  await assert.rejects(index.search([1, 0, 0, 0], { filter: { x: { near: 1 } } }), (e) => e.code === 'bad-input');
  await assert.rejects(index.setMetadata('zzz', {}), (e) => e.code === 'not-found');
  await assert.rejects(ClipIndex.open({}), (e) => e.code === 'bad-input');
  await assert.rejects(ClipIndex.open({ dim: 4, precision: 'f8' }), (e) => e.code === 'bad-input');
  await assert.rejects(ClipIndex.open({ dim: 4, storage: 'indexeddb', name: 'x' }), (e) => e.code === 'unsupported');
});

/** Memory storage whose next write fails as a full disk does. */
class FullStorage extends MemoryStorage {
  async put(rows) {
    if (this.full) {
      const cause = new Error('the quota has been exceeded');
      cause.name = 'QuotaExceededError';
      throw Object.assign(new Error(`webclip: index storage: writing ${rows.length} rows failed`, { cause }), { code: 'storage' });
    }
    return super.put(rows);
  }
}

test('a write the storage refuses changes nothing', async () => {
  const storage = new FullStorage();
  const rows = vectors(10, DIM, 6);
  const index = await ClipIndex.open({ dim: DIM, storage });
  await index.addMany(rows.slice(0, 5).map((embedding, i) => ({ key: i, embedding, metadata: { i } })));
  storage.full = true;
  // New keys and a replaced one in one batch: all refused.
  await assert.rejects(
    index.addMany([{ key: 1, embedding: rows[9], metadata: { i: 9 } }, ...rows.slice(5, 8).map((embedding, i) => ({ key: 5 + i, embedding }))]),
    (e) => e.code === 'storage' && e.cause.name === 'QuotaExceededError',
  );
  assert.equal(index.size, 5);
  assert.equal(index.get(1).metadata.i, 1);
  const [hit] = await index.search(rows[1], { k: 1 });
  assert.equal(hit.key, 1);
  assert.ok(hit.score > 0.9999);
  // Space again: the next write goes through.
  storage.full = false;
  await index.add(5, rows[5]);
  assert.equal(index.size, 6);
});

test('a stored index loads back in batches, skips damaged rows, and is keyed by fingerprint', async () => {
  const storage = new MemoryStorage();
  const rows = vectors(9000, 32, 7);
  const first = await ClipIndex.open({ dim: 32, fingerprint: 'model-a', storage, precision: 'f16' });
  await first.addMany(rows.map((embedding, i) => ({ key: `k${String(i).padStart(5, '0')}`, embedding, metadata: { i } })));
  await first.close();
  // Damage one stored row.
  storage.map.get('k00042').code = new Uint8Array(3);
  const progress = [];
  const again = await ClipIndex.open({ dim: 32, fingerprint: 'model-a', storage, precision: 'f16', onProgress: (p) => progress.push(p.loaded) });
  await again.ready;
  assert.equal(again.size, 8999);
  assert.deepEqual(again.damaged.map((d) => d.key), ['k00042']);
  assert.ok(progress.length >= 3, `loaded in ${progress.length} batches`);
  assert.equal(progress.at(-1), 8999);
  const [hit] = await again.search(rows[1234], { k: 1 });
  assert.equal(hit.key, 'k01234');
  await again.close();
  // Another model, dim or precision: refused with index-mismatch, unless reset is asked for.
  for (const over of [{ fingerprint: 'model-b' }, { dim: 64 }, { precision: 'i8' }]) {
    await assert.rejects(ClipIndex.open({ dim: 32, fingerprint: 'model-a', storage, precision: 'f16', ...over }), (e) => {
      assert.equal(e.code, 'index-mismatch');
      assert.match(e.message, /re-index it/);
      return true;
    });
  }
  const reset = await ClipIndex.open({ dim: 32, fingerprint: 'model-b', storage, onMismatch: 'reset' });
  await reset.ready;
  assert.equal(reset.size, 0);
  assert.equal(storage.meta.fingerprint, 'model-b');
});

test('clip.fingerprint: the same files from a path or as bytes agree, another model differs; search by text and image', async () => {
  const dir = path.join(fixturesDir, 'tiny-quickgelu');
  const clip = await Clip.load({ model: dir });
  assert.match(clip.fingerprint, /^[0-9a-f]{32}$/);
  const bytes = await Clip.load({
    model: {
      config: readFileSync(path.join(dir, 'config.json')),
      weights: readFileSync(path.join(dir, 'model.safetensors')),
      tokenizer: readFileSync(path.join(dir, 'tokenizer.json')),
    },
  });
  assert.equal(bytes.fingerprint, clip.fingerprint);
  const other = await Clip.load({ model: path.join(fixturesDir, 'small-gelu') });
  assert.notEqual(other.fingerprint, clip.fingerprint);
  const fp16 = await Clip.load({ model: { config: path.join(dir, 'config.json'), weights: path.join(dir, 'model.fp16.safetensors'), tokenizer: path.join(dir, 'tokenizer.json') } });
  assert.notEqual(fp16.fingerprint, clip.fingerprint, 'another dtype is another header');

  const index = await ClipIndex.open({ clip });
  assert.equal(index.dim, clip.dim);
  assert.equal(index.fingerprint, clip.fingerprint);
  const names = ['astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.png'];
  const images = names.map((n) => readFileSync(path.join(fixturesDir, 'images', n)));
  const embs = await clip.embedImages(images);
  await index.addMany(names.map((key, i) => ({ key, embedding: embs[i] })));
  const [byImage] = await index.search(images[2], { k: 1 });
  assert.equal(byImage.key, 'chelsea.png');
  assert.ok(byImage.score > 0.9999);
  const text = 'a photo of a cat';
  const byText = await index.search(text, { k: 4 });
  const t = await clip.embedText(text);
  assert.deepEqual(byText.map((h) => h.key), clip.rank(t, embs).map((r) => names[r.index]));
  // Another model's index is refused.
  const storage = new MemoryStorage();
  await (await ClipIndex.open({ clip, storage })).close();
  await assert.rejects(ClipIndex.open({ clip: other, storage }), (e) => e.code === 'index-mismatch');
  for (const c of [clip, bytes, other, fp16]) c.dispose();
});

test('exportFile and importFile round-trip; a file that is no index is refused', async () => {
  const rows = vectors(700, DIM, 9);
  const a = await ClipIndex.open({ dim: DIM, fingerprint: 'fp' });
  await a.addMany(rows.map((embedding, i) => ({ key: i % 3 ? `k${i}` : i, embedding, metadata: { i, tags: ['x', i] } })));
  const bytes = await a.exportFile();
  assert.ok(bytes instanceof Uint8Array);
  const b = await ClipIndex.open({ dim: DIM, fingerprint: 'fp', precision: 'f16' });
  const seen = [];
  assert.equal(await b.importFile(bytes, { batch: 256, onProgress: (p) => seen.push(p.loaded) }), 700);
  assert.deepEqual(seen, [256, 512, 700]);
  assert.deepEqual(b.keys(), a.keys());
  assert.deepEqual(b.get(3).metadata, { i: 3, tags: ['x', 3] });
  for (const q of vectors(3, DIM, 10)) {
    const [x, y] = [await b.search(q, { k: 8 }), await a.search(q, { k: 8 })];
    assert.deepEqual(x.map((h) => h.key), y.map((h) => h.key));
    x.forEach((h, i) => assert.ok(Math.abs(h.score - y[i].score) < 1e-6));
  }
  // Another model's file, and bytes that are no index file.
  const c = await ClipIndex.open({ dim: DIM, fingerprint: 'other' });
  await assert.rejects(c.importFile(bytes), (e) => e.code === 'index-mismatch' && /another model/.test(e.message));
  await assert.rejects(c.importFile(bytes.slice(0, 100)), (e) => e.code === 'bad-input' && /not a webclip index file/.test(e.message));
  await assert.rejects(c.importFile(readFileSync(path.join(fixturesDir, 'tiny-quickgelu', 'model.safetensors'))), (e) => e.code === 'bad-input');
  assert.equal(c.size, 0);
});

const cli = path.join(repoRoot, 'target', 'debug', 'webclip');
test('a file written by `webclip index` imports and searches in the package', { skip: !existsSync(cli) && 'the webclip command is not built (cargo build)' }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'webclip-index-'));
  try {
    mkdirSync(path.join(dir, 'photos'));
    const names = ['astronaut.png', 'chelsea.png', 'rocket.png'];
    for (const n of names) copyFileSync(path.join(fixturesDir, 'images', n), path.join(dir, 'photos', n));
    const out = path.join(dir, 'library.safetensors');
    const model = path.join(fixturesDir, 'tiny-quickgelu');
    execFileSync(cli, ['index', path.join(dir, 'photos'), '--model', model, '--out', out, '--threads', '1'], { stdio: 'pipe' });
    const clip = await Clip.load({ model });
    const index = await ClipIndex.open({ clip });
    assert.equal(await index.importFile(readFileSync(out)), 3);
    const chelsea = readFileSync(path.join(fixturesDir, 'images', 'chelsea.png'));
    const [hit] = await index.search(chelsea, { k: 1 });
    assert.equal(hit.key, createHash('sha256').update(chelsea).digest('hex'), 'keyed by the SHA-256 of the content');
    assert.equal(hit.metadata.path, 'chelsea.png');
    assert.ok(hit.score > 0.9999, `the CLI's embedding is the package's: ${hit.score}`);
    const other = await Clip.load({ model: path.join(fixturesDir, 'small-gelu') });
    const wrong = await ClipIndex.open({ clip: other });
    await assert.rejects(wrong.importFile(readFileSync(out)), (e) => e.code === 'index-mismatch');
    clip.dispose();
    other.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
