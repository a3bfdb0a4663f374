// Indexing throughput of the demo (<webclip-tagger>, www/) in headless Chromium, CPU engine:
//
//   node tests/js/bench/demo-index.mjs [--n 2000] [--model-dir DIR] [--side 640] [--www DIR[,DIR...]] [--rounds 1]
//
// Makes `n` distinct JPEG photos of side x 3/4 side in the page (64 synthetic pictures, as
// tests/js/demo-library.js draws them, each file made unique by trailing bytes decoders
// ignore), adds them through `tagger.addFiles` to an empty library and prints, per demo folder
// given with --www (default: www/; give an older checkout's www/ beside it to compare in one
// run: each demo runs with the package built beside it, DIR/../pkg, when there is one; with
// --rounds R the demos take turns R times, so a busy machine slows each alike):
//   - the time to embed the label vocabulary first (the text tower; once per model and
//     vocabulary, then cached), outside the figures below;
//   - photos per second over the whole job (read, hash, thumbnail, embed, save);
//   - the engine's own time per image (the `msPerImage` of each batch: `embedImages` in the
//     worker, its decode and preprocessing included) and the job's wall time per photo over
//     it: 1.0 means the page's work (reading, hashing, thumbnails, storage) hides entirely
//     behind the engine's.
// --model-dir DIR: a Hugging Face model folder to serve and index with (ViT-B/32 random weights:
// `webclip gen-weights --preset vit-b-32 --seed 0 --dtype f32 --out DIR`); default: the tiny
// fixture model. The page is cross-origin isolated, so the engine runs its threaded build.
// Goals (issue 12): tiny model at least 2x 31 photos/s on 2,000 photos; ViT-B/32 within 10 %
// of the engine's own per-image time.

import { mkdtemp, rm, readFile } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, repoRoot } from '../server.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const N = Number(arg('n', 2000));
const SIDE = Number(arg('side', 640));
const MODEL_DIR = arg('model-dir', null);
const WWW = arg('www', join(repoRoot, 'www')).split(',').map((d) => resolve(d));
const CHROMIUM = process.env.WEBCLIP_CHROMIUM ?? '/usr/bin/chromium';
const cpu = (await readFile('/proc/cpuinfo', 'utf8').catch(() => '')).match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model;

const ROUNDS = Number(arg('rounds', 1));
const rows = [];
for (let round = 0; round < ROUNDS; round++) for (const www of WWW) {
  const server = await startServer({ www, isolated: true, mounts: MODEL_DIR ? [['/models/bench/', MODEL_DIR]] : [] });
  const profile = await mkdtemp(join(tmpdir(), 'webclip-demo-index-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  try {
    const model = MODEL_DIR ? `${server.url}/models/bench/` : `${server.url}/fixtures/tiny-quickgelu/`;
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/index.html?model=${encodeURIComponent(model)}&backend=cpu`);
    await page.waitForFunction(() => [...(document.querySelector('webclip-tagger')?.shadowRoot
      ?.querySelectorAll('.messages li span') ?? [])].some((s) => /^Model .* ready/.test(s.textContent)), null, { timeout: 600_000 });
    const r = await page.evaluate(async ({ n, side }) => {
      const h = Math.round((side * 3) / 4);
      let state = 7;
      const rand = () => {
        state = (state + 0x6d2b79f5) >>> 0;
        let t = state;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const pool = [];
      for (let p = 0; p < 64; p++) {
        const c = new OffscreenCanvas(side, h);
        const g = c.getContext('2d');
        const grad = g.createLinearGradient(0, 0, side, h);
        grad.addColorStop(0, `hsl(${(p * 37) % 360} 60% 55%)`);
        grad.addColorStop(1, `hsl(${(p * 37 + 120) % 360} 50% 30%)`);
        g.fillStyle = grad;
        g.fillRect(0, 0, side, h);
        for (let k = 0; k < 12; k++) {
          g.fillStyle = `hsl(${Math.floor(rand() * 360)} 55% ${30 + Math.floor(rand() * 50)}%)`;
          g.beginPath();
          g.arc(rand() * side, rand() * h, side / 30 + rand() * side / 6, 0, 2 * Math.PI);
          g.fill();
        }
        const img = g.getImageData(0, 0, side, h);
        for (let i = 0; i < img.data.length; i += 4) {
          const d = (rand() - 0.5) * 40;
          img.data[i] += d; img.data[i + 1] += d; img.data[i + 2] += d;
        }
        g.putImageData(img, 0, 0);
        pool.push(new Uint8Array(await (await c.convertToBlob({ type: 'image/jpeg', quality: 0.85 })).arrayBuffer()));
      }
      const files = [];
      let bytes = 0;
      for (let i = 0; i < n; i++) {
        const jpeg = pool[i % 64];
        const tail = new TextEncoder().encode(`#${i}`);
        const name = `photo-${String(i).padStart(6, '0')}.jpg`;
        files.push({ file: new File([jpeg, tail], name, { type: 'image/jpeg', lastModified: 1.7e12 + i }), path: `bench/${name}` });
        bytes += jpeg.length + tail.length;
      }
      const tagger = document.querySelector('webclip-tagger');
      const engine = [];
      const timing = tagger._timing.bind(tagger);
      tagger._timing = (ms) => { engine.push(ms); return timing(ms); };
      let detail = null;
      tagger.addEventListener('webclip-indexed', (e) => { detail = e.detail; }, { once: true });
      // The vocabulary's label embeddings first (the text tower, once per model and vocabulary,
      // then cached): the figures are the photos'.
      const l0 = performance.now();
      await tagger.core.policyEmbeddings();
      const labelsMs = performance.now() - l0;
      const t0 = performance.now();
      await tagger.addFiles(files);
      const wall = performance.now() - t0;
      return { wall, labelsMs, detail, engine, fileBytes: bytes / n, backend: tagger.shadowRoot.querySelector('[data-ref=backend]').textContent };
    }, { n: N, side: SIDE });
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    if (r.detail?.computed !== N) throw new Error(`indexed ${r.detail?.computed} of ${N}: ${JSON.stringify(r.detail)}`);
    // Batches are equal but the last: a plain mean of their per-image times.
    const engineMs = r.engine.reduce((a, b) => a + b, 0) / r.engine.length;
    rows.push({ www, labelsS: r.labelsMs / 1000, backend: r.backend, photosPerS: (N * 1000) / r.wall, wallMs: r.wall / N, engineMs, fileKB: r.fileBytes / 1024 });
  } finally {
    await ctx.close();
    await server.close();
    await rm(profile, { recursive: true, force: true });
  }
}

console.log(`# demo indexing: ${N} JPEG photos of ${SIDE}x${Math.round((SIDE * 3) / 4)}, ${MODEL_DIR ? `model ${MODEL_DIR}` : 'tiny fixture model'}`);
console.log(`CPU: ${cpu}, ${cpus().length} cores; ${new Date().toISOString().slice(0, 10)}\n`);
console.log('| demo | backend | labels first (s) | photos/s | wall ms/photo | engine ms/image | wall / engine |');
console.log('|---|---|---:|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.www.replace(repoRoot + '/', '')} | ${r.backend} | ${r.labelsS.toFixed(1)} | ${r.photosPerS.toFixed(1)} | ${r.wallMs.toFixed(1)} | ${r.engineMs.toFixed(1)} | ${(r.wallMs / r.engineMs).toFixed(2)} |`);
}
if (WWW.length > 1) {
  const mean = (www) => { const r = rows.filter((x) => x.www === www); return r.reduce((a, x) => a + x.photosPerS, 0) / r.length; };
  console.log(`\nphotos/s (mean of ${ROUNDS} run${ROUNDS > 1 ? 's' : ''} each), first over second: ${mean(WWW[0]).toFixed(1)} / ${mean(WWW[1]).toFixed(1)} = ${(mean(WWW[0]) / mean(WWW[1])).toFixed(2)}x`);
}
