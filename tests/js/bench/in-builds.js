// Runs a function in a fresh cross-origin-isolated Chromium page for each (wasm build of
// pkg/, thread count): how kernels.mjs and profile.mjs time every build side by side.
// `body({ w, build, ...args })` runs in the page, with `w` the package's js/wasm.js and
// `build` what loadWasm loaded; single-thread builds are run on one thread only.

import { startServer } from '../server.js';
import { launch } from '../browser/harness.js';

export async function inEveryBuild({ builds, threads, reason }, body, args) {
  const server = await startServer();
  const browser = await launch();
  const results = [];
  try {
    for (const name of builds) {
      for (const n of threads) {
        if (n > 1 && !name.includes('_mt')) continue; // a single-thread build
        const page = await browser.page(`${server.url}/isolated/pages/index.html`);
        try {
          const r = await page.evaluate(async ({ name, n, reason, src, args }) => {
            const w = await import('/isolated/pkg/wasm.js');
            const build = await w.loadWasm({ name, threads: n, reason });
            // eslint-disable-next-line no-new-func
            return new Function('return ' + src)()({ w, build, ...args });
          }, { name, n, reason, src: body.toString(), args });
          results.push({ name, ...r });
        } finally {
          await page.close();
        }
      }
    }
  } finally {
    await browser.close();
    await server.close();
  }
  return results;
}
