// Does a large model reliably come back from Cache Storage? Headless Chromium, the package's
// own loader (`Clip.load({ cache: true })`, weights stored in verified chunks):
//
//   node tests/js/bench/cache-reload.mjs --model-dir DIR [--tries 10] [--towers both]
//
// Each try is a fresh browser profile (empty Cache Storage): a cold load of the model served
// from DIR (for ViT-B/32 random weights: `webclip gen-weights --preset vit-b-32 --seed 0 --dtype
// f32 --out DIR`), then a reload in a new page of the same profile. It prints, per try, the
// cold load's time and the cache notice if the browser refused a write, the chunks stored, the
// reload's time and the weight bytes the reload fetched from the server (0 when they came from
// the cache), and how many tries of all reloaded from the cache. Goal (issue 12): 10 of 10.

import { mkdtemp, rm, readFile, stat } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer } from '../server.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const DIR = arg('model-dir', null);
if (!DIR) throw new Error('--model-dir DIR is required (a Hugging Face model folder)');
const TRIES = Number(arg('tries', 10));
const TOWERS = arg('towers', 'both');
const CHROMIUM = process.env.WEBCLIP_CHROMIUM ?? '/usr/bin/chromium';
const cpu = (await readFile('/proc/cpuinfo', 'utf8').catch(() => '')).match(/model name\s*:\s*(.*)/)?.[1] ?? cpus()[0]?.model;
const weightBytes = (await stat(join(resolve(DIR), 'model.safetensors'))).size;

const server = await startServer({ mounts: [['/models/bench/', DIR]] });
const model = `${server.url}/models/bench/`;
const fetched = (from) => server.log.slice(from).filter((e) => e.path.endsWith('/model.safetensors')).reduce((n, e) => n + e.bytes, 0);

const load = (page) => page.evaluate(async ({ model, towers }) => {
  const { Clip } = await import('/pkg/index.js');
  const t0 = performance.now();
  const clip = await Clip.load({ model, backend: 'cpu', towers, cache: true });
  const ms = performance.now() - t0;
  const notice = clip.cacheNotice;
  clip.dispose();
  const keys = await (await caches.open('webclip-v1')).keys();
  const chunks = keys.filter((r) => r.url.includes('model.safetensors') && r.url.includes('webclip-chunk=')).length;
  return { ms, notice, chunks };
}, { model, towers: TOWERS });

const rows = [];
try {
  for (let t = 1; t <= TRIES; t++) {
    const profile = await mkdtemp(join(tmpdir(), 'webclip-cache-reload-'));
    const ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-background-networking', '--no-first-run'],
    });
    try {
      let page = await ctx.newPage();
      await page.goto(`${server.url}/pages/index.html`);
      const mark = server.log.length;
      const cold = await load(page);
      const coldBytes = fetched(mark);
      await page.close();
      page = await ctx.newPage();
      await page.goto(`${server.url}/pages/index.html`);
      const mark2 = server.log.length;
      const warm = await load(page);
      rows.push({ t, cold, coldBytes, warm, warmBytes: fetched(mark2) });
      console.error(`try ${t}: cold ${(cold.ms / 1000).toFixed(1)} s, reload ${(warm.ms / 1000).toFixed(1)} s, reload fetched ${fetched(mark2)} B`);
    } finally {
      await ctx.close();
      await rm(profile, { recursive: true, force: true });
    }
  }
} finally {
  await server.close();
}

const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
console.log(`# Cache Storage reload: ${DIR} (${mib(weightBytes)} of weights), towers ${TOWERS}, CPU engine`);
console.log(`CPU: ${cpu}, ${cpus().length} cores; ${new Date().toISOString().slice(0, 10)}\n`);
console.log('| try | cold load | fetched | cache notice | chunks stored | reload | fetched on reload |');
console.log('|---:|---:|---:|---|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.t} | ${(r.cold.ms / 1000).toFixed(1)} s | ${mib(r.coldBytes)} | ${r.cold.notice ?? '–'} | ${r.cold.chunks} | ${(r.warm.ms / 1000).toFixed(1)} s | ${r.warmBytes} B |`);
}
const fromCache = rows.filter((r) => r.warmBytes === 0 && !r.cold.notice).length;
console.log(`\nreloaded from the cache: ${fromCache} of ${rows.length}`);
