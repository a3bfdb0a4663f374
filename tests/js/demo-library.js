// Synthetic photo libraries for the demo at scale (tests/js/demo.test.mjs and
// tests/js/bench/demo-scale.mjs): records in the demo's own format, written straight into its
// storage (IndexedDB "webclip-tagger": the record in `images`, its thumbnail in `thumbs`, as
// www/webclip-tagger.js writes them when a photo is indexed; or, with `layout: 'inline'`, the
// thumbnail inside the record, as the tagger wrote them before), so a reload of the page shows
// them as a real library.
//
// Each record: a JPEG thumbnail (320x240; 64 distinct pictures, each record's bytes made
// unique by a few trailing bytes after the JPEG's end, which decoders ignore), a unit-length
// random embedding of `dim` values (seeded: the same `seed` gives the same library), three
// tags from the vocabulary, and the vocabulary key the tagger uses (so nothing is retagged).
// Photo i is named photo-000000i.jpg and added in order.

/**
 * Writes `n` records for `model` from the page (any page of the demo's origin, with the
 * tagger on it: it opens, and so upgrades, the database). Resolves to
 * `{ n, thumbBytes, embeddingBytes, writeMs }` (bytes per photo, on average).
 */
export async function writeLibrary(page, { n, dim, model, seed = 1, batch = 1000, layout = 'apart' }) {
  await page.waitForFunction(() => document.querySelector('webclip-tagger')?.vocab?.key);
  return page.evaluate(inPageWrite, { n, dim, model, seed, batch, layout });
}

async function inPageWrite({ n, dim, model, seed, batch, layout }) {
  const tagger = document.querySelector('webclip-tagger');
  const { key: vocabKey, labels } = tagger.vocab;
  // mulberry32
  let state = seed >>> 0;
  const rand = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());

  // 64 thumbnails: a gradient, a few shapes and grain (JPEG sizes near real photos').
  const pool = [];
  for (let p = 0; p < 64; p++) {
    const c = new OffscreenCanvas(320, 240);
    const ctx = c.getContext('2d');
    const g = ctx.createLinearGradient(0, 0, 320, 240);
    g.addColorStop(0, `hsl(${(p * 37) % 360} 60% 55%)`);
    g.addColorStop(1, `hsl(${(p * 37 + 120) % 360} 50% 30%)`);
    ctx.fillStyle = g;
    ctx.fillRect(0, 0, 320, 240);
    for (let k = 0; k < 12; k++) {
      ctx.fillStyle = `hsl(${Math.floor(rand() * 360)} 55% ${30 + Math.floor(rand() * 50)}%)`;
      ctx.beginPath();
      ctx.arc(rand() * 320, rand() * 240, 10 + rand() * 50, 0, 2 * Math.PI);
      ctx.fill();
    }
    const img = ctx.getImageData(0, 0, 320, 240);
    for (let i = 0; i < img.data.length; i += 4) {
      const d = (rand() - 0.5) * 40;
      img.data[i] += d; img.data[i + 1] += d; img.data[i + 2] += d;
    }
    ctx.putImageData(img, 0, 0);
    ctx.fillStyle = '#fff';
    ctx.font = 'bold 48px sans-serif';
    ctx.fillText(String(p), 16, 64);
    pool.push(new Uint8Array(await (await c.convertToBlob({ type: 'image/jpeg', quality: 0.82 })).arrayBuffer()));
  }

  const db = await new Promise((resolve, reject) => {
    const req = indexedDB.open('webclip-tagger');
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
  const t0 = performance.now();
  const base = Date.now();
  let thumbBytes = 0;
  for (let at = 0; at < n; at += batch) {
    const tx = db.transaction(['images', 'thumbs'], 'readwrite');
    const store = tx.objectStore('images');
    const thumbs = tx.objectStore('thumbs');
    for (let i = at; i < Math.min(n, at + batch); i++) {
      const e = new Float32Array(dim);
      let norm = 0;
      for (let j = 0; j < dim; j++) { e[j] = gauss(); norm += e[j] * e[j]; }
      norm = Math.sqrt(norm);
      for (let j = 0; j < dim; j++) e[j] /= norm;
      const hash = Array.from({ length: 8 }, () => Math.floor(rand() * 2 ** 32).toString(16).padStart(8, '0')).join('');
      const jpeg = pool[i % pool.length];
      const tail = new Uint8Array(8);
      new DataView(tail.buffer).setFloat64(0, i);
      const thumb = new Blob([jpeg, tail], { type: 'image/jpeg' });
      thumbBytes += thumb.size;
      const name = `photo-${String(i).padStart(7, '0')}.jpg`;
      const picks = new Set();
      while (picks.size < Math.min(3, labels.length)) picks.add(labels[Math.floor(rand() * labels.length)]);
      let left = 0.9;
      const tags = [...picks].map((label) => { const score = left * (0.4 + 0.3 * rand()); left -= score; return { label, score }; });
      const key = `${model}\n${hash}`;
      const record = {
        key, model, hash, name, path: `library/${2000 + (i % 25)}/${name}`,
        size: 2e6 + Math.floor(rand() * 3e6), type: 'image/jpeg', width: 4032, height: 3024,
        note: null, embedding: e, tags, vocabKey, added: base + i,
      };
      if (layout === 'inline') record.thumb = thumb;
      else thumbs.put({ key, thumb });
      store.put(record);
    }
    await new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('transaction aborted'));
    });
  }
  db.close();
  return { n, thumbBytes: thumbBytes / n, embeddingBytes: dim * 4, writeMs: performance.now() - t0 };
}

/**
 * The exact ranking of the stored library by cosine to `query` (an array), read from
 * IndexedDB in the page independently of the tagger: `[{ name, hash, score }]`, best
 * first, the best `k`.
 */
export function exactRanking(page, { model, query, k }) {
  return page.evaluate(async ({ model, query, k }) => {
    const db = await new Promise((resolve, reject) => {
      const req = indexedDB.open('webclip-tagger');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    const records = await new Promise((resolve, reject) => {
      const req = db.transaction('images').objectStore('images').index('model').getAll(model);
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    db.close();
    const cos = (a, b) => {
      let d = 0; let na = 0; let nb = 0;
      for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
      return d / Math.sqrt(na * nb);
    };
    return records.map((r) => ({ name: r.name, hash: r.hash, score: cos(query, r.embedding) }))
      .sort((a, b) => b.score - a.score).slice(0, k);
  }, { model, query, k });
}
