// Debian's Chromium, headless, driven by playwright-core; WebGPU on SwiftShader.

import { chromium } from 'playwright-core';
import { before, after } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer } from '../server.js';

export const CHROMIUM = process.env.WEBCLIP_CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  const profile = mkdtempSync(path.join(tmpdir(), 'webclip-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--enable-unsafe-webgpu',
      '--enable-features=Vulkan',
      '--use-webgpu-adapter=swiftshader',
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
  const console_ = [];
  context.on('console', (m) => console_.push(`${m.type()}: ${m.text()}`));
  context.on('weberror', (e) => console_.push(`pageerror: ${e.error().message}`));
  return {
    context,
    console: console_,
    async page(url) {
      const page = await context.newPage();
      await page.goto(url);
      return page;
    },
    /** Open `url`, evaluate `fn(h, arg)` there with /pages/helpers.js imported as `h`, and
     * close the page. `expose`: functions of this process the page may call. */
    async run(url, fn, arg, expose = {}) {
      const page = await context.newPage();
      try {
        for (const [name, f] of Object.entries(expose)) await page.exposeFunction(name, f);
        await page.goto(url);
        return await page.evaluate(async ([src, arg]) => {
          const h = await import('/pages/helpers.js');
          // eslint-disable-next-line no-new-func
          return new Function('h', 'arg', `return (${src})(h, arg);`)(h, arg);
        }, [fn.toString(), arg]);
      } finally {
        await page.close();
      }
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * The test server and Chromium for one test file: started before its tests, closed after.
 * Returns `{ server, browser }`, filled in once the tests run.
 */
export function useBrowser() {
  const env = {};
  before(async () => {
    env.server = await startServer();
    env.browser = await launch();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.close();
  });
  return env;
}
