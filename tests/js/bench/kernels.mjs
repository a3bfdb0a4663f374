// The CPU engine's GEMMs in Chromium, for every wasm build of pkg/, against the core's own
// peak for that build's instruction mix (simd128 mul+add, or relaxed-SIMD FMA), measured in
// the same page: the wasm side of `webclip bench`'s matmul table.
//
//   ./build.sh && node tests/js/bench/kernels.mjs [--preset vit-b-32] [--threads 1,2] [--budget-ms 300]
//     [--builds webclip,webclip_relaxed,webclip_mt,webclip_mt_relaxed]
//
// Each (build, threads) runs in a fresh page of one headless Chromium, cross-origin
// isolated so that the threaded builds get their pool. Prints a Markdown table (a row per
// shape, a column per build and thread count) and writes the JSON to bench-out/kernels-*.json.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { repoRoot } from '../server.js';
import { inEveryBuild } from './in-builds.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const PRESET = arg('preset', 'vit-b-32');
const THREADS = arg('threads', '1,2').split(',').map(Number);
const BUDGET_MS = Number(arg('budget-ms', 300));
const BUILDS = arg('builds', 'webclip,webclip_relaxed,webclip_mt,webclip_mt_relaxed').split(',');

const results = await inEveryBuild(
  { builds: BUILDS, threads: THREADS, reason: 'kernel benchmark' },
  ({ w, build, preset, budget }) => ({ build, ...JSON.parse(w.wasm.kernelBench(preset, build.threads, budget)) }),
  { preset: PRESET, budget: BUDGET_MS },
);
for (const r of results) {
  process.stderr.write(`${r.name} on ${r.threads} thread(s): peak ${r.peak_gflops.toFixed(1)} GFLOP/s (${r.mix})\n`);
}

const pct = (g, peak) => `${((100 * g) / peak).toFixed(0)}%`;
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const col = (r) => `${r.name} t${r.threads}`;
let out = `# webclip CPU kernels in Chromium, ${PRESET}, ${cpu}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}\n\n`;
out += `GFLOP/s (share of the peak of that build's instruction mix, measured in the same page)\n\n`;
out += `| shape | M | K | N | ${results.map(col).join(' | ')} |\n|---|---:|---:|---:|${results.map(() => '---:').join('|')}|\n`;
out += `| peak (${[...new Set(results.map((r) => r.mix))].join(' / ')}) | | | | ${results.map((r) => r.peak_gflops.toFixed(1)).join(' | ')} |\n`;
for (const [i, row] of (results[0]?.rows ?? []).entries()) {
  const cells = results.map((r) => `${r.rows[i].gflops.toFixed(1)} (${pct(r.rows[i].gflops, r.peak_gflops)})`);
  out += `| ${row.what} | ${row.m} | ${row.k} | ${row.n} | ${cells.join(' | ')} |\n`;
}
const mean = (r) => r.rows.reduce((s, row) => s + row.gflops / r.peak_gflops, 0) / r.rows.length;
out += `| mean share of peak | | | | ${results.map((r) => `${(100 * mean(r)).toFixed(0)}%`).join(' | ')} |\n`;
process.stdout.write(out);
const dir = path.join(repoRoot, 'bench-out');
mkdirSync(dir, { recursive: true });
const file = path.join(dir, `kernels-${new Date().toISOString().slice(0, 16).replace(/[-:]/g, '')}.json`);
writeFileSync(file, JSON.stringify({ preset: PRESET, cpu, cores: os.cpus().length, results }, null, 1));
process.stderr.write(`wrote ${file}\n`);
