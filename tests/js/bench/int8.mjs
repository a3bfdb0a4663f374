// int8 against f32 weights on the CPU engine in Chromium, through the public API: for each
// wasm build and thread count, a fresh cross-origin-isolated page loads the image tower of a
// model folder with `weights: 'f32'` (as the checkpoint is) or `'int8'` (quantised at load),
// reports the wasm memory after load, then times embedImages at batch 1 and 8 on 224 x 224
// pixels. f32 and int8 pages alternate, `--rounds` times; the best time of each is kept.
//
//   ./build.sh && target/release/webclip gen-weights --preset vit-b-32 --out bench-out/vit-b-32
//   node tests/js/bench/int8.mjs [--model-dir bench-out/vit-b-32] [--builds webclip,webclip_relaxed,webclip_mt_relaxed]
//     [--threads 1,2] [--batches 1,8] [--runs 3] [--rounds 2]

import os from 'node:os';
import { startServer } from '../server.js';
import { launch } from '../browser/harness.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const MODEL_DIR = arg('model-dir', 'bench-out/vit-b-32');
const BUILDS = arg('builds', 'webclip,webclip_relaxed,webclip_mt_relaxed').split(',');
const THREADS = arg('threads', '1,2').split(',').map(Number);
const BATCHES = arg('batches', '1,8').split(',').map(Number);
const RUNS = Number(arg('runs', 3));
const ROUNDS = Number(arg('rounds', 2));

// In the page: load, measure memory, time each batch (one warm-up call first).
async function measure({ name, n, weights, batches, runs }) {
  const w = await import('/isolated/pkg/wasm.js');
  const build = await w.loadWasm({ name, threads: n, reason: 'int8 benchmark' });
  const { Clip } = await import('/isolated/pkg/index.js');
  const before = w.wasmMemoryBytes();
  const clip = await Clip.load({ model: '/model/', backend: 'cpu', towers: 'vision', weights: weights === 'int8' ? 'int8' : 'auto', threads: n });
  const memory = await clip._memory();
  const size = clip.imageSize;
  const image = (seed) => {
    const data = new Uint8ClampedArray(size * size * 4);
    for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761 + seed * 40503) >>> 24;
    return { width: size, height: size, data };
  };
  const times = {};
  for (const b of batches) {
    const imgs = Array.from({ length: b }, (_, i) => image(i));
    await clip.embedImages(imgs);
    const t = [];
    for (let r = 0; r < runs; r++) {
      const start = performance.now();
      await clip.embedImages(imgs);
      t.push((performance.now() - start) / b);
    }
    times[b] = Math.min(...t);
  }
  const info = { weights: clip.backendInfo.weights, threads: clip.backendInfo.threads, build: build.name };
  clip.dispose();
  return { info, before, memory, times };
}

const server = await startServer({ mounts: [['/model/', MODEL_DIR]] });
const browser = await launch();
const rows = [];
try {
  for (const name of BUILDS) {
    for (const n of THREADS) {
      if (n > 1 && !name.includes('_mt')) continue;
      const best = {};
      for (let round = 0; round < ROUNDS; round++) {
        for (const weights of ['f32', 'int8']) {
          const page = await browser.page(`${server.url}/isolated/pages/index.html`);
          try {
            const r = await page.evaluate(measure, { name, n, weights, batches: BATCHES, runs: RUNS });
            if (r.info.build !== name || r.info.weights !== weights) {
              throw new Error(`asked for ${name} ${weights}, ran ${r.info.build} ${r.info.weights}`);
            }
            const b = (best[weights] ??= { memory: r.memory, times: {} });
            for (const [k, v] of Object.entries(r.times)) b.times[k] = Math.min(b.times[k] ?? Infinity, v);
          } finally {
            await page.close();
          }
        }
      }
      rows.push({ name, n, ...best });
    }
  }
} finally {
  await browser.close();
  await server.close();
}

const mib = (b) => (b / 2 ** 20).toFixed(1);
let out = `# int8 vs f32 weights, CPU engine in Chromium, image tower of ${MODEL_DIR}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${new Date().toISOString().slice(0, 10)}\n`;
out += `\nms per image, best of ${RUNS} calls x ${ROUNDS} rounds (f32 and int8 pages alternating); wasm memory after load.\n\n`;
out += `| build | threads | ${BATCHES.map((b) => `b${b} f32 | b${b} int8 | b${b} int8/f32`).join(' | ')} | memory f32 MiB | memory int8 MiB | int8/f32 |\n`;
out += `|---|---:|${BATCHES.map(() => '---:|---:|---:').join('|')}|---:|---:|---:|\n`;
for (const r of rows) {
  const t = BATCHES.map((b) => `${r.f32.times[b].toFixed(1)} | ${r.int8.times[b].toFixed(1)} | ${(r.int8.times[b] / r.f32.times[b]).toFixed(2)}`);
  out += `| ${r.name} | ${r.n} | ${t.join(' | ')} | ${mib(r.f32.memory)} | ${mib(r.int8.memory)} | ${(r.int8.memory / r.f32.memory).toFixed(2)} |\n`;
}
process.stdout.write(out);
