// ClipIndex in headless Chromium with IndexedDB: entries written on one page load come back
// on the next (in batches, searchable, exact re-scoring from the stored float32 rows), a
// model served from another address keeps its index while another model is refused, an
// index opened with a Clip in a Worker searches by text, and a write refused by storage
// (a failing IndexedDB transaction) leaves the index as it was.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useBrowser } from './harness.js';

const env = useBrowser();
const url = () => `${env.server.url}/pages/index.html`;

test('an IndexedDB index survives a reload and is keyed by the model fingerprint', async () => {
  const N = 6000;
  const written = await env.browser.run(url(), async (h, N) => {
    const { ClipIndex } = await import('/pkg/index.js');
    await ClipIndex.deleteStored('photos');
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu'), backend: 'cpu' });
    const index = await ClipIndex.open({ clip, name: 'photos', precision: 'i8' });
    await index.ready;
    let seed = 1;
    const rnd = () => ((seed = (seed * 1664525 + 1013904223) >>> 0) / 4294967296) - 0.5;
    const rows = Array.from({ length: N }, () => Float32Array.from({ length: clip.dim }, rnd));
    for (let at = 0; at < N; at += 1000) {
      await index.addMany(rows.slice(at, at + 1000).map((embedding, i) => ({ key: `p${at + i}`, embedding, metadata: { n: at + i, odd: (at + i) % 2 === 1 } })));
    }
    await index.remove('p5');
    const top = await index.search(rows[17], { k: 3, filter: { odd: true } });
    const out = { fingerprint: clip.fingerprint, size: index.size, top, query: Array.from(rows[17]), dim: clip.dim };
    await index.close();
    clip.dispose();
    return out;
  }, N);
  assert.equal(written.size, N - 1);
  assert.equal(written.top[0].key, 'p17');
  assert.ok(written.top[0].score > 0.99999, 're-scored exactly from the stored float32 row');
  assert.ok(written.top.every((h) => h.metadata.odd));

  // A new page: the same model from another address (/norange/ serves the same files).
  const reread = await env.browser.run(url(), async (h, { query }) => {
    const { ClipIndex } = await import('/pkg/index.js');
    const clip = await h.Clip.load({ model: h.model('tiny-quickgelu', '/norange'), backend: 'cpu', worker: true });
    const batches = [];
    const t0 = performance.now();
    const index = await ClipIndex.open({ clip, name: 'photos', precision: 'i8', onProgress: (p) => batches.push(p.loaded) });
    const opened = performance.now() - t0;
    await index.ready;
    const top = await index.search(Float32Array.from(query), { k: 3, filter: { odd: true } });
    const byText = await index.search('a photo of a cat', { k: 5 });
    const out = { fingerprint: clip.fingerprint, size: index.size, has5: index.has('p5'), top, batches, opened, textHits: byText.length, loaded: index.loaded };
    await index.close();
    // Another model: refused, and the message says what to do.
    const other = await h.Clip.load({ model: h.model('small-gelu'), backend: 'cpu' });
    out.mismatch = await ClipIndex.open({ clip: other, name: 'photos', precision: 'i8' }).then(() => null, (e) => ({ code: e.code, message: e.message }));
    clip.dispose();
    other.dispose();
    return out;
  }, written);
  assert.equal(reread.fingerprint, written.fingerprint);
  assert.equal(reread.size, N - 1);
  assert.equal(reread.has5, false);
  assert.equal(reread.loaded, true);
  assert.ok(reread.batches.length >= 2, `loaded in batches: ${reread.batches}`);
  assert.deepEqual(reread.top, written.top);
  assert.equal(reread.textHits, 5);
  assert.equal(reread.mismatch?.code, 'index-mismatch');
  assert.match(reread.mismatch.message, /another model .*re-index it/);
});

test('a write IndexedDB refuses leaves the index unchanged', async () => {
  const r = await env.browser.run(url(), async () => {
    const { ClipIndex } = await import('/pkg/index.js');
    await ClipIndex.deleteStored('refused');
    const index = await ClipIndex.open({ dim: 8, fingerprint: 'test', name: 'refused' });
    await index.add('a', [1, 0, 0, 0, 0, 0, 0, 0], { v: 1 });
    // A value IndexedDB cannot clone makes the transaction fail, as a full disk would.
    const err = await index.add('b', [0, 1, 0, 0, 0, 0, 0, 0], { f: () => 1 }).then(() => null, (e) => ({ code: e.code, cause: e.cause?.name }));
    const replaced = await index.add('a', [0, 0, 1, 0, 0, 0, 0, 0], { f: () => 1 }).then(() => null, (e) => e.code);
    const out = { err, replaced, keys: index.keys(), meta: index.get('a').metadata, best: (await index.search([1, 0, 0, 0, 0, 0, 0, 0], { k: 1 }))[0] };
    await index.close();
    const again = await ClipIndex.open({ dim: 8, fingerprint: 'test', name: 'refused' });
    await again.ready;
    out.storedKeys = again.keys();
    await again.close();
    return out;
  });
  assert.deepEqual(r.err, { code: 'storage', cause: 'DataCloneError' });
  assert.equal(r.replaced, 'storage');
  assert.deepEqual(r.keys, ['a']);
  assert.deepEqual(r.meta, { v: 1 });
  assert.equal(r.best.key, 'a');
  assert.ok(r.best.score > 0.9999, 'the refused replacement did not change the row');
  assert.deepEqual(r.storedKeys, ['a']);
});
