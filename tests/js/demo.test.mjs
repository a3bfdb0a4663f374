// End-to-end test of the demo page (www/) in headless Chromium, on the CPU backend (WebGPU on
// SwiftShader is too slow to be worth it here) with the tiny random-weight fixture model: the
// tags are meaningless but deterministic, so the test checks mechanics, not taste:
//   - photos added through the file input get tags; a non-image is skipped and listed;
//   - a text search orders the photos as the package API itself does (Clip.load + embedImages +
//     embedTexts + cosine, computed independently in the same page);
//   - after a reload the photos and tags come back from IndexedDB, nothing is recomputed;
//   - the storage the site takes is shown, and asking to keep the library shows the answer;
//   - a copy (same content, another name) is no new card: its path is kept with the photo;
//   - the CSV export holds every photo, its tags and the paths of its copies;
//   - no request leaves the local server;
//   - bad input (a model URL that 404s, a model folder missing a file, an empty label list)
//     gives a visible, specific message;
//   - at scale (3,000 synthetic photos written into the demo's IndexedDB, tests/js/demo-library.js,
//     in the layout before thumbnails had their own store): the DOM holds a few dozen cards, the
//     grid is as tall as all of them, scrolling to the end shows the last photos, Home/End and
//     arrows move focus through the whole library, a text search shows exactly the top 50 of a
//     ranking of every stored embedding ("Show more": the top 100), and a new vocabulary
//     retags lazily (only the shown cards' records are rewritten; the export has every photo's
//     new tags) and keeps the thumbnails (moved to their own store) across a reload;
//   - a review policy (label and threshold per line) flags exactly the photos whose score
//     reaches it, on the cards and in both exports with the model fingerprint, and survives a
//     reload; a threshold that is no score is refused;
//   - an indexing job pauses (nothing is indexed meanwhile), and a tab closed halfway leaves a
//     record: the next tab says how much was done and what is left, and adding the same files
//     again reads only those left (the others are known by path, size and modification time);
//     a cancelled job keeps what it indexed and leaves no such record;
//   - two tabs indexing one library take turns (a Web Lock): the second says it waits, indexes
//     nothing meanwhile, then finds the photos the first saved instead of embedding them again;
//   - storage refusing the results (a full disk) pauses the job with a message; Resume saves
//     what was refused and goes on, and every photo is there after a reload.
// Run: cd tests/js && node --test demo.test.mjs   (needs pkg/ built by ./build.sh)
// Artifact: tests/js/artifacts/demo.png (and demo-phone.png, demo-scale.png), screenshots to look at.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { chromium } from 'playwright-core';
import { startServer, fixturesDir, repoRoot } from './server.js';
import { writeLibrary, exactRanking } from './demo-library.js';

const CHROMIUM = process.env.WEBCLIP_CHROMIUM ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--no-first-run', '--disable-quic'];
const PHOTOS = ['astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.png', 'camera.png'];
const ARTIFACTS = join(repoRoot, 'tests', 'js', 'artifacts');
const TIMEOUT = 180_000;

let server;
let context;
let userDir;
const foreign = []; // requests to anything but the local server

before(async () => {
  await access(join(repoRoot, 'pkg', 'index.js')).catch(() => {
    throw new Error('pkg/index.js is missing: build the package first (./build.sh)');
  });
  server = await startServer({ www: join(repoRoot, 'www') });
  server.port = new URL(server.url).port;
  userDir = await mkdtemp(join(tmpdir(), 'webclip-demo-'));
  context = await chromium.launchPersistentContext(userDir, {
    executablePath: CHROMIUM, headless: true, args: ARGS, acceptDownloads: true,
    viewport: { width: 1100, height: 900 },
  });
  // What the model progress line said, as each progress event was shown.
  await context.addInitScript(() => {
    window.progressShown = [];
    document.addEventListener('webclip-progress', (e) => window.progressShown.push(e.detail.text));
  });
  context.on('request', (req) => {
    const url = new URL(req.url());
    if (!['data:', 'blob:'].includes(url.protocol) && url.host !== `127.0.0.1:${server.port}`) foreign.push(req.url());
  });
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await context?.close();
  await server?.close();
  if (userDir) await rm(userDir, { recursive: true, force: true });
});

const modelUrl = () => `${server.url}/fixtures/tiny-quickgelu/`;
const demoUrl = (model = modelUrl(), extra = '') =>
  `${server.url}/index.html?model=${encodeURIComponent(model)}&backend=cpu${extra}`;

async function openPage(url) {
  const page = await context.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.logs = logs;
  await page.goto(url);
  return page;
}

const messages = (page) =>
  page.locator('webclip-tagger .messages li span').allTextContents();

/** Waits until the element's messages include one matching `re`; fails with all of them. */
async function waitMessage(page, re, timeout = 60_000) {
  const t0 = Date.now();
  for (;;) {
    const all = await messages(page);
    const hit = all.find((m) => re.test(m));
    if (hit) return hit;
    if (Date.now() - t0 > timeout) {
      assert.fail(`no message matching ${re}; messages: ${JSON.stringify(all)}; console: ${page.logs.join('\n')}`);
    }
    await page.waitForTimeout(100);
  }
}

const cardNames = (page) =>
  page.locator('webclip-tagger .card').evaluateAll((cards) => cards.map((c) => c.dataset.name));

const cardTags = (page) =>
  page.locator('webclip-tagger .card').evaluateAll((cards) =>
    Object.fromEntries(cards.map((c) => [c.dataset.name, [...c.querySelectorAll('.tags li')].map((li) => li.dataset.label)])));

/** A file for setInputFiles as a buffer (Playwright does not mix paths and buffers). */
const upload = async (path, mimeType) =>
  ({ name: basename(path), mimeType: mimeType ?? (path.endsWith('.png') ? 'image/png' : 'application/octet-stream'), buffer: await readFile(path) });

const stats = (page) => page.evaluate(() => ({ ...document.querySelector('webclip-tagger').stats }));

/** Adds photos through the file input; resolves to the summary message once they are done. */
async function addPhotos(page, files) {
  await clearMessages(page);
  await page.locator('webclip-tagger input[data-ref=photos]').setInputFiles(files);
  return waitMessage(page, /\d+ photos? indexed/, TIMEOUT);
}

const clearMessages = (page) =>
  page.evaluate(() => document.querySelector('webclip-tagger').shadowRoot.querySelector('.messages').replaceChildren());

test('demo page: tag, search, persist, export, stay local', { timeout: 6 * TIMEOUT }, async () => {
  const page = await openPage(demoUrl());
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  assert.match(await page.locator('webclip-tagger [data-ref=backend]').textContent(), /CPU/);
  const progressLines = await page.evaluate(() => window.progressShown);
  assert.ok(progressLines.some((l) => /^Loading model\.safetensors: [\d.]+ [KM]?B of 14 MB \(\d+ %\)$/.test(l)),
    `bytes and percent shown while the weights download: ${progressLines.slice(-5).join(' | ')}`);
  assert.match(await page.locator('webclip-tagger .privacy').textContent(), /never leave this device/);

  // Photos through the file input, plus a file that is not an image.
  const files = await Promise.all(PHOTOS.map((p) => upload(join(fixturesDir, 'images', p))));
  const summary = await addPhotos(page, [...files, { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo') }]);
  assert.match(summary, /^5 photos indexed, 1 skipped: notes\.txt \(not an image/);
  assert.deepEqual(await cardNames(page), PHOTOS, 'grid in the order added');
  assert.match(await page.locator('webclip-tagger [data-ref=skipped]').textContent(), /notes\.txt: not an image \(text\/plain\)/);

  // Storage: what the site holds (the photos just saved among it), and a button that asks
  // the browser to keep the library; either answer is said.
  const storage = page.locator('webclip-tagger [data-ref=storage]');
  const storageText = () => page.evaluate(() =>
    document.querySelector('webclip-tagger').shadowRoot.querySelector('[data-ref=storage]').textContent);
  for (let i = 0; !/ used of /.test(await storageText()) && i < 100; i++) await page.waitForTimeout(100);
  assert.match(await storage.textContent(), /^[\d.]+ [KMG]?B used of [\d.]+ [KMG]?B available · (kept until you clear it|the browser may clear it when space runs low)$/);
  assert.doesNotMatch(await storage.textContent(), /^0 B/, 'the saved photos take some space');
  const persist = page.locator('webclip-tagger [data-ref=persist]');
  if (await persist.isVisible()) {
    await persist.click();
    for (let i = 0; i < 100; i++) {
      if (/kept until you clear it/.test(await storageText())) break;
      if ((await messages(page)).some((m) => /did not agree to keep this library/.test(m))) break;
      await page.waitForTimeout(100);
    }
    const kept = /kept until you clear it/.test(await storageText());
    assert.ok(kept || (await messages(page)).some((m) => /did not agree to keep this library/.test(m)),
      `the answer to persist() is shown: ${await storageText()}`);
    assert.equal(await persist.isVisible(), !kept, 'the button stays only while the library may be cleared');
  }
  const s1 = await stats(page);
  assert.equal(s1.imagesComputed, PHOTOS.length);
  assert.match(await page.locator('webclip-tagger [data-ref=perImage]').textContent(), /^\d+ ms$/);
  const tags = await cardTags(page);
  for (const name of PHOTOS) assert.equal(tags[name].length, 3, `${name} shows its top 3 tags`);

  // Text search: the grid order must equal the ranking the package API gives, computed here.
  const query = 'a photo of a cat';
  await page.locator('webclip-tagger input[data-ref=query]').fill(query);
  await page.waitForFunction((q) =>
    document.querySelector('webclip-tagger').shadowRoot.querySelector('[data-ref=searchInfo]').textContent.includes(q), query);
  const shown = await cardNames(page);
  const expected = await page.evaluate(async ({ model, photos, query }) => {
    const { Clip } = await import('/pkg/index.js');
    const clip = await Clip.load({ model, backend: 'cpu', worker: true, cache: false });
    try {
      const blobs = await Promise.all(photos.map(async (p) => (await fetch(`/fixtures/images/${p}`)).blob()));
      const images = await clip.embedImages(blobs);
      const [text] = await clip.embedTexts([query]);
      const cos = (a, b) => {
        let d = 0; let na = 0; let nb = 0;
        for (let i = 0; i < a.length; i++) { d += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
        return d / Math.sqrt(na * nb);
      };
      const scored = photos.map((p, i) => [p, cos(images[i], text)]);
      return scored.sort((a, b) => b[1] - a[1]);
    } finally {
      clip.dispose();
    }
  }, { model: modelUrl(), photos: PHOTOS, query });
  assert.deepEqual(shown, expected.map(([p]) => p), `ranking for "${query}": scores ${JSON.stringify(expected)}`);
  const gaps = expected.slice(1).map(([, s], i) => expected[i][1] - s);
  assert.ok(Math.min(...gaps) > 1e-4, 'the fixture ranking has no near-ties, so the order is a real check');

  // "More like this" puts the photo itself first (cosine 1 with itself).
  const firstCard = (name) => page.waitForFunction((name) =>
    document.querySelector('webclip-tagger').shadowRoot.querySelector('.card')?.dataset.name === name, name);
  await page.locator('webclip-tagger .card[data-name="rocket.png"] button').click();
  await firstCard('rocket.png');
  await page.locator('webclip-tagger [data-ref=clearSearch]').click();
  await firstCard(PHOTOS[0]);
  assert.deepEqual(await cardNames(page), PHOTOS);

  // A library larger than the results shown: the best `searchTop` cards come first, the
  // others are hidden (not re-ordered), and clearing puts every card back in the order added.
  await page.evaluate(() => { document.querySelector('webclip-tagger').searchTop = 2; });
  const visible = () => page.locator('webclip-tagger .card').evaluateAll((cards) =>
    cards.filter((c) => c.offsetParent !== null).map((c) => c.dataset.name));
  await page.evaluate((q) => document.querySelector('webclip-tagger').search(q), query);
  assert.deepEqual(await visible(), expected.slice(0, 2).map(([p]) => p), 'only the best 2 are shown, in order');
  assert.match(await page.locator('webclip-tagger [data-ref=searchInfo]').textContent(), /the best 2 of 5/);
  await page.evaluate(() => document.querySelector('webclip-tagger').search(''));
  assert.deepEqual(await cardNames(page), PHOTOS);
  assert.deepEqual(await visible(), PHOTOS, 'every card is shown again');
  await page.evaluate(() => { document.querySelector('webclip-tagger').searchTop = 200; });

  // Reload: photos and tags come from IndexedDB; no image or text is embedded again.
  await page.reload();
  await waitMessage(page, /Restored 5 photos/);
  assert.deepEqual(await cardTags(page), tags, 'the same tags after a reload');
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  assert.match(await addPhotos(page, files), /^0 photos indexed, 5 already known/);
  const s2 = await stats(page);
  assert.equal(s2.imagesComputed, 0, 'no image embedded after the reload');
  assert.equal(s2.imagesCached, PHOTOS.length);
  assert.equal(s2.textsComputed, 0, 'label embeddings came from IndexedDB too');
  assert.deepEqual(await cardNames(page), PHOTOS);

  // Copies: a known photo under another name, and the same content again in that batch.
  // Neither becomes a card; both paths are kept with the photo they copy, across a reload.
  const copies = ['coffee-copy.png', 'coffee-copy-2.png'];
  const copySummary = await addPhotos(page, copies.map((name) => ({ ...files[1], name })));
  assert.match(copySummary, /^0 photos indexed, 1 already known \(from cache\), 2 copies of photos here, kept with them: coffee-copy\.png is coffee\.png; coffee-copy-2\.png is coffee\.png\.$/);
  assert.deepEqual(await cardNames(page), PHOTOS, 'a copy is not a card of its own');
  await page.reload();
  await waitMessage(page, /Restored 5 photos/);
  assert.match(await page.locator('webclip-tagger .card[data-name="coffee.png"] .name').getAttribute('title'),
    / · also at coffee-copy\.png, coffee-copy-2\.png$/);

  // CSV export, read back from the download.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('webclip-tagger [data-ref=exportCsv]').click(),
  ]);
  assert.equal(download.suggestedFilename(), 'webclip-tags.csv');
  const csv = (await readFile(await download.path(), 'utf8')).trim().split(/\r\n/);
  assert.equal(csv[0], 'file,sha256,tag1,score1,tag2,score2,tag3,score3,copies,review');
  assert.equal(csv.length, 1 + PHOTOS.length);
  for (const [i, name] of PHOTOS.entries()) {
    const cells = csv[1 + i].split(',');
    assert.equal(cells[0], name);
    assert.match(cells[1], /^[0-9a-f]{64}$/);
    assert.deepEqual([cells[2], cells[4], cells[6]], tags[name], `${name}: CSV tags = shown tags`);
    assert.ok(Number(cells[3]) >= Number(cells[5]), 'scores descend');
    assert.equal(cells[8], name === 'coffee.png' ? copies.join('|') : '', `${name}: its copies`);
    assert.equal(cells[9], '', `${name}: no review policy, no flag`);
  }

  // JSON export: the same tags, with the vocabulary they come from.
  const [jsonDownload] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('webclip-tagger [data-ref=exportJson]').click(),
  ]);
  const json = JSON.parse(await readFile(await jsonDownload.path(), 'utf8'));
  assert.equal(json.labels.length, 105);
  assert.deepEqual(json.photos.map((p) => p.file), PHOTOS);
  for (const p of json.photos) assert.deepEqual(p.tags.map((t) => t.label), tags[p.file]);
  assert.deepEqual(json.photos.map((p) => p.copies), PHOTOS.map((p) => (p === 'coffee.png' ? copies : [])));

  await page.screenshot({ path: join(ARTIFACTS, 'demo.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, 'demo-phone.png'), fullPage: true });
  const pageErrors = page.logs.filter((l) => l.startsWith('[pageerror]'));
  assert.deepEqual(pageErrors, []);
  await page.close();
  assert.deepEqual(foreign, [], 'no request left the local server');
});

test('demo page: a review policy flags photos whose score reaches a threshold; the export records what the decision rests on', { timeout: 2 * TIMEOUT }, async () => {
  const page = await openPage(demoUrl());
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  const files = await Promise.all(PHOTOS.map((p) => upload(join(fixturesDir, 'images', p))));
  await addPhotos(page, files);
  const tagger = () => page.evaluate(async () => JSON.parse(await document.querySelector('webclip-tagger').exportJson()));
  const flagged = () => page.evaluate(() => Object.fromEntries([...document.querySelector('webclip-tagger').shadowRoot
    .querySelectorAll('.card')].map((c) => [c.dataset.name, c.classList.contains('flag') ? c.querySelector('.sim').textContent : null])));
  const apply = async (policy) => {
    await page.locator('webclip-tagger textarea[data-ref=policy]').fill(policy);
    await page.locator('webclip-tagger [data-ref=applyLabels]').click();
  };
  await page.locator('webclip-tagger [data-ref=labelsBox] summary').click();
  assert.deepEqual((await tagger()).policy, [], 'no policy by default');

  // The policy label is a label of the vocabulary too (the top tag of the first photo), so
  // the two share the probability where that label describes a photo best: those photos
  // score about half their top probability, the others about nothing. The fixture model's
  // weights are random, so this checks the mechanics, not the judgement.
  const top = Object.fromEntries(Object.entries(await cardTags(page)).map(([n, t]) => [n, t[0]]));
  const label = top[PHOTOS[0]];
  const want = PHOTOS.filter((n) => top[n] === label);

  // Threshold 0: every photo is flagged, with its score.
  await apply(`${label} 0\nsomething else entirely 100%`);
  await waitMessage(page, /Retagged 5 photos/, TIMEOUT);
  let shown = await flagged();
  for (const name of PHOTOS) assert.ok((shown[name] ?? '').startsWith(`review: ${label} `), `${name}: ${shown[name]}`);
  const all = await tagger();
  assert.match(all.modelFingerprint, /^[0-9a-f]{16,}$/, 'the export names the model by its fingerprint');
  assert.deepEqual(all.policy, [{ label, threshold: 0 }, { label: 'something else entirely', threshold: 1 }]);
  const score = {};
  for (const p of all.photos) {
    const mine = p.review.find((f) => f.label === label);
    assert.ok(mine && mine.threshold === 0 && mine.score >= 0 && mine.score <= 1, `${p.file}: ${JSON.stringify(p.review)}`);
    score[p.file] = mine.score;
  }
  const low = Math.max(0, ...PHOTOS.filter((n) => !want.includes(n)).map((n) => score[n]));
  const high = Math.min(...want.map((n) => score[n]));
  assert.ok(high > 0.2 && high > low, `shared top probability ${high}, others at most ${low}`);

  // A threshold between them: exactly the photos at or above it, in the page and the
  // export, and the policy survives a reload.
  const cut = Number(((low + high) / 2).toFixed(4));
  await apply(`${label} ${cut}`);
  await waitMessage(page, /Retagged 5 photos/, TIMEOUT);
  for (let i = 0; i < 50; i++) {
    shown = await flagged();
    if (PHOTOS.every((n) => !!shown[n] === want.includes(n))) break;
    await page.waitForTimeout(100);
  }
  assert.deepEqual(PHOTOS.filter((n) => shown[n]), want, 'the cards flagged');
  await page.reload();
  await waitMessage(page, /Restored 5 photos/, TIMEOUT);
  const after = await tagger();
  assert.deepEqual(after.policy, [{ label, threshold: cut }]);
  for (let i = 0; i < 50 && after.photos.every((p) => !p.review.length); i++) {
    await page.waitForTimeout(100);
    Object.assign(after, await tagger());
  }
  assert.deepEqual(after.photos.filter((p) => p.review.length).map((p) => p.file).sort(), [...want].sort(), 'the export after a reload');
  const csv = await page.evaluate(() => document.querySelector('webclip-tagger').exportCsv());
  const [head, ...rows] = csv.trim().split('\r\n');
  assert.equal(head.split(',').at(-1), 'review');
  assert.equal(rows.filter((r) => r.endsWith(`,${label}:${r.split(':').at(-1)}`) && /:[01]\.\d{4}$/.test(r)).length, want.length);

  // A threshold that is no score is refused, and the policy in use stays.
  await page.locator('webclip-tagger [data-ref=labelsBox] summary').click().catch(() => {});
  await apply('rocket 2');
  await waitMessage(page, /The review policy is not usable: line 1 \("rocket 2"\) needs a label then a score from 0 to 1/, TIMEOUT);
  assert.deepEqual((await tagger()).policy, [{ label, threshold: cut }]);
  await page.close();
});

test('demo page: bad input gives specific messages and the page keeps working', { timeout: 2 * TIMEOUT }, async () => {
  // A model URL that 404s.
  const page = await openPage(demoUrl(`${server.url}/fixtures/no-such-model/`));
  const msg = await waitMessage(page, /Could not load the model/, TIMEOUT);
  assert.match(msg, /no-such-model/);
  assert.match(msg, /not found|404/);
  assert.ok(!(await messages(page)).some((m) => /Could not start/.test(m)), 'one message, not a start-up failure');
  // Photos added without a model are not lost silently.
  await page.locator('webclip-tagger input[data-ref=photos]').setInputFiles([await upload(join(fixturesDir, 'images', 'coffee.png'))]);
  assert.match(await waitMessage(page, /not indexed/, TIMEOUT), /^1 photo was not indexed because the model is not loaded/);
  assert.equal(await page.locator('webclip-tagger [data-ref=indexBox]').isHidden(), true, 'no progress bar left behind');

  // A model folder missing its tokenizer: named, and nothing is loaded.
  const dir = join(fixturesDir, 'tiny-quickgelu');
  await page.locator('webclip-tagger input[data-ref=modelFiles]').setInputFiles(
    ['config.json', 'model.safetensors', 'preprocessor_config.json'].map((f) => join(dir, f)));
  assert.match(await waitMessage(page, /lack/), /tokenizer\.json/);

  // The same files complete: the page recovers and loads the model from the device.
  await page.locator('webclip-tagger input[data-ref=modelFiles]').setInputFiles(
    ['config.json', 'model.safetensors', 'preprocessor_config.json', 'tokenizer.json'].map((f) => join(dir, f)));
  await waitMessage(page, /Model .*on this device.* ready/, TIMEOUT);

  // An empty label list is refused; the previous labels stay.
  await page.locator('webclip-tagger [data-ref=labelsBox] summary').click();
  await page.locator('webclip-tagger textarea[data-ref=labels]').fill(' \n , \n');
  await page.locator('webclip-tagger [data-ref=applyLabels]').click();
  await waitMessage(page, /label list is empty/);

  // A small vocabulary via the keyboard (Enter on the focused button) is taken.
  await page.locator('webclip-tagger textarea[data-ref=labels]').fill('cat\ndog\nrocket');
  await page.locator('webclip-tagger [data-ref=applyLabels]').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() =>
    document.querySelector('webclip-tagger').vocab.labels.join() === 'cat,dog,rocket');

  // A corrupt photo is skipped and named; a photo over the pixel limit (lowered to 50,000 for the
  // test by max-pixels) is tagged from a downscaled copy.
  await page.evaluate(() => document.querySelector('webclip-tagger').setAttribute('max-pixels', '50000'));
  const summary = await addPhotos(page, [
    await upload(join(fixturesDir, 'images', 'panorama-900x60.png')),
    { name: 'broken.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('this is no jpeg') },
  ]);
  assert.match(summary, /^1 photo indexed, 1 skipped: broken\.jpg \(the browser could not decode it/);
  assert.match(await page.locator('webclip-tagger [data-ref=skipped]').textContent(), /broken\.jpg: the browser could not decode it/);
  // Over the (lowered) pixel limit: tagged from a smaller copy, and the card says so.
  assert.match(await page.locator('webclip-tagger .card .note').textContent(), /900×60 .* is over .*; tagged from a 866×58 copy/);
  const tags = await page.locator('webclip-tagger .card .tags li').evaluateAll((lis) => lis.map((li) => li.dataset.label));
  assert.equal(tags.length, 3);
  for (const t of tags) assert.ok(['cat', 'dog', 'rocket'].includes(t), t);

  // Dropped files: a photo and a non-image; the non-image is listed, the photo tagged.
  await clearMessages(page);
  const coffee = (await readFile(join(fixturesDir, 'images', 'coffee.jpg'))).toString('base64');
  await page.evaluate((b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([bytes], 'coffee.jpg', { type: 'image/jpeg' }));
    dt.items.add(new File(['{}'], 'data.json', { type: 'application/json' }));
    const drop = document.querySelector('webclip-tagger').shadowRoot.querySelector('[data-ref=drop]');
    drop.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, coffee);
  assert.match(await waitMessage(page, /photos? indexed/, TIMEOUT), /^1 photo indexed, 1 skipped: data\.json \(not an image/);
  assert.deepEqual(await cardNames(page), ['panorama-900x60.png', 'coffee.jpg']);
  await page.screenshot({ path: join(ARTIFACTS, 'demo-errors.png'), fullPage: true });
  assert.deepEqual(page.logs.filter((l) => l.startsWith('[pageerror]')), [], 'errors are handled, none escapes');
  await page.close();
  assert.deepEqual(foreign, []);
});

test('demo page: backend auto says which engine runs, and why when it is the CPU', { timeout: 2 * TIMEOUT }, async () => {
  const page = await openPage(`${server.url}/index.html?model=${encodeURIComponent(modelUrl())}`);
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  const backend = await page.locator('webclip-tagger [data-ref=backend]').textContent();
  if (/CPU/.test(backend)) {
    // Headless Chromium without GPU flags usually has no adapter: the page must say so.
    assert.match((await messages(page)).join('\n'), /no usable WebGPU .*so the model runs on the CPU/);
  } else {
    assert.match(backend, /^WebGPU/);
  }
  await page.close();
  assert.deepEqual(foreign, []);
});

test('embed-example.html: the drop-in element takes its attributes and downloads nothing before use', { timeout: TIMEOUT }, async () => {
  const page = await openPage(`${server.url}/embed-example.html`);
  const summary = page.locator('webclip-tagger [data-ref=labelsSummary]');
  await page.waitForFunction(() =>
    document.querySelector('webclip-tagger')?.shadowRoot.querySelector('[data-ref=labelsSummary]').textContent !== '');
  assert.equal(await summary.textContent(), '(8 labels × 2 templates)');
  assert.equal(await page.locator('webclip-tagger input[data-ref=url]').inputValue(),
    'https://huggingface.co/openai/clip-vit-base-patch32/resolve/main/');
  assert.match(await page.locator('webclip-tagger .privacy').textContent(), /model download \(from huggingface\.co\)/);
  await page.waitForTimeout(500);
  await page.close();
  assert.deepEqual(foreign, [], 'no model download until the user asks for one');
});

test('demo page: a SigLIP model loads by URL; its tags are sigmoid scores cut at the threshold', { timeout: 2 * TIMEOUT }, async () => {
  const siglip = `${server.url}/fixtures/siglip/siglip-spm/`;
  const labels = ['a cat', 'a rocket', 'coffee', 'a camera'];
  const photos = PHOTOS.slice(0, 2);
  // The classify scores of the package itself, for the threshold to sit between.
  const probe = await openPage(`${server.url}/index.html`);
  const scores = await probe.evaluate(async ({ model, photos, labels }) => {
    const { Clip } = await import('/pkg/index.js');
    const clip = await Clip.load({ model, backend: 'cpu', cache: false });
    try {
      const out = {};
      for (const p of photos) out[p] = await clip.classify(await (await fetch(`/fixtures/images/${p}`)).blob(), labels);
      return { family: clip.family, out };
    } finally {
      clip.dispose();
    }
  }, { model: siglip, photos, labels });
  await probe.close();
  assert.equal(scores.family, 'siglip');
  const all = Object.values(scores.out).flat().map((l) => l.score).sort((a, b) => a - b);
  const threshold = (all[Math.floor(all.length / 2) - 1] + all[Math.floor(all.length / 2)]) / 2;

  const page = await openPage(demoUrl(siglip, `&labels=${encodeURIComponent(labels.join(','))}&templates=${encodeURIComponent('{}')}&top=4&threshold=${threshold}`));
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  await addPhotos(page, await Promise.all(photos.map((p) => upload(join(fixturesDir, 'images', p)))));
  const tags = await cardTags(page);
  for (const p of photos) {
    const want = scores.out[p].filter((l) => l.score >= threshold).map((l) => l.label);
    assert.deepEqual(tags[p], want, `${p}: the labels whose sigmoid score passes ${threshold}`);
  }
  await page.close();
  assert.deepEqual(foreign, []);
});

/**
 * Runs `fn({ ctx, open })` in a browser profile of its own, removed afterwards, so that what it
 * stores stays out of the other tests' storage. `open()` is a new page of the demo with its
 * model ready (`page.logs`: its page errors). Its pages have `testPhotos(first, n, folder)`:
 * `{ file, path }` of `n` distinct small PNGs from index `first` on, the same index giving the
 * same file (content, name and modification time) in any page.
 */
async function inOwnProfile(prefix, fn) {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1100, height: 900 },
  });
  await ctx.addInitScript(() => {
    window.testPhotos = async (first, n, folder) => {
      const files = [];
      for (let i = first; i < first + n; i++) {
        const c = new OffscreenCanvas(48, 40);
        const g = c.getContext('2d');
        g.fillStyle = `hsl(${(i * 47) % 360} 70% ${30 + (i % 5) * 10}%)`;
        g.fillRect(0, 0, 48, 40);
        g.fillStyle = '#000';
        g.fillRect(i % 40, (i * 7) % 32, 8, 8);
        const blob = await c.convertToBlob({ type: 'image/png' });
        const name = `img-${String(i).padStart(4, '0')}.png`;
        files.push({ file: new File([blob], name, { type: 'image/png', lastModified: 1.7e12 + i }), path: `${folder}/${name}` });
      }
      return files;
    };
  });
  const open = async () => {
    const page = await ctx.newPage();
    const logs = [];
    page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
    page.logs = logs;
    await page.goto(demoUrl());
    await waitMessage(page, /Model .* ready/, TIMEOUT);
    return page;
  };
  try {
    return await fn({ ctx, open });
  } finally {
    await ctx.close();
    await rm(dir, { recursive: true, force: true });
  }
}

test('demo page: an indexing job pauses, is cut short by a closed tab, and resumes without reading again what was done', { timeout: 3 * TIMEOUT }, () => inOwnProfile('webclip-demo-job-', async ({ open }) => {
  const N = 120;
  // `n` photos from `first` on (the same files when added again), added without waiting;
  // `window.indexed` gets the job's summary, `window.reads` the names of the files read
  // (hashed or decoded) meanwhile.
  const add = (page, first, n) => page.evaluate(async ({ first, n }) => {
    const files = await window.testPhotos(first, n, 'trip');
    window.reads = [];
    const read = Blob.prototype.arrayBuffer;
    Blob.prototype.arrayBuffer = function () { if (this.name) window.reads.push(this.name); return read.call(this); };
    const decode = window.createImageBitmap;
    window.createImageBitmap = (src, ...rest) => { if (src?.name) window.reads.push(src.name); return decode(src, ...rest); };
    const tagger = document.querySelector('webclip-tagger');
    window.indexed = null;
    tagger.addEventListener('webclip-indexed', (e) => { window.indexed = e.detail; }, { once: true });
    tagger.addFiles(files);
  }, { first, n });
  const photos = (page) => page.evaluate(() => document.querySelector('webclip-tagger').order.length);
  const shown = (page, ref) => page.locator(`webclip-tagger [data-ref=${ref}]`).evaluate((el) => !el.classList.contains('hidden') && el.textContent);
  const job = (page) => page.evaluate(() => {
    const t = document.querySelector('webclip-tagger');
    return t.store.get('jobs', `${t.modelSpec.id}\njob`);
  });
  // A first tab starts the job, pauses it once some photos are saved, and is closed.
  const first = await open();
  await add(first, 0, N);
  await first.waitForFunction(() => (document.querySelector('webclip-tagger').order.length >= 10), null, { timeout: TIMEOUT });
  // dispatchEvent: the status line above re-wraps as its figures change, so the button may
  // move between two frames, which Playwright's click waits out; the click is what counts.
  await first.locator('webclip-tagger [data-ref=pauseJob]').dispatchEvent('click');
  assert.equal(await shown(first, 'pauseJob'), 'Resume');
  await first.waitForFunction(() => /paused$/.test(document.querySelector('webclip-tagger').shadowRoot.querySelector('[data-ref=indexText]').textContent));
  // The batch being embedded when the pause came still finishes: wait for it to be saved.
  let pausedAt = -1;
  for (let i = 0; i < 100; i++) {
    const [n, record] = [await photos(first), await job(first)];
    if (n === pausedAt && record?.settled === n) break;
    pausedAt = n;
    await first.waitForTimeout(300);
  }
  await first.waitForTimeout(1500);
  assert.equal(await photos(first), pausedAt, 'nothing is indexed while paused');
  const saved = await job(first);
  assert.ok(saved && saved.total === N && saved.settled === pausedAt && pausedAt < N, JSON.stringify(saved));
  await first.close();

  // The next tab says what was cut short; adding the same files finishes the job and reads
  // only the files that were left.
  const second = await open();
  await waitMessage(second, new RegExp(`Restored ${pausedAt} photos`), TIMEOUT);
  await second.waitForFunction(() => !document.querySelector('webclip-tagger').shadowRoot.querySelector('[data-ref=jobBox]').classList.contains('hidden'));
  const left = N - pausedAt;
  const next = `trip/img-${String(pausedAt).padStart(4, '0')}.png`;
  assert.match(await second.locator('webclip-tagger [data-ref=jobText]').textContent(), new RegExp(`^Indexing of ${N} files was cut short when the page closed: ${pausedAt} done, ${left} left \\(${next}, `));
  await clearMessages(second);
  await add(second, 0, N);
  const summary = await waitMessage(second, /^\d+ photos? indexed/, TIMEOUT);
  assert.match(summary, new RegExp(`^${left} photos indexed, ${pausedAt} unchanged since indexed \\(not read again\\)`));
  const done = await second.evaluate(() => ({ indexed: window.indexed, reads: window.reads }));
  assert.deepEqual([done.indexed.computed, done.indexed.unchanged, done.indexed.cached], [left, pausedAt, 0]);
  const readNames = new Set(done.reads);
  for (let i = 0; i < N; i++) {
    const name = `img-${String(i).padStart(4, '0')}.png`;
    assert.equal(readNames.has(name), i >= pausedAt, `${name} read: ${readNames.has(name)}`);
  }
  assert.equal(await shown(second, 'jobBox'), false, 'the finished job is no longer reported');
  assert.equal(await job(second), undefined, 'a finished job leaves no record');
  assert.equal(await photos(second), N);

  // Cancel: what is indexed stays, and nothing is reported as cut short afterwards.
  await add(second, 1000, 60);
  await second.waitForFunction((n) => document.querySelector('webclip-tagger').order.length >= n + 5, N, { timeout: TIMEOUT });
  await second.locator('webclip-tagger [data-ref=cancelJob]').dispatchEvent('click');
  const cancelled = await waitMessage(second, /^Indexing cancelled: \d+ of 60 files done/, TIMEOUT);
  const kept = await photos(second);
  assert.ok(kept > N && kept < N + 60, `${kept} photos after the cancel (${cancelled})`);
  assert.equal(await shown(second, 'cancelJob'), false);
  await second.reload();
  await waitMessage(second, new RegExp(`Restored ${kept} photos`), TIMEOUT);
  await second.waitForTimeout(300);
  assert.equal(await shown(second, 'jobBox'), false, 'a cancelled job is not reported as cut short');
  assert.deepEqual(second.logs, []);
  await second.close();
}));

test('demo page: two tabs indexing one library take turns, and the second finds what the first saved', { timeout: 3 * TIMEOUT }, () => inOwnProfile('webclip-demo-tabs-', async ({ open }) => {
  // Photos `first` .. `first + n - 1`; the same index gives the same file in any tab.
  const add = (page, first, n) => page.evaluate(async ({ first, n }) => {
    const files = await window.testPhotos(first, n, 'tabs');
    const tagger = document.querySelector('webclip-tagger');
    window.indexed = null;
    tagger.addEventListener('webclip-indexed', (e) => { window.indexed = e.detail; }, { once: true });
    tagger.addFiles(files);
  }, { first, n });
  const photos = (page) => page.evaluate(() => document.querySelector('webclip-tagger').order.length);
  const hidden = (page, ref) => page.locator(`webclip-tagger [data-ref=${ref}]`).evaluate((el) => el.classList.contains('hidden'));
  const a = await open();
  const b = await open();
  // Tab A indexes 100 photos and pauses on the way.
  await add(a, 0, 100);
  await a.waitForFunction(() => document.querySelector('webclip-tagger').order.length >= 8, null, { timeout: TIMEOUT });
  await a.locator('webclip-tagger [data-ref=pauseJob]').dispatchEvent('click');
  // Tab B, reopened meanwhile, does not call A's job cut short.
  await b.reload();
  await waitMessage(b, /Model .* ready/, TIMEOUT);
  await b.waitForTimeout(500);
  assert.equal(await hidden(b, 'jobBox'), true, "a job another tab runs is not reported as cut short");
  // B adds 20 photos A is indexing and 10 of its own: it waits for A.
  await clearMessages(b);
  await add(b, 80, 30);
  await waitMessage(b, /^Another tab is indexing photos into this library/, TIMEOUT);
  const before = await photos(b);
  await b.waitForTimeout(1000);
  assert.equal(await photos(b), before, 'nothing is indexed while the other tab holds the library');
  // A goes on and finishes; then B runs, and the photos A saved are known, not embedded again.
  await a.locator('webclip-tagger [data-ref=pauseJob]').dispatchEvent('click');
  await waitMessage(a, /^100 photos indexed/, TIMEOUT);
  const summary = await waitMessage(b, /^\d+ photos? indexed/, TIMEOUT);
  const detail = await b.evaluate(() => window.indexed);
  assert.deepEqual([detail.computed, detail.cached + detail.unchanged], [10, 20], summary);
  // B's page shows what it restored and what it added; all 110 are saved.
  await b.reload();
  await waitMessage(b, /Restored 110 photos/, TIMEOUT);
  await b.waitForTimeout(300);
  assert.equal(await hidden(b, 'jobBox'), true, 'both jobs ended: nothing cut short');
  assert.deepEqual([...a.logs, ...b.logs], []);
}));

test('demo page: storage refusing results pauses indexing; Resume saves them and goes on', { timeout: 3 * TIMEOUT }, () => inOwnProfile('webclip-demo-full-', async ({ open }) => {
  const page = await open();
  const N = 40;
  // Storage refuses every write of photos while `window.full` is set, as a full disk does.
  await page.evaluate(async (n) => {
    const tagger = document.querySelector('webclip-tagger');
    const put = tagger.store.putPhotos.bind(tagger.store);
    window.full = false;
    window.refused = 0;
    tagger.store.putPhotos = (records) => {
      if (!window.full) return put(records);
      window.refused++;
      return Promise.reject(new DOMException('The quota has been exceeded.', 'QuotaExceededError'));
    };
    const files = await window.testPhotos(0, n, 'full');
    tagger.addEventListener('webclip-indexed', (e) => { window.indexed = e.detail; }, { once: true });
    // Full from the second batch on.
    const first = tagger.store.putPhotos;
    let calls = 0;
    tagger.store.putPhotos = (records) => { if (++calls === 2) window.full = true; return first(records); };
    tagger.addFiles(files);
  }, N);
  await waitMessage(page, /^The browser refused to save the results \(.*quota.*\): indexing is paused/i, TIMEOUT);
  assert.equal(await page.locator('webclip-tagger [data-ref=pauseJob]').textContent(), 'Resume');
  await page.waitForTimeout(1000);
  const held = await page.evaluate(() => document.querySelector('webclip-tagger').order.length);
  await page.waitForTimeout(1000);
  assert.equal(await page.evaluate(() => document.querySelector('webclip-tagger').order.length), held, 'paused');
  assert.ok(held < N, `${held} photos when paused`);
  // Space is freed: Resume saves what was refused, then the rest.
  await page.evaluate(() => { window.full = false; });
  await page.locator('webclip-tagger [data-ref=pauseJob]').dispatchEvent('click');
  await waitMessage(page, new RegExp(`^${N} photos indexed`), TIMEOUT);
  assert.ok(await page.evaluate(() => window.refused) >= 1);
  await page.reload();
  await waitMessage(page, new RegExp(`Restored ${N} photos`), TIMEOUT);
  await page.waitForTimeout(300);
  assert.equal(await page.locator('webclip-tagger [data-ref=jobBox]').evaluate((el) => el.classList.contains('hidden')), true);
  assert.deepEqual(page.logs, []);
}));

test('demo page at scale: 3,000 saved photos, a virtual grid, top matches exact, scrolling reveals the rest', { timeout: 3 * TIMEOUT }, () => inOwnProfile('webclip-demo-scale-', async ({ ctx }) => {
  const N = 3000;
  const model = modelUrl();
  const page = await ctx.newPage();
  const logs = [];
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  page.logs = logs;
  await page.goto(demoUrl());
  // As the tagger wrote them before thumbnails had their own store: they are moved as they are read.
  const written = await writeLibrary(page, { n: N, dim: 32, model, seed: 7, layout: 'inline' });
  assert.equal(written.n, N);
  await page.reload();
  await waitMessage(page, new RegExp(`Restored ${N} photos`), TIMEOUT);

  const name = (i) => `photo-${String(i).padStart(7, '0')}.jpg`;
  const grid = () => page.evaluate(() => {
    const root = document.querySelector('webclip-tagger').shadowRoot;
    const ul = root.querySelector('[data-ref=grid]');
    const cards = [...ul.querySelectorAll('.card')];
    const vh = innerHeight;
    return {
      height: ul.getBoundingClientRect().height,
      cardHeight: cards[0]?.getBoundingClientRect().height,
      names: cards.map((c) => c.dataset.name),
      positions: cards.map((c) => Number(c.getAttribute('aria-posinset'))),
      visible: cards.filter((c) => { const r = c.getBoundingClientRect(); return r.bottom > 0 && r.top < vh; })
        .map((c) => ({ name: c.dataset.name, loaded: c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0 })),
    };
  });
  const g0 = await grid();
  assert.ok(g0.names.length > 0 && g0.names.length < 300, `only the cards near the viewport exist: ${g0.names.length} of ${N}`);
  assert.equal(g0.names[0], name(0), 'the grid starts with the first photo added');
  assert.deepEqual(g0.positions, g0.positions.map((_, i) => i + 1), 'the cards in the DOM are the first ones, in order');
  assert.ok(g0.height >= (N / 12) * g0.cardHeight, `the grid is as tall as every card would be (${g0.height} px)`);

  // Scrolling to the end shows the last photos (and the first are recycled).
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await page.waitForFunction((last) => [...document.querySelector('webclip-tagger').shadowRoot.querySelectorAll('.card')]
    .some((c) => c.dataset.name === last && c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0), name(N - 1));
  const g1 = await grid();
  assert.ok(g1.visible.some((c) => c.name === name(N - 1) && c.loaded), `the last photo is visible with its thumbnail: ${JSON.stringify(g1.visible.slice(-3))}`);
  assert.ok(!g1.names.includes(name(0)), 'the first cards were recycled');
  assert.ok(g1.names.length < 300, `still only ${g1.names.length} cards`);
  assert.ok(Math.min(...g1.positions) > N - 300);

  // Keyboard: Home and End move focus through the whole library, arrows by card and by row.
  const focused = () => page.evaluate(() => {
    const a = document.querySelector('webclip-tagger').shadowRoot.activeElement;
    return a?.closest('.card')?.dataset.name ?? null;
  });
  await page.locator(`webclip-tagger .card[data-name="${name(N - 1)}"] button`).focus();
  await page.keyboard.press('Home');
  assert.equal(await focused(), name(0));
  await page.keyboard.press('ArrowRight');
  assert.equal(await focused(), name(1));
  await page.keyboard.press('End');
  assert.equal(await focused(), name(N - 1));
  assert.ok((await grid()).names.length < 300);

  // Text search: the best 50, exactly those of a ranking of every stored embedding.
  await waitMessage(page, /Model .* ready/, TIMEOUT);
  const query = 'a photo of a cat';
  const textEmbedding = await page.evaluate(async ({ model, query }) => {
    const { Clip } = await import('/pkg/index.js');
    const clip = await Clip.load({ model, backend: 'cpu', cache: false });
    try {
      return Array.from((await clip.embedTexts([query]))[0]);
    } finally {
      clip.dispose();
    }
  }, { model, query });
  const exact = await exactRanking(page, { model, query: textEmbedding, k: 100 });
  const ranking = () => page.evaluate(() => document.querySelector('webclip-tagger').lastRanking);
  await page.evaluate((q) => document.querySelector('webclip-tagger').search(q), query);
  let got = await ranking();
  assert.equal(got.length, 50, 'the top 50 by default');
  assert.deepEqual(got.map((r) => r.name), exact.slice(0, 50).map((r) => r.name), 'the exact top 50, in order');
  got.forEach((r, i) => assert.ok(Math.abs(r.score - exact[i].score) < 1e-5, `${r.name}: ${r.score} vs ${exact[i].score}`));
  assert.match(await page.locator('webclip-tagger [data-ref=searchInfo]').textContent(), new RegExp(`best 50 of ${N}`));
  const g2 = await grid();
  assert.deepEqual(g2.names, exact.slice(0, g2.names.length).map((r) => r.name), 'the grid shows the matches in order');
  assert.ok(g2.names.length <= 50);
  // "Show more": the next 50.
  await page.locator('webclip-tagger [data-ref=more]').click();
  await page.waitForFunction(() => document.querySelector('webclip-tagger').lastRanking.length === 100);
  got = await ranking();
  assert.deepEqual(got.map((r) => r.name), exact.map((r) => r.name), 'the exact top 100 after "Show more"');
  // Back to the library.
  await page.locator('webclip-tagger [data-ref=clearSearch]').click();
  await page.waitForFunction((first) => document.querySelector('webclip-tagger').shadowRoot.querySelector('.card')?.dataset.name === first, name(0));
  assert.ok((await grid()).height >= (N / 12) * g0.cardHeight);
  await page.screenshot({ path: join(ARTIFACTS, 'demo-scale.png') });

  // Another vocabulary retags every photo lazily: the cards shown get the new tags, and
  // only their records are rewritten (not all N); every record has moved its thumbnail to
  // its own store. After a reload the photos keep their thumbnails and show the new tags,
  // and the export has the new tags for every photo.
  await page.locator('webclip-tagger [data-ref=labelsBox] summary').click();
  await page.locator('webclip-tagger textarea[data-ref=labels]').fill('cat\ndog\nrocket');
  await page.locator('webclip-tagger [data-ref=applyLabels]').click();
  await waitMessage(page, new RegExp(`Retagged ${N} photos with 3 labels`), TIMEOUT);
  const NEW = ['cat', 'dog', 'rocket'];
  const shownTags = await cardTags(page);
  const shown = Object.keys(shownTags).length;
  assert.ok(shown > 0 && shown < 300, `${shown} cards`);
  for (const [photo, labels] of Object.entries(shownTags)) {
    assert.ok(labels.length > 0 && labels.every((l) => NEW.includes(l)), `${photo}: ${labels}`);
  }
  const storedNow = () => page.evaluate(() => new Promise((resolve, reject) => {
    const key = document.querySelector('webclip-tagger').vocab.key;
    const open = indexedDB.open('webclip-tagger');
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(['images', 'thumbs']);
      const out = {};
      tx.objectStore('thumbs').count().onsuccess = (e) => { out.thumbs = e.target.result; };
      tx.objectStore('images').getAll().onsuccess = (e) => {
        out.inline = e.target.result.filter((r) => r.thumb).length;
        out.rewritten = e.target.result.filter((r) => r.vocabKey === key).length;
      };
      tx.oncomplete = () => { open.result.close(); resolve(out); };
    };
  }));
  let stored = await storedNow();
  for (let i = 0; i < 50 && stored.rewritten < shown; i++) {
    await new Promise((r) => setTimeout(r, 200));
    stored = await storedNow();
  }
  assert.deepEqual([stored.thumbs, stored.inline], [N, 0], 'every thumbnail moved to its own store');
  assert.ok(stored.rewritten >= shown && stored.rewritten < N / 10, `${stored.rewritten} records rewritten for ${shown} cards shown, of ${N}`);
  await page.reload();
  await waitMessage(page, new RegExp(`Restored ${N} photos`), TIMEOUT);
  await page.waitForFunction(() => {
    const img = document.querySelector('webclip-tagger').shadowRoot.querySelector('.card img');
    return img?.complete && img.naturalWidth > 0;
  });
  const after = await cardTags(page);
  assert.ok(Object.keys(after).length > 0 && Object.keys(after).length < 300);
  for (const [photo, labels] of Object.entries(after)) {
    assert.ok(labels.length > 0 && labels.every((l) => NEW.includes(l)), `${photo}: ${labels}`);
  }
  const exported = JSON.parse(await page.evaluate(() => document.querySelector('webclip-tagger').exportJson()));
  assert.equal(exported.photos.length, N);
  const old = exported.photos.filter((p) => !(p.tags.length && p.tags.every((t) => NEW.includes(t.label))));
  assert.deepEqual(old.map((p) => p.file), [], 'the export tags every photo with the new labels');
  assert.deepEqual(logs, []);
  await page.close();
}));
