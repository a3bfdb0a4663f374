// `npm pack` of pkg/ installs into a fresh project and imports there by its name.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pkgDir, golden, cosine } from '../common.js';

test('npm pack installs into a fresh project and works there', (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'webclip-pack-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const npm = (args, cwd) => execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const packed = JSON.parse(npm(['pack', pkgDir, '--json', '--pack-destination', dir], dir))[0];
  const names = packed.files.map((f) => f.path).sort();
  const builds = ['webclip', 'webclip_relaxed', 'webclip_mt', 'webclip_mt_relaxed'].flatMap((b) => [`${b}.js`, `${b}_bg.wasm`]);
  for (const f of ['index.js', 'index.d.ts', 'worker.js', 'wasm.js', 'pool-worker.js', ...builds, 'README.md', 'package.json']) {
    assert.ok(names.includes(f), `${f} is in the tarball (${names.join(', ')})`);
  }
  const app = path.join(dir, 'app');
  execFileSync('mkdir', [app]);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  npm(['install', path.join(dir, packed.filename), '--offline', '--no-audit', '--no-fund'], app);
  const installed = path.join(app, 'node_modules', 'webclip');
  const meta = JSON.parse(readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.equal(meta.type, 'module');
  assert.ok(existsSync(path.join(installed, meta.types)), 'types file exists');

  const g = golden('tiny-quickgelu');
  writeFileSync(
    path.join(app, 'main.js'),
    `import { Clip } from 'webclip';
     import def from 'webclip';
     if (def !== Clip) throw new Error('default export is Clip');
     const clip = await Clip.load({ model: ${JSON.stringify(g.dir)}, towers: 'text', threads: 2 });
     const [e] = await clip.embedTexts([${JSON.stringify(g.texts[0])}]);
     const { ClipIndex } = await import('webclip');
     const index = await ClipIndex.open({ clip });
     await index.add('cat', e);
     const [hit] = await index.search(e, { k: 1 });
     console.log(JSON.stringify({ backend: clip.backend, build: clip.backendInfo.build.name, e: Array.from(e), hit: hit.key, fingerprint: clip.fingerprint }));`,
  );
  const out = JSON.parse(execFileSync('node', ['main.js'], { cwd: app, encoding: 'utf8' }));
  assert.equal(out.backend, 'cpu');
  // The installed package starts its pool of worker threads (and the process still exits).
  assert.equal(out.build, 'webclip_mt');
  assert.ok(cosine(out.e, g.textEmbeds[0]) > 0.9999);
  assert.equal(out.hit, 'cat');
  assert.match(out.fingerprint, /^[0-9a-f]{32}$/);

  // The declarations type-check a typical use, and reject a wrong one.
  writeFileSync(
    path.join(app, 'use.ts'),
    `import { Clip, ClipIndex, type IndexHit, type IndexKey, type Progress, type Label, type WebclipError, type WebclipErrorCode } from 'webclip';
     const seen: Progress[] = [];
     const clip: Clip = await Clip.load({ model: '/m/', backend: 'auto', towers: 'vision', worker: true, cache: true, onProgress: (p) => seen.push(p) });
     const kind: 'webgpu' | 'cpu' = clip.backendInfo.kind;
     const threads: number | null = clip.backendInfo.threads;
     const build: string = clip.backendInfo.build.name + (await Clip.init(undefined, 2)).reason;
     const images: Float32Array[] = await clip.embedImages([new Uint8Array(4), new Blob([])], { normalize: false });
     const texts: Float32Array[] = await clip.embedTexts(['a cat']);
     const top: Label[] = await clip.classify(new Uint8Array(4), ['cat', 'dog'], { template: 'a photo of a {}' });
     const ranked: number = clip.rank(texts[0], images)[0].index + Clip.cosine(texts[0], images[0]) + clip.logitScale;
     // @ts-expect-error: not a backend
     await Clip.load({ model: '/m/', backend: 'tpu' });
     const retry = await clip.embedTexts(['a cat']).catch((e: WebclipError) => e.code === 'network' || e.code === 'not-found');
     const code: WebclipErrorCode = 'device-lost';
     // @ts-expect-error: not an error code
     const wrong: WebclipErrorCode = 'no-such-code';
     const index = await ClipIndex.open<{ album: string }>({ clip, name: 'photos', precision: 'i8' });
     await index.addMany([{ key: 'a.jpg', embedding: images[0], metadata: { album: 'trip' } }]);
     const hits: IndexHit<{ album: string }>[] = await index.search('a cat', { k: 5, filter: { album: ['trip'] } });
     const album: string = hits[0].metadata.album;
     const groups: IndexKey[][] = index.duplicates({ threshold: 0.9 });
     const fp: string | null = clip.fingerprint;
     // @ts-expect-error: not a precision
     await ClipIndex.open({ dim: 4, precision: 'f8' });
     const storageCode: WebclipErrorCode = 'index-mismatch';
     clip.dispose();
     export { kind, top, ranked, retry, code, wrong, album, groups, fp, storageCode };`,
  );
  const tsc = path.join(pkgDir, '..', 'tests', 'js', 'node_modules', 'typescript', 'bin', 'tsc');
  writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { noEmit: true, strict: true, target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022', 'dom'], types: [] },
      files: ['use.ts'],
    }),
  );
  const args = ['-p', '.'];
  try {
    execFileSync('node', [tsc, ...args], { cwd: app, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc: ${e.stdout}${e.stderr}`);
  }
});
