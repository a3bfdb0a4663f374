// Where an image pass of the CPU engine spends its time in Chromium, for every wasm build
// of pkg/: each operation of the fastest of a few profiled passes (the wasm side of the
// "by operation" tables of `webclip bench`), on random weights of the preset's real shape.
//
//   ./build.sh && node tests/js/bench/profile.mjs [--preset vit-b-32] [--batches 1,8] [--threads 1,2]
//     [--passes 3] [--builds webclip_relaxed,webclip_mt_relaxed]

import os from 'node:os';
import { inEveryBuild } from './in-builds.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const PRESET = arg('preset', 'vit-b-32');
const BATCHES = arg('batches', '1,8').split(',').map(Number);
const THREADS = arg('threads', '1,2').split(',').map(Number);
const PASSES = Number(arg('passes', 3));
const BUILDS = arg('builds', 'webclip_relaxed,webclip_mt_relaxed').split(',');

const results = await inEveryBuild(
  { builds: BUILDS, threads: THREADS, reason: 'profile benchmark' },
  ({ w, build, preset, batches, passes }) =>
    ({ passes: batches.map((b) => JSON.parse(w.wasm.profileBench(preset, b, build.threads, passes))) }),
  { preset: PRESET, batches: BATCHES, passes: PASSES },
);
let out = `# webclip CPU engine in Chromium, ${PRESET} image pass by operation, ${os.cpus()[0]?.model ?? 'unknown CPU'}, ${new Date().toISOString().slice(0, 10)}\n`;
for (const r of results) {
  for (const p of r.passes) {
    out += `\n## ${r.name}, ${p.threads} thread(s), batch ${p.batch}: ${p.total_ms.toFixed(1)} ms (${(p.total_ms / p.batch).toFixed(1)} ms per image)\n\n${p.table}`;
  }
}
process.stdout.write(out);
