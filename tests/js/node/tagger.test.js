// The tagger's logic without a browser: TaggerCore from www/webclip-tagger.js (the same file
// the <webclip-tagger> element is), driven in Node with the tiny fixture model and checked
// against the package's own API: tags as `clip.classify` scores them, prompt ensembling from
// `clip.embedTexts`, search order as `clip.rank` gives it, and vocabulary changes.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Clip, ClipIndex } from '../../../pkg/index.js';
import { TaggerCore, MemoryLabelStore, ModelUnavailableError } from '../../../www/webclip-tagger.js';
import { fixturesDir, golden, SIGLIP_MODELS } from '../common.js';

const g = golden('tiny-quickgelu');
const PHOTOS = readdirSync(path.join(fixturesDir, 'images')).filter((n) => /\.(png|jpe?g)$/.test(n)).sort();
const bytes = (name) => new Uint8Array(readFileSync(path.join(fixturesDir, 'images', name)));
const photos = (names = PHOTOS) => names.map((name) => ({ key: name, input: bytes(name) }));

const LABELS = ['a cat', 'a dog', 'a rocket', 'coffee', 'a person', 'a camera'];
const TEMPLATE = 'a photo of {}.';
// Scores equal to float rounding: the tagger ranks by cosine, classify by the dot product.
const SCORE_TOL = 1e-6;

let clip;
let direct; // clip.embedImages of every photo, in PHOTOS order
before(async () => {
  clip = await Clip.load({ model: g.dir, backend: 'cpu' });
  direct = await clip.embedImages(PHOTOS.map(bytes));
});
after(() => clip?.dispose());

/** The model behind a counter of what it is asked to embed. */
function counted(model) {
  const calls = { images: 0, imageBatches: [], texts: 0 };
  return {
    calls,
    get logitScale() { return model.logitScale; },
    embedImages: (xs) => { calls.images += xs.length; calls.imageBatches.push(xs.length); return model.embedImages(xs); },
    embedTexts: (ts) => { calls.texts += ts.length; return model.embedTexts(ts); },
  };
}

function newCore(options = {}) {
  const model = options.model ?? counted(clip);
  const core = new TaggerCore({ Clip, ...options });
  core.setModel('tiny-quickgelu', async () => model);
  return { core, model };
}

/** `got` tags ([{label, score}]) equal `want` (classify's [{label, score}]) in order and score. */
function assertSameTags(got, want, what) {
  const byLabel = new Map(want.map((w) => [w.label, w.score]));
  got.forEach((t, i) => {
    assert.ok(Math.abs(t.score - byLabel.get(t.label)) < SCORE_TOL, `${what}: ${t.label} ${t.score} vs ${byLabel.get(t.label)}`);
    // Same order wherever the reference tells the labels apart.
    if (Math.abs(want[i].score - byLabel.get(t.label)) > SCORE_TOL) assert.equal(t.label, want[i].label, `${what}: rank ${i}`);
  });
  for (let i = 1; i < got.length; i++) assert.ok(got[i - 1].score >= got[i].score, `${what}: scores descend`);
}

/** A ranking `[{key, score}]` equals clip.rank's over `direct`, with no near-ties to hide behind. */
function assertSameRanking(got, query, what) {
  const want = clip.rank(query, direct);
  assert.deepEqual(got.map((r) => r.key), want.map((r) => PHOTOS[r.index]), what);
  got.forEach((r, i) => assert.ok(Math.abs(r.score - want[i].score) < 1e-6, `${what}: ${r.key} score`));
  const gaps = want.slice(1).map((r, i) => want[i].score - r.score);
  assert.ok(Math.min(...gaps) > 1e-5, `${what}: the fixture ranking has no near-ties, so the order is a real check`);
}

test('Clip.softmax: sums to one, shift-invariant, no overflow on large logits', () => {
  const p = Clip.softmax([1, 2, 3]);
  const e = [1, 2, 3].map(Math.exp);
  const s = e.reduce((a, b) => a + b);
  p.forEach((v, i) => assert.ok(Math.abs(v - e[i] / s) < 1e-15));
  assert.deepEqual(Clip.softmax(new Float32Array([1000, 1000])), [0.5, 0.5]);
  assert.deepEqual(Clip.softmax([5]), [1]);
});

test('TaggerCore needs the package and a usable vocabulary', async () => {
  assert.throws(() => new TaggerCore({}), /Clip/);
  const { core } = newCore();
  await assert.rejects(core.setVocab([], [TEMPLATE]), /at least one label/);
  await assert.rejects(core.setVocab(LABELS, ['no placeholder']), /\{\}/);
  await assert.rejects(core.labelEmbeddings(), /no vocabulary/);
  assert.throws(() => core.tagsFor(direct[0]), /not ready/);
});

test('indexing the fixture photos: tags are the scores clip.classify gives', async () => {
  const { core, model } = newCore({ top: LABELS.length });
  await core.setVocab(LABELS, [TEMPLATE]);
  const added = [];
  const result = await core.index(photos(), { onAdded: (a) => { added.push(...a.map((x) => x.photo.key)); } });
  assert.deepEqual(result, { computed: PHOTOS.length, cached: 0, failed: 0 });
  assert.deepEqual(added, PHOTOS);
  assert.deepEqual(core.keys(), PHOTOS, 'photos in the order added');
  assert.deepEqual(model.calls.imageBatches, [4, 4, 4, 1], 'batches of 4');
  assert.equal(model.calls.texts, LABELS.length, 'one prompt per label');
  assert.deepEqual(core.stats, { imagesComputed: PHOTOS.length, imagesCached: 0, textsComputed: LABELS.length, labelsCached: 0 });
  for (const [i, name] of PHOTOS.entries()) {
    const entry = core.get(name);
    assert.deepEqual(Array.from(entry.embedding), Array.from(direct[i]), `${name}: the package's embedding`);
    assert.equal(entry.vocabKey, core.vocab.key);
    assertSameTags(entry.tags, await clip.classify(bytes(name), LABELS, { template: TEMPLATE }), name);
    assert.deepEqual(core.tagsFor(direct[i]), entry.tags);
  }
  // `top` keeps the best few.
  core.top = 3;
  assert.deepEqual(core.tagsFor(direct[0]), core.get(PHOTOS[0]).tags.slice(0, 3));
});

test('prompt ensembling: a label is the mean direction of its templates, scored as softmax(logitScale × cosine)', async () => {
  const templates = ['a photo of {}.', 'a blurry picture of {}.', '{}'];
  const { core } = newCore({ top: LABELS.length });
  await core.setVocab(LABELS, templates);
  const labelEmbs = await core.labelEmbeddings();
  // Computed here from the package's embeddings, independently of the tagger.
  for (const [j, label] of LABELS.entries()) {
    const rows = await clip.embedTexts(templates.map((t) => t.replaceAll('{}', label)));
    const mean = rows[0].map((_, d) => rows.reduce((s, r) => s + r[d], 0));
    const norm = Math.hypot(...mean);
    labelEmbs[j].forEach((v, d) => assert.ok(Math.abs(v - mean[d] / norm) < 1e-6, `${label}[${d}]`));
  }
  await core.index(photos());
  for (const [i, name] of PHOTOS.entries()) {
    const cos = clip.rank(direct[i], labelEmbs);
    const exps = cos.map((r) => Math.exp(clip.logitScale * r.score));
    const sum = exps.reduce((a, b) => a + b);
    const want = cos.map((r, k) => ({ label: LABELS[r.index], score: exps[k] / sum }));
    assertSameTags(core.get(name).tags, want, name);
  }
});

for (const [how, options] of [['Clip.rank', {}], ['ClipIndex (int8 scan, exact re-scoring)', { ClipIndex }]]) test(`search through ${how}: text search and more-like-this rank as clip.rank does`, async () => {
  const { core, model } = newCore(options);
  await core.setVocab(LABELS, [TEMPLATE]);
  await core.index(photos());
  const query = 'a photo of a cat';
  const [q] = await clip.embedTexts([query]);
  const before = model.calls.texts;
  assertSameRanking(await core.searchText(query), q, query);
  assert.equal(model.calls.texts, before + 1);
  assertSameRanking(await core.searchText(query), q, `${query}, again`);
  assert.equal(model.calls.texts, before + 1, 'a repeated query is not embedded again');
  assert.deepEqual((await core.searchText(query, { topK: 3 })).map((r) => r.key), (await core.searchText(query)).slice(0, 3).map((r) => r.key));
  assertSameRanking(await core.search(q), q, 'search by embedding');

  const k = PHOTOS.indexOf('rocket.png');
  const similar = await core.moreLikeThis('rocket.png');
  assert.equal(similar[0].key, 'rocket.png');
  assert.ok(Math.abs(similar[0].score - 1) < 1e-5, 'a photo is most like itself');
  assertSameRanking(similar, direct[k], 'more like rocket.png');
  assert.equal(await core.moreLikeThis('no-such-photo'), null);

  // Removing a photo takes it out of every search.
  assert.equal(core.remove('rocket.png'), true);
  assert.equal(core.has('rocket.png'), false);
  assert.equal(core.size, PHOTOS.length - 1);
  assert.ok(!(await core.searchText(query)).some((r) => r.key === 'rocket.png'));
  assert.equal(core.remove('rocket.png'), false);
  if (options.ClipIndex) {
    assert.equal(core._index?.size, PHOTOS.length - 1, 'the search went through the index, which lost the removed photo');
    // Cleared (a model switch does this), then one photo again: the index follows.
    core.clear();
    assert.deepEqual(await core.searchText(query), []);
    core.add('rocket.png', direct[k]);
    const again = await core.searchText(query);
    assert.deepEqual(again.map((r) => r.key), ['rocket.png']);
    assert.equal(core._index.size, 1, 'a fresh index');
  }
});

test('with an embeddingStore the core lets each embedding go once indexed, and reads the exact ones back to re-score, for more-like-this and to retag', async () => {
  const stored = new Map();
  const reads = [];
  const embeddingStore = { get: async (keys) => { reads.push(...keys); return keys.map((k) => stored.get(k)); } };
  const { core } = newCore({ ClipIndex, embeddingStore });
  await core.setVocab(LABELS, [TEMPLATE]);
  await core.index(photos(), { onAdded: (added) => { for (const { photo, embedding } of added) stored.set(photo.key, embedding); } });
  await core._syncIndex();
  for (const [i, name] of PHOTOS.entries()) {
    assert.equal(core.get(name).embedding, null, `${name}: let go once indexed`);
    assert.deepEqual(Array.from(stored.get(name)), Array.from(direct[i]), `${name}: onAdded gives the embedding`);
  }
  const [q] = await clip.embedTexts(['a photo of a cat']);
  assertSameRanking(await core.search(q), q, 'search, re-scored with the stored embeddings');
  assert.deepEqual([...new Set(reads)].sort(), [...PHOTOS].sort(), 'the candidates were read from the store');
  const k = PHOTOS.indexOf('rocket.png');
  assert.deepEqual(Array.from(await core.embeddingOf('rocket.png')), Array.from(direct[k]));
  assert.equal(await core.embeddingOf('no-such-photo'), null);
  assertSameRanking(await core.moreLikeThis('rocket.png'), direct[k], 'more like rocket.png, its embedding from the store');

  // Retagging reads them back too: the tags of a core that kept every embedding.
  const other = ['a cat', 'coffee', 'a camera'];
  const { core: kept } = newCore();
  await kept.setVocab(other, [TEMPLATE]);
  PHOTOS.forEach((name, i) => kept.add(name, direct[i]));
  await kept.retag();
  await core.setVocab(other, [TEMPLATE]);
  assert.equal((await core.retag()).length, PHOTOS.length);
  for (const name of PHOTOS) assert.deepEqual(core.get(name).tags, kept.get(name).tags, name);

  // A photo the store lost keeps its old tags and its compact (int8) score.
  stored.delete('rocket.png');
  await core.setVocab(LABELS, [TEMPLATE]);
  const retagged = await core.retag();
  assert.deepEqual(retagged.map((p) => p.key).sort(), PHOTOS.filter((n) => n !== 'rocket.png').sort());
  assert.deepEqual(core.get('rocket.png').tags, kept.get('rocket.png').tags);
  const hits = await core.search(q);
  assert.equal(hits.length, PHOTOS.length);
  const rocket = hits.find((h) => h.key === 'rocket.png');
  assert.ok(Math.abs(rocket.score - clip.rank(q, [direct[k]])[0].score) < 0.05, `compact score ${rocket.score}`);
});

test('changing the vocabulary retags from stored embeddings, reusing cached label embeddings', async () => {
  const labelStore = new MemoryLabelStore();
  const templates = [TEMPLATE, 'a picture of {}.'];
  const { core, model } = newCore({ labelStore, top: 4 });
  const first = ['a cat', 'a dog', 'a rocket'];
  const second = ['a cat', 'coffee', 'a camera', 'a person', 'a horse'];
  await core.setVocab(first, templates);
  await core.index(photos());
  const firstTags = Object.fromEntries(core.keys().map((k) => [k, core.get(k).tags]));
  const firstKey = core.vocab.key;
  assert.equal(model.calls.texts, first.length * templates.length);
  const images = model.calls.images;

  await core.setVocab(second, templates);
  assert.notEqual(core.vocab.key, firstKey);
  const retagged = await core.retag();
  assert.equal(retagged.length, PHOTOS.length);
  assert.equal(model.calls.images, images, 'no photo embedded again');
  assert.equal(model.calls.texts, (first.length + second.length - 1) * templates.length, '"a cat" came from the label cache');
  assert.equal(core.stats.labelsCached, 1);
  const secondEmbs = await core.labelEmbeddings();
  for (const [i, name] of PHOTOS.entries()) {
    const { tags, vocabKey } = core.get(name);
    assert.equal(vocabKey, core.vocab.key);
    assert.equal(tags.length, 4);
    const cos = clip.rank(direct[i], secondEmbs);
    const scores = Clip.softmax(cos.map((r) => clip.logitScale * r.score));
    assertSameTags(tags, cos.map((r, j) => ({ label: second[r.index], score: scores[j] })), name);
  }

  // Back to the first vocabulary: nothing embedded, the same tags as at first.
  await core.setVocab(first, templates);
  assert.equal(core.vocab.key, firstKey, 'a vocabulary is named by its content');
  await core.retag();
  assert.equal(model.calls.texts, (first.length + second.length - 1) * templates.length);
  for (const name of PHOTOS) assert.deepEqual(core.get(name).tags, firstTags[name]);

  // Another core on the same store (a reload): label embeddings come from the store, photos
  // from what was saved, tags as they were. The model is never loaded, so the logit scale is
  // the default 100 rather than the checkpoint's exp(ln 100): equal up to rounding.
  const reloaded = newCore({ labelStore, top: 4 });
  await reloaded.core.setVocab(first, templates);
  for (const name of PHOTOS) reloaded.core.add(name, core.get(name).embedding);
  await reloaded.core.retag();
  assert.equal(reloaded.core.clip, null, 'retagging from cached labels needs no model');
  assert.equal(reloaded.model.calls.texts, 0);
  assert.equal(reloaded.model.calls.images, 0);
  for (const name of PHOTOS) assertSameTags(reloaded.core.get(name).tags, firstTags[name], `${name} after a reload`);

  // A retag overtaken by another vocabulary change says so instead of writing stale tags.
  let open;
  const gate = new Promise((resolve) => { open = resolve; });
  const slowStore = { get: async (keys) => { await gate; return labelStore.get(keys); }, put: (rows) => labelStore.put(rows) };
  const slow = newCore({ labelStore: slowStore });
  await slow.core.setVocab(second, templates);
  slow.core.add(PHOTOS[0], direct[0]);
  const pending = slow.core.retag();
  await slow.core.setVocab(first, templates);
  open();
  assert.equal(await pending, null);
  assert.equal(slow.core.get(PHOTOS[0]).tags, null, 'no tags of the old vocabulary');
});

test('indexing pipeline: lazy pulls, a photo the model refuses, known keys, abort, no model', async () => {
  const { core, model } = newCore();
  await core.setVocab(LABELS, [TEMPLATE]);
  const names = PHOTOS.slice(0, 5);
  const events = [];
  async function* source() {
    for (const [i, name] of names.entries()) {
      events.push(`pull ${name}`);
      yield { key: name, input: bytes(name) };
      if (i === 1) yield { key: 'broken.png', input: new Uint8Array([1, 2, 3, 4]) };
    }
  }
  const failed = [];
  const result = await core.index(source(), {
    onBatch: (batch) => events.push(`batch ${batch.map((p) => p.key).join(' ')}`),
    onAdded: (added) => events.push(`added ${added.map((a) => a.photo.key).join(' ')}`),
    onFailed: (p, err) => failed.push([p.key, err.message]),
  });
  assert.deepEqual(result, { computed: 5, cached: 0, failed: 1 });
  assert.equal(failed.length, 1);
  assert.equal(failed[0][0], 'broken.png');
  assert.ok(failed[0][1].length > 0, 'the reason is given');
  assert.deepEqual(core.keys(), names, 'the refused photo is left out');
  // One batch ahead: the next photos are read while a batch is embedded, and batches are
  // embedded and added one at a time, in order.
  const at = (event) => {
    const i = events.indexOf(event);
    assert.ok(i >= 0, `${event} in ${JSON.stringify(events)}`);
    return i;
  };
  const first = `${names[0]} ${names[1]} broken.png ${names[2]}`;
  const second = `${names[3]} ${names[4]}`;
  assert.deepEqual(events.slice(0, 3), [`pull ${names[0]}`, `pull ${names[1]}`, `pull ${names[2]}`]);
  assert.ok(at(`pull ${names[3]}`) < at(`added ${names[0]} ${names[1]} ${names[2]}`), 'read while the batch is embedded');
  assert.ok(at(`batch ${first}`) < at(`added ${names[0]} ${names[1]} ${names[2]}`));
  assert.ok(at(`added ${names[0]} ${names[1]} ${names[2]}`) < at(`batch ${second}`), 'batches in order');
  assert.deepEqual(model.calls.imageBatches, [4, 1, 1, 1, 1, 2], 'the refused batch retried photo by photo');

  // Keys already indexed are not embedded again, and need no model.
  const calls = model.calls.images;
  core.setModel('tiny-quickgelu', async () => { throw new Error('offline'); });
  for (const [i, name] of names.entries()) core.add(name, direct[i]);
  assert.deepEqual(await core.index(photos(names)), { computed: 0, cached: 5, failed: 0 });
  assert.equal(model.calls.images, calls);

  // A new photo without a model: a ModelUnavailableError naming the cause; nothing added.
  const err = await core.index(photos([PHOTOS[6]])).catch((e) => e);
  assert.ok(err instanceof ModelUnavailableError, String(err));
  assert.match(err.message, /offline/);
  assert.equal(core.has(PHOTOS[6]), false);

  // An aborted job adds nothing of what it was embedding, and reads no further.
  const fresh = newCore();
  await fresh.core.setVocab(LABELS, [TEMPLATE]);
  const jobs = new AbortController();
  let pulled = 0;
  const lazily = (function* () { for (const p of photos()) { pulled++; yield p; } })();
  const aborted = await fresh.core.index(lazily, { signal: jobs.signal, onBatch: () => jobs.abort() });
  assert.deepEqual(aborted, { computed: 0, cached: 0, failed: 0 });
  assert.equal(fresh.core.size, 0);
  // It read the batch it was embedding and at most the next one.
  assert.ok(pulled >= fresh.core.batch && pulled <= 2 * fresh.core.batch, `${pulled} pulled`);
});

test('SigLIP: tags are classify\'s sigmoid scores, each kept when it passes the threshold', async () => {
  for (const name of SIGLIP_MODELS) {
    const model = await Clip.load({ model: golden(name).dir, backend: 'cpu' });
    assert.equal(model.family, 'siglip');
    const core = new TaggerCore({ Clip, top: LABELS.length, threshold: 0 });
    core.setModel(name, async () => model);
    await core.setVocab(LABELS, ['{}']);
    const some = PHOTOS.slice(0, 3);
    await core.index(photos(some));
    const all = [];
    for (const photo of some) {
      const want = await model.classify(bytes(photo), LABELS);
      const { tags } = core.get(photo);
      assert.equal(tags.length, LABELS.length, 'threshold 0 keeps every label');
      assertSameTags(tags, want.map(({ label, score }) => ({ label, score })), `${name} ${photo}`);
      all.push(...tags.map((t) => t.score));
    }
    // Sigmoid scores are independent: a photo's need not sum to 1.
    const sum = core.get(some[0]).tags.reduce((a, t) => a + t.score, 0);
    assert.ok(Math.abs(sum - 1) > 1e-3, `${name}: scores sum to ${sum}`);
    // A threshold in the middle of the scores keeps exactly those at or above it.
    all.sort((a, b) => a - b);
    const mid = Math.floor(all.length / 2);
    core.threshold = (all[mid - 1] + all[mid]) / 2;
    await core.retag();
    for (const photo of some) {
      const want = (await model.classify(bytes(photo), LABELS)).filter((l) => l.score >= core.threshold);
      assert.deepEqual(core.get(photo).tags.map((t) => t.label), want.map((l) => l.label), `${name} ${photo}`);
    }
    // The default for SigLIP is 0.1.
    core.threshold = null;
    assert.equal(core.scoreThreshold, 0.1);
    model.dispose();
  }
});

test('a review policy flags what reaches its threshold, scored as classify over the vocabulary and the policy labels', async () => {
  const { core } = newCore();
  await core.setVocab(LABELS, [TEMPLATE]);
  await core.index(photos());
  assert.throws(() => core.setPolicy([{ label: 'a horse', threshold: 1.5 }]), TypeError);
  assert.throws(() => core.setPolicy([{ label: '', threshold: 0.5 }]), TypeError);
  assert.deepEqual(core.review(direct[0]), [], 'no policy, no flag');
  core.setPolicy([{ label: 'a horse', threshold: 0 }, { label: 'a tree', threshold: 0.2 }]);
  assert.throws(() => core.review(direct[0]), /not ready/);
  await core.policyEmbeddings();
  for (const [i, name] of PHOTOS.entries()) {
    const want = await clip.classify(bytes(name), [...LABELS, 'a horse', 'a tree'], { template: TEMPLATE });
    const score = Object.fromEntries(want.map((w) => [w.label, w.score]));
    const got = core.review(direct[i]);
    const expected = [['a horse', 0], ['a tree', 0.2]].filter(([l, t]) => score[l] >= t);
    assert.deepEqual(got.map((f) => [f.label, f.threshold]).sort(), expected.sort(), name);
    for (const f of got) assert.ok(Math.abs(f.score - score[f.label]) < SCORE_TOL, `${name}: ${f.label} ${f.score} vs ${score[f.label]}`);
  }
});
