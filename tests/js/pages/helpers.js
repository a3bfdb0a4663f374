// Imported by the browser tests inside the page (page.evaluate): small conveniences
// around the package under test, which is served from /pkg/.
import { Clip } from '/pkg/index.js';

export { Clip };

export const FIXTURES = `${location.origin}/fixtures`;
export const model = (name, prefix = '') => `${location.origin}${prefix}/fixtures/${name}/`;

/** Float32Array[] -> number[][] (what page.evaluate can return). */
export const plain = (list) => list.map((e) => Array.from(e));

export async function imageBlob(name) {
  const res = await fetch(`${FIXTURES}/images/${name}`);
  if (!res.ok) throw new Error(`test image ${name}: HTTP ${res.status}`);
  return res.blob();
}

export async function imageElement(name) {
  const img = new Image();
  img.src = `${FIXTURES}/images/${name}`;
  await img.decode();
  return img;
}

/** Run `fn` while a 10 ms interval ticks; how often it ticked and its longest gap. */
export async function whileTicking(fn) {
  let ticks = 0;
  let last = performance.now();
  let maxGap = 0;
  const iv = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 10);
  const t0 = performance.now();
  const result = await fn();
  const ms = performance.now() - t0;
  clearInterval(iv);
  maxGap = Math.max(maxGap, performance.now() - last);
  return { result, ms, ticks, maxGap };
}

/** Flip one byte of (or truncate) a Cache Storage entry, keeping its headers. */
export async function damageCacheEntry(url, how) {
  const cache = await caches.open('webclip-v1');
  const res = await cache.match(url);
  if (!res) throw new Error(`no cache entry for ${url}`);
  let bytes = new Uint8Array(await res.arrayBuffer());
  if (how === 'truncate') bytes = bytes.slice(0, bytes.length >> 1);
  else bytes[bytes.length - 101] ^= 0x5a;
  await cache.put(url, new Response(bytes, { headers: res.headers }));
}
