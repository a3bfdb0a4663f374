// ClipIndex benchmark: ranking N synthetic embeddings in WebAssembly (the package's
// pkg/ build, SIMD scan), per precision, and memory per row.
//
//   node tests/js/bench/index-bench.mjs [--rows 100000] [--dim 512] [--k 50] [--runs 20]
//
// Prints, per precision: the scan alone (top-k in wasm, the median of --runs queries), a
// whole `search` (scan + exact re-scoring of k * rescore candidates from memory storage),
// a filtered search (half the rows allowed), the bytes per row in wasm memory, and the
// time to add the rows. Synthetic rows are clustered like CLIP embeddings (a shared
// direction plus noise), so the top-k heap sees realistic score spreads.

import { ClipIndex, MemoryStorage } from '../../../pkg/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('rows', 100_000);
const DIM = arg('dim', 512);
const K = arg('k', 50);
const RUNS = arg('runs', 20);

let seed = 12345;
const rnd = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 4294967296 - 0.5;
};
const centre = Float32Array.from({ length: DIM }, rnd);
const row = () => Float32Array.from(centre, (c) => c + 0.8 * rnd());

const median = (xs) => xs.slice().sort((a, b) => a - b)[xs.length >> 1];

console.log(`ClipIndex: ${N} rows of ${DIM}, top ${K}, median of ${RUNS} queries (Node ${process.version})`);
const rows = Array.from({ length: N }, row);
const queries = Array.from({ length: RUNS }, row);
for (const precision of ['f16', 'i8', 'f32']) {
  // i8 and f16 re-score from the exact float32 rows, which memory storage keeps in JS (in the
  // browser IndexedDB keeps them on disk); f32 rows are exact already and need no copy.
  const index = await ClipIndex.open({ dim: DIM, precision, storage: new MemoryStorage({ exact: precision !== 'f32' }) });
  const t0 = performance.now();
  for (let at = 0; at < N; at += 5000) {
    await index.addMany(rows.slice(at, at + 5000).map((embedding, i) => ({ key: at + i, embedding, metadata: { even: (at + i) % 2 === 0 } })));
  }
  const addMs = performance.now() - t0;
  const store = index._store;
  const none = new Uint32Array(0);
  const scan = queries.map((q) => {
    const t = performance.now();
    store.search(q, K, none, -Infinity);
    return performance.now() - t;
  });
  const full = [];
  for (const q of queries) {
    const t = performance.now();
    await index.search(q, { k: K });
    full.push(performance.now() - t);
  }
  const filtered = [];
  for (const q of queries) {
    const t = performance.now();
    await index.search(q, { k: K, filter: { even: true } });
    filtered.push(performance.now() - t);
  }
  console.log(
    `${precision.padEnd(4)} scan ${median(scan).toFixed(2).padStart(6)} ms   search (re-scored) ${median(full).toFixed(2).padStart(6)} ms   ` +
      `filtered ${median(filtered).toFixed(2).padStart(6)} ms   ${index.bytesPerRow} B/row in wasm (${(index.memoryBytes / 2 ** 20).toFixed(1)} MiB)   add ${(addMs / 1000).toFixed(2)} s`,
  );
  await index.close();
}
