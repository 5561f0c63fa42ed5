import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { EngineError } from '../engine/errors';
import { acquireModel, checkForUpdate } from './acquire';
import { ByteGate, ChunkedSource } from './chunked-source';
import { downloadToStore, probeRemote } from './downloader';
import { MemoryKeyValueStore } from './kv';
import {
  checkChunkSize,
  contiguousBytes,
  decideResponse,
  type ModelManifest,
  newManifest,
  ProgressMeter,
  parseContentRange,
  planDownload,
  publishedSha256,
  type StoredChunk,
  upgradeManifest,
} from './manifest';
import { ModelStore } from './model-store';
import { Sha256 } from './sha256';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const hdrs = (h: Record<string, string>) => new Headers(h);

function fakeGguf(n: number): Uint8Array {
  const b = new Uint8Array(randomBytes(n));
  b.set([0x47, 0x47, 0x55, 0x46]);
  return b;
}

function manifestWith(size: number, chunkSize: number, chunks: number, extra: Partial<ModelManifest> = {}) {
  const m = newManifest('http://x/m.gguf', { size }, chunkSize);
  m.storedChunks = chunks;
  return Object.assign(m, extra);
}

/** A manifest as format 1 wrote it: every chunk listed, with its hash. */
function legacyManifest(
  url: string,
  bytes: Uint8Array,
  chunkSize: number,
  chunks: number,
  complete: boolean,
) {
  const list = [];
  for (let i = 0; i < chunks; i++) {
    const part = bytes.subarray(i * chunkSize, Math.min(bytes.length, (i + 1) * chunkSize));
    list.push({ index: i, offset: i * chunkSize, size: part.length, sha256: sha(part) });
  }
  return {
    version: 1,
    id: url,
    url,
    name: url.split('/').pop(),
    size: bytes.length,
    chunkSize,
    chunks: list,
    complete,
    createdAt: 1,
    updatedAt: 1,
  };
}

describe('manifest planning', () => {
  it('counts the stored prefix, and reads a format-1 manifest up to its first bad chunk', () => {
    expect(contiguousBytes(manifestWith(100, 30, 4))).toBe(100);
    expect(contiguousBytes(manifestWith(100, 30, 2))).toBe(60);
    const old = legacyManifest('http://x/m.gguf', new Uint8Array(100_000), 8192, 13, true);
    const up = upgradeManifest(old).manifest!;
    expect(up).toMatchObject({ version: 2, storedChunks: 13, complete: true, size: 100_000 });
    expect(up.legacyChunkSha256?.length).toBe(13);
    expect('chunks' in up).toBe(false);
    // A gap or a short chunk in the middle ends the usable prefix (and so the completeness).
    const gap = legacyManifest('http://x/m.gguf', new Uint8Array(100_000), 8192, 13, true);
    gap.chunks.splice(1, 1);
    expect(upgradeManifest(gap).manifest).toMatchObject({ storedChunks: 1, complete: false });
    const short = legacyManifest('http://x/m.gguf', new Uint8Array(100_000), 8192, 13, true);
    short.chunks[0].size = 10;
    expect(upgradeManifest(short).manifest).toMatchObject({ storedChunks: 0, complete: false });
    // What the old `?chunkSize=0.5` hook could write is refused, with a reason.
    const tiny = { ...legacyManifest('http://x/m.gguf', new Uint8Array(100), 1, 0, false), chunkSize: 0.5 };
    expect(upgradeManifest(tiny).discard).toMatch(/chunks of 0\.5 bytes/);
    expect(upgradeManifest({ version: 7 }).discard).toBeDefined();
  });

  it('accepts only whole chunk sizes from 64 KiB (1 KiB in tests) to 256 MiB', () => {
    expect(checkChunkSize(undefined)).toBe(32 * 1024 * 1024);
    expect(checkChunkSize(4 << 20)).toBe(4 << 20);
    expect(checkChunkSize(65_536)).toBe(65_536);
    for (const bad of [
      0.5,
      1,
      65_535,
      65_536.5,
      256 * 1024 * 1024 + 1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      -65_536,
    ]) {
      expect(() => checkChunkSize(bad), String(bad)).toThrow(/chunk size must be a whole number of bytes/);
    }
    expect(checkChunkSize(8192, { allowSmall: true })).toBe(8192);
    expect(() => checkChunkSize(1023, { allowSmall: true })).toThrow(EngineError);
  });

  it('resumes from the last complete chunk and restarts when the file changed', () => {
    expect(planDownload(undefined, { size: 100 }, 30)).toMatchObject({ kind: 'fresh', discard: false });
    expect(planDownload(manifestWith(100, 30, 2), { size: 100 }, 30)).toEqual({
      kind: 'resume',
      offset: 60,
      keepChunks: 2,
    });
    // Size unknown now (HEAD hidden): resume on what was stored.
    expect(planDownload(manifestWith(100, 30, 1), {}, 30)).toMatchObject({ kind: 'resume', offset: 30 });
    expect(planDownload(manifestWith(100, 30, 2), { size: 101 }, 30)).toMatchObject({
      kind: 'fresh',
      discard: true,
    });
    expect(
      planDownload(manifestWith(100, 30, 2, { etag: '"a"' }), { size: 100, etag: '"b"' }, 30),
    ).toMatchObject({
      kind: 'fresh',
      discard: true,
    });
    expect(planDownload(manifestWith(100, 30, 2), { size: 100 }, 40)).toMatchObject({
      kind: 'fresh',
      discard: true,
    });
    expect(planDownload(manifestWith(100, 30, 0), { size: 100 }, 30)).toMatchObject({ kind: 'fresh' });
    expect(planDownload(manifestWith(100, 30, 4, { complete: true }), { size: 100 }, 30)).toEqual({
      kind: 'complete',
    });
    // Same size, another version: Last-Modified (or a sha-256) says so.
    expect(
      planDownload(
        manifestWith(100, 30, 2, { lastModified: 'Mon, 01 Jan 2024 00:00:00 GMT' }),
        {
          size: 100,
          lastModified: 'Tue, 02 Jan 2024 00:00:00 GMT',
        },
        30,
      ),
    ).toMatchObject({ kind: 'fresh', discard: true });
    // A partial format-1 download is not continued in the new format.
    const partialOld = upgradeManifest(
      legacyManifest('http://x/m.gguf', new Uint8Array(100_000), 8192, 3, false),
    );
    expect(planDownload(partialOld.manifest, { size: 100_000 }, 8192)).toMatchObject({
      kind: 'fresh',
      discard: true,
      reason: expect.stringMatching(/older version/),
    });
  });

  it('decides what to do with each response', () => {
    expect(decideResponse(0, 100, 200, hdrs({ 'content-length': '100' }))).toEqual({
      kind: 'accept',
      start: 0,
      total: 100,
    });
    expect(decideResponse(60, 100, 200, hdrs({ 'content-length': '100' }))).toMatchObject({
      kind: 'restart-with-body',
    });
    expect(decideResponse(60, 100, 206, hdrs({ 'content-range': 'bytes 60-99/100' }))).toMatchObject({
      kind: 'accept',
      start: 60,
    });
    expect(decideResponse(60, 100, 206, hdrs({ 'content-range': 'bytes 0-99/100' }))).toMatchObject({
      kind: 'restart',
    });
    expect(decideResponse(60, 100, 206, hdrs({ 'content-range': 'bytes 60-119/120' }))).toMatchObject({
      kind: 'restart',
    });
    // Content-Range hidden by CORS: the length has to fit exactly.
    expect(decideResponse(60, 100, 206, hdrs({ 'content-length': '40' }))).toMatchObject({ kind: 'accept' });
    expect(decideResponse(60, 100, 206, hdrs({ 'content-length': '39' }))).toMatchObject({ kind: 'restart' });
    expect(decideResponse(100, 100, 416, hdrs({}))).toEqual({ kind: 'already-complete' });
    expect(decideResponse(60, 100, 416, hdrs({}))).toMatchObject({ kind: 'restart' });
    // Size unknown (no HEAD): the 416's `bytes */total` says the part is whole.
    expect(decideResponse(60, undefined, 416, hdrs({ 'content-range': 'bytes */60' }))).toEqual({
      kind: 'already-complete',
    });
    expect(decideResponse(0, 100, 503, hdrs({}))).toMatchObject({ kind: 'retry' });
    expect(decideResponse(0, 100, 429, hdrs({}))).toMatchObject({ kind: 'retry' });
    expect(decideResponse(0, 100, 404, hdrs({}))).toMatchObject({ kind: 'fail' });
    expect(decideResponse(0, 100, 403, hdrs({}))).toMatchObject({ kind: 'fail' });
  });

  it('parses Content-Range and finds a published sha-256', () => {
    expect(parseContentRange('bytes 5-9/10')).toEqual({ start: 5, end: 9, total: 10 });
    expect(parseContentRange('bytes 5-9/*')).toEqual({ start: 5, end: 9, total: undefined });
    expect(parseContentRange('garbage')).toBeUndefined();
    const h = 'a'.repeat(64);
    expect(publishedSha256(hdrs({ 'x-linked-etag': `"${h}"` }))).toBe(h);
    expect(publishedSha256(hdrs({ etag: `W/"${h.toUpperCase()}"` }))).toBe(h);
    expect(publishedSha256(hdrs({ etag: `"${'b'.repeat(40)}"` }))).toBeUndefined(); // git sha1, not content
  });

  it('measures speed and time left', () => {
    const p = new ProgressMeter(10_000);
    expect(p.bytesPerSecond()).toBe(0);
    p.add(0, 0);
    p.add(1000, 500);
    p.add(2000, 1000);
    expect(p.bytesPerSecond()).toBe(500);
    expect(p.etaSeconds(3000)).toBe(4);
  });
});

describe('Sha256 (incremental)', () => {
  it('matches node:crypto for awkward lengths and split updates', () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 119, 1000, 70_001]) {
      const b = new Uint8Array(randomBytes(n));
      expect(new Sha256().update(b).digestHex(), `n=${n}`).toBe(sha(b));
      const h = new Sha256();
      for (let i = 0; i < n; i += 37) h.update(b.subarray(i, Math.min(n, i + 37)));
      expect(h.digestHex(), `split n=${n}`).toBe(sha(b));
    }
  });
});

describe('downloads into the cache (real HTTP server)', () => {
  const file = fakeGguf(100_000);
  const other = fakeGguf(70_000);
  const CHUNK = 8192;
  let server: ModelServer;
  let store: ModelStore;
  let kv: MemoryKeyValueStore;
  const fast = { chunkSize: CHUNK, allowSmallChunks: true, retryDelayMs: () => 5 };

  beforeAll(async () => {
    server = await startModelServer({ 'm.gguf': file, 'other.gguf': other });
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.faults = {};
    server.log = [];
    kv = new MemoryKeyValueStore();
    store = new ModelStore(kv);
  });

  async function cachedBytes(id: string): Promise<Uint8Array> {
    const m = (await store.getManifest(id))!;
    const src = new ChunkedSource(store, m);
    return new Uint8Array(await src.read(0, m.size));
  }

  it('probes the size before downloading', async () => {
    const p = await probeRemote(server.fileUrl('m.gguf'));
    expect(p.size).toBe(file.length);
    expect(server.log.map((r) => r.method)).toEqual(['HEAD']);
  });

  it('stores the file as hashed chunks and marks it complete', async () => {
    const url = server.fileUrl('m.gguf');
    const progress: number[] = [];
    const m = await downloadToStore(url, store, { ...fast, onProgress: (p) => progress.push(p.loadedBytes) });
    expect(m.complete).toBe(true);
    expect(m.storedChunks).toBe(Math.ceil(file.length / CHUNK));
    const chunk = await store.getChunk(m, 3);
    expect(chunk!.sha256).toBe(sha(new Uint8Array(await chunk!.data.arrayBuffer())));
    expect(chunk!.sha256).toBe(sha(file.subarray(3 * CHUNK, 4 * CHUNK)));
    expect(sha(await cachedBytes(url))).toBe(sha(file));
    expect(progress[progress.length - 1]).toBe(file.length);
    // A complete model loads without touching the network.
    server.log = [];
    await downloadToStore(url, store, fast);
    expect(server.log).toEqual([]);
  });

  it('resumes with Range from the last complete chunk after the socket is cut', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { cutAfterBytes: 30_000, cutTimes: 1 };
    await downloadToStore(url, store, fast);
    const gets = server.log.filter((r) => r.method === 'GET');
    expect(gets.length).toBe(2);
    expect(gets[0].range).toBeUndefined();
    // 30,000 bytes arrived: 3 whole chunks of 8192 were kept, the 4th is fetched again.
    expect(gets[1].range).toBe(`bytes=${3 * CHUNK}-`);
    expect(gets[1].status).toBe(206);
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('resumes through the resolve URL: a signed CDN link that expired is never asked again', async () => {
    const url = server.fileUrl('m.gguf');
    // The signed link really does expire: a second GET of it is refused.
    server.faults = { signedRedirect: true };
    const first = await fetch(url);
    await first.arrayBuffer();
    expect((await fetch(first.url)).status).toBe(403);
    server.log = [];
    server.faults = { signedRedirect: true, cutAfterBytes: 30_000, cutTimes: 1 };
    await downloadToStore(url, store, fast);
    const gets = server.log.filter((r) => r.method === 'GET').map((r) => `${r.path} ${r.status}`);
    expect(gets).toEqual(['m.gguf 302', 'cdn/m.gguf 200', 'm.gguf 302', 'cdn/m.gguf 206']);
    expect(server.log.some((r) => r.status === 403)).toBe(false);
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('asks the size again after a reset connection, twice at most', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { resetHeads: 2 };
    await downloadToStore(url, store, fast);
    expect(server.log.filter((r) => r.method === 'HEAD').length).toBe(3);
    expect(sha(await cachedBytes(url))).toBe(sha(file));
    server.faults = { resetHeads: 3 };
    const e = await downloadToStore(server.fileUrl('other.gguf'), store, fast).catch((x) => x);
    expect(e).toMatchObject({ code: 'network' });
    expect(e.message).toMatch(/could not download .*other\.gguf \(.*\); check the address/);
  });

  it('keeps the chunks of a stopped download and resumes on the next call', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { delayMsPerPiece: 30 };
    const ac = new AbortController();
    const p = downloadToStore(url, store, {
      ...fast,
      signal: ac.signal,
      onChunk: (i) => {
        if (i === 4) ac.abort();
      },
    });
    await expect(p).rejects.toMatchObject({ code: 'interrupted' });
    const partial = (await store.getManifest(url))!;
    expect(partial.complete).toBe(false);
    expect(ModelStore.usable(partial)).toBe(false);
    const kept = contiguousBytes(partial);
    expect(kept).toBeGreaterThanOrEqual(5 * CHUNK);
    server.faults = {};
    server.log = [];
    await downloadToStore(url, store, fast);
    expect(server.log.find((r) => r.method === 'GET')?.range).toBe(`bytes=${kept}-`);
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('restarts cleanly when the server ignores Range', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { cutAfterBytes: 40_000, cutTimes: 1, ignoreRange: true };
    const restarts: string[] = [];
    await downloadToStore(url, store, { ...fast, onRestart: (r) => restarts.push(r) });
    const gets = server.log.filter((r) => r.method === 'GET');
    expect(gets.map((g) => g.status)).toEqual([200, 200]);
    expect(gets[1].range).toBe(`bytes=${4 * CHUNK}-`);
    expect(restarts.length).toBe(1);
    const m = (await store.getManifest(url))!;
    expect(contiguousBytes(m)).toBe(file.length); // no concatenation
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('rejects an HTML page before storing anything', async () => {
    server.faults = { html: true };
    const err = await downloadToStore(server.fileUrl('m.gguf'), store, fast).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('bad-gguf');
    expect(err.message).toMatch(/not a GGUF file: the server sent bytes that start with "<!DOCTYPE/);
    expect(kv.map.size).toBe(0);
  });

  it('never marks a short body complete, and gives up after bounded retries', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { shortBodyAt: 50_000 };
    const err = await downloadToStore(url, store, { ...fast, maxRetries: 2 }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/failed 3 times/);
    const m = await store.getManifest(url);
    expect(m?.complete).toBe(false);
    expect((await store.list()).filter((x) => ModelStore.usable(x))).toEqual([]);
  });

  it('retries 503 and 429, then succeeds', async () => {
    server.faults = { status: 503, statusTimes: 2 };
    const m = await downloadToStore(server.fileUrl('other.gguf'), store, fast);
    expect(m.complete).toBe(true);
    expect(server.log.filter((r) => r.method === 'GET').map((r) => r.status)).toEqual([503, 503, 200]);
  });

  it('reports a missing file clearly', async () => {
    const err = await downloadToStore(server.fileUrl('nope.gguf'), store, fast).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/404/);
  });

  it('checks a published sha-256 over the whole file, across a resume', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { sha256Etag: true, cutAfterBytes: 20_000, cutTimes: 1 };
    const m = await downloadToStore(url, store, fast);
    expect(m.expectedSha256).toBe(sha(file));
    expect(m.complete).toBe(true);

    const kv2 = new MemoryKeyValueStore();
    server.faults = { sha256Etag: true, wrongSha256: true };
    const err = await downloadToStore(url, new ModelStore(kv2), fast).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/sha-256/);
    expect(kv2.map.size).toBe(0);
  });

  it('starts over when the file changed size between visits', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { cutAfterBytes: 30_000, cutTimes: 1, delayMsPerPiece: 0 };
    await downloadToStore(url, store, { ...fast, maxRetries: 0 }).catch(() => {});
    expect((await store.getManifest(url))?.storedChunks).toBe(3);
    const changed = fakeGguf(90_000);
    server.files.set('m.gguf', changed);
    try {
      server.log = [];
      await downloadToStore(url, store, fast);
      expect(server.log.find((r) => r.method === 'GET')?.range).toBeUndefined();
      expect(sha(await cachedBytes(url))).toBe(sha(changed));
    } finally {
      server.files.set('m.gguf', file);
    }
  });

  it('turns QuotaExceededError into storage-full and leaves nothing half-written', async () => {
    let writes = 0;
    const full = new MemoryKeyValueStore();
    const set = full.set.bind(full);
    full.set = async (k, v) => {
      if ((v as Partial<StoredChunk>)?.data instanceof Blob && ++writes === 3)
        throw new DOMException('', 'QuotaExceededError');
      return set(k, v);
    };
    const s = new ModelStore(full);
    const err = await downloadToStore(server.fileUrl('m.gguf'), s, fast).catch((e) => e);
    expect(err.code).toBe('storage-full');
    expect(err.message).toMatch(/needs 100 kB/);
    expect(full.map.size).toBe(0);
    expect(await s.list()).toEqual([]);
  });

  it('runs a validation step before marking the model complete', async () => {
    const url = server.fileUrl('m.gguf');
    const err = await downloadToStore(url, store, {
      ...fast,
      validate: async () => {
        throw new EngineError('bad-gguf', 'header says the file should be longer');
      },
    }).catch((e) => e);
    expect(err.code).toBe('bad-gguf');
    expect(await store.getManifest(url)).toBeUndefined();
  });

  it('lets a reader consume bytes while they arrive', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { delayMsPerPiece: 10 };
    let source: ChunkedSource | undefined;
    const gate = new ByteGate(0);
    let download: Promise<unknown> = Promise.resolve();
    const firstRead = new Promise<{ bytes: Uint8Array; availableAtRead: number }>((resolve) => {
      download = downloadToStore(url, store, {
        ...fast,
        onManifest: (m) => {
          source = new ChunkedSource(store, m, gate);
          source.read(CHUNK - 10, 20).then((bytes) => resolve({ bytes, availableAtRead: gate.available }));
        },
        onChunk: (i, bytes, available) => {
          if (bytes) source?.offer(i, bytes);
          gate.advance(available);
        },
      });
    });
    const { bytes, availableAtRead } = await firstRead;
    expect([...bytes]).toEqual([...file.subarray(CHUNK - 10, CHUNK + 10)]);
    // The read finished long before the whole file arrived.
    expect(availableAtRead).toBeLessThan(file.length);
    // Nothing outlives the test: a download still running when the server stops (afterAll) would
    // fail later, outside any test ("failed 6 times in a row").
    expect(await download).toMatchObject({ complete: true });
  });

  it('catches a corrupt cached chunk and drops it and what follows', async () => {
    const url = server.fileUrl('m.gguf');
    await downloadToStore(url, store, fast);
    const key = [...kv.map.keys()].find((k) => k.startsWith('c:000005:'))!;
    const rec = kv.map.get(key) as StoredChunk;
    const bad = new Uint8Array(await rec.data.arrayBuffer());
    bad[7] ^= 1;
    kv.map.set(key, { ...rec, data: new Blob([bad]) });
    const m = (await store.getManifest(url))!;
    const src = new ChunkedSource(store, m);
    expect(sha(await src.read(0, 5 * CHUNK))).toBe(sha(file.subarray(0, 5 * CHUNK)));
    const err = await src.read(5 * CHUNK, 10).catch((e) => e);
    expect(err.code).toBe('storage');
    expect(err.message).toMatch(/corrupt/);
    const after = (await store.getManifest(url))!;
    expect(after.complete).toBe(false);
    expect(after.storedChunks).toBe(5);
    // The next load downloads only from the bad chunk on.
    server.log = [];
    await downloadToStore(url, store, fast);
    expect(server.log.find((r) => r.method === 'GET')?.range).toBe(`bytes=${5 * CHUNK}-`);
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('lists models, removes orphan chunks, deletes models', async () => {
    await downloadToStore(server.fileUrl('other.gguf'), store, fast);
    await kv.set('c:000000:http://gone/x.gguf', new Blob([new Uint8Array(3)]));
    const list = await store.list();
    expect(list.map((m) => m.name)).toEqual(['other.gguf']);
    expect([...kv.map.keys()].some((k) => k.includes('gone'))).toBe(false);
    expect((await store.use()).modelBytes).toBe(other.length);
    await store.delete(list[0].id);
    expect(kv.map.size).toBe(0);
  });
});

describe('cache format and hostile servers (real HTTP server)', () => {
  const file = fakeGguf(100_000);
  const CHUNK = 8192;
  let server: ModelServer;
  let kv: MemoryKeyValueStore;
  let store: ModelStore;
  const fast = { chunkSize: CHUNK, allowSmallChunks: true, retryDelayMs: () => 5 };

  beforeAll(async () => {
    server = await startModelServer({ 'm.gguf': file });
  });
  afterAll(() => server.stop());
  beforeEach(() => {
    server.faults = {};
    server.log = [];
    server.files.set('m.gguf', file);
    kv = new MemoryKeyValueStore();
    store = new ModelStore(kv);
  });

  it('records a chunk at constant cost: the manifest does not grow with the chunk count', async () => {
    const manifestWrites: number[] = [];
    const set = kv.set.bind(kv);
    kv.set = async (k, v) => {
      if (k.startsWith('m:')) manifestWrites.push(JSON.stringify(v).length);
      return set(k, v);
    };
    const m = await downloadToStore(server.fileUrl('m.gguf'), store, { ...fast, chunkSize: 1024 });
    expect(m.storedChunks).toBe(98);
    // One manifest write per chunk, each the same few hundred bytes (a list would reach ~9 KB).
    expect(manifestWrites.length).toBeGreaterThanOrEqual(98);
    expect(Math.max(...manifestWrites)).toBeLessThan(400);
    expect(Math.max(...manifestWrites) - Math.min(...manifestWrites)).toBeLessThan(16);
  });

  it('refuses a chunk size that is not a sane whole number before writing anything', async () => {
    for (const chunkSize of [0.5, 1, 4096, 300 * 1024 * 1024]) {
      const err = await downloadToStore(server.fileUrl('m.gguf'), store, { chunkSize }).catch((e) => e);
      expect(err, String(chunkSize)).toMatchObject({ code: 'bad-argument' });
    }
    expect(kv.map.size).toBe(0);
    expect(server.log).toEqual([]);
  });

  it('keeps loading a complete cache written by format 1; a partial or broken one starts over, saying why', async () => {
    const url = server.fileUrl('m.gguf');
    const n = Math.ceil(file.length / CHUNK);
    await kv.set(`m:${url}`, legacyManifest(url, file, CHUNK, n, true));
    for (let i = 0; i < n; i++) {
      const part = file.subarray(i * CHUNK, Math.min(file.length, (i + 1) * CHUNK));
      await kv.set(`c:${String(i).padStart(6, '0')}:${url}`, new Blob([part as Uint8Array<ArrayBuffer>]));
    }
    const m = await downloadToStore(url, store, fast);
    expect(server.log).toEqual([]); // no network for a complete model
    expect(sha(await new ChunkedSource(store, m).read(0, m.size))).toBe(sha(file));

    // Partial in format 1: dropped, downloaded again in format 2.
    await kv.set(`m:${url}`, legacyManifest(url, file, CHUNK, 3, false));
    const restarts: string[] = [];
    const again = await downloadToStore(url, store, { ...fast, onRestart: (r) => restarts.push(r) });
    expect(restarts).toEqual([expect.stringMatching(/older version/)]);
    expect(again).toMatchObject({ version: 2, complete: true, storedChunks: n });
    expect(again.legacyChunkSha256).toBeUndefined();
    expect(sha(await new ChunkedSource(store, again).read(0, again.size))).toBe(sha(file));

    // What `?chunkSize=0.5` wrote: discarded with a message, records and all.
    await store.delete(url);
    await kv.set(`m:${url}`, { ...legacyManifest(url, file, CHUNK, 0, false), chunkSize: 0.5 });
    await kv.set(`c:000000:${url}`, new Blob([new Uint8Array(0)]));
    const why: string[] = [];
    await downloadToStore(url, store, { ...fast, onRestart: (r) => why.push(r) });
    expect(why[0]).toMatch(/discarded: it was stored in chunks of 0\.5 bytes/);
    expect((await store.getManifest(url))?.complete).toBe(true);
  });

  it('restarts from byte 0 when a same-size file changed between visits (ETag): versions never mix', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { cutAfterBytes: 30_000, cutTimes: 1 };
    await downloadToStore(url, store, { ...fast, maxRetries: 0 }).catch(() => {});
    expect((await store.getManifest(url))?.storedChunks).toBe(3);
    const v2 = fakeGguf(file.length);
    server.files.set('m.gguf', v2);
    server.faults = {};
    server.log = [];
    const restarts: string[] = [];
    await downloadToStore(url, store, { ...fast, onRestart: (r) => restarts.push(r) });
    expect(restarts[0]).toMatch(/ETag/);
    expect(server.log.find((r) => r.method === 'GET')?.range).toBeUndefined();
    const m = (await store.getManifest(url))!;
    expect(sha(await new ChunkedSource(store, m).read(0, m.size))).toBe(sha(v2));
  });

  it('stops reading at the end of the file when a server sends more, and never buffers past it', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { overSend: 64 * 1024 * 1024 };
    const err = await downloadToStore(url, store, fast).catch((e) => e);
    expect(err).toMatchObject({ code: 'network' });
    expect(err.message).toContain(url);
    expect(err.message).toMatch(/sent more than the file's 100000 bytes/);
    // The server got to write only a little past the file before the client hung up.
    await new Promise((r) => setTimeout(r, 50));
    const sent = server.log.find((r) => r.method === 'GET')?.sent ?? 0;
    expect(sent).toBeLessThan(16 * 1024 * 1024);
    expect((await store.getManifest(url))?.complete ?? false).toBe(false);
  });

  it('a download whose signal is already aborted stops before its first request', async () => {
    const ac = new AbortController();
    ac.abort();
    const err = await downloadToStore(server.fileUrl('m.gguf'), store, { ...fast, signal: ac.signal }).catch(
      (e) => e,
    );
    expect(err).toMatchObject({ code: 'interrupted' });
    expect(server.log).toEqual([]);
  });

  it('gives up on a server that never answers, naming the URL and the wait', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { hangGets: 3 };
    const t0 = Date.now();
    const err = await downloadToStore(url, store, { ...fast, answerTimeoutMs: 150, maxRetries: 2 }).catch(
      (e) => e,
    );
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(err.code).toBe('network');
    expect(err.message).toBe(
      `Download of ${url} failed 3 times in a row (no answer within 0.15 s). Try again later.`,
    );
    // A HEAD that never answers fails the same way (asked three times).
    server.faults = { hangHeads: 3 };
    const head = await downloadToStore(url, store, { ...fast, answerTimeoutMs: 150 }).catch((e) => e);
    expect(head.message).toMatch(new RegExp(`could not download ${url} \\(no answer within 0\\.15 s\\)`));
  });

  it('treats a trickle (one byte at a time) as stalled, retries, then says so', async () => {
    const url = server.fileUrl('m.gguf');
    server.faults = { trickleMsPerByte: 20 };
    const err = await downloadToStore(url, store, {
      ...fast,
      stallTimeoutMs: 300,
      stallBytes: 1024,
      maxRetries: 1,
    }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toContain(url);
    expect(err.message).toMatch(
      /failed 2 times in a row \(the server sent less than 1\.0 kB in 0\.3 s: too slow or stalled\)/,
    );
    expect(server.log.filter((r) => r.method === 'GET').length).toBe(2);
    // A slow but steady server is not a stall: the same limits, 16 KiB every 10 ms.
    server.faults = { delayMsPerPiece: 10 };
    const ok = await downloadToStore(url, store, { ...fast, stallTimeoutMs: 300, stallBytes: 1024 });
    expect(ok.complete).toBe(true);
  });

  it('a failed download never leaves an unhandled rejection, even when nobody awaits it', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const url = server.fileUrl('m.gguf');
      server.faults = { shortBodyAt: 50_000 };
      const ac = new AbortController();
      const acquired = await acquireModel(
        { kind: 'url', url },
        { store: async () => store, signal: ac.signal, ...fast },
      );
      // The load that started it fails elsewhere and walks away: `done` is never awaited.
      void acquired;
      await new Promise((r) => setTimeout(r, 400));
      expect(acquired.error).toMatchObject({
        code: 'network',
        message: expect.stringMatching(/failed 6 times/),
      });
      // A reader that was waiting for the missing bytes gets the download's error.
      await expect(acquired.source.read(60_000, 10)).rejects.toMatchObject({ code: 'network' });
      // Give a stray rejection the turns it needs to be reported.
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it("tells when the file at a cached model's URL changed, and downloads it again on request", async () => {
    const url = server.fileUrl('m.gguf');
    const ac = new AbortController();
    const deps = { store: async () => store, signal: ac.signal, ...fast };
    const first = await acquireModel({ kind: 'url', url }, deps);
    expect(await first.done).toEqual({});
    expect(await checkForUpdate(store, url)).toBeUndefined();

    const v2 = fakeGguf(120_000);
    server.files.set('m.gguf', v2);
    server.log = [];
    expect(await checkForUpdate(store, url)).toEqual({
      reason: 'the file changed size (100 kB → 120 kB)',
      cachedSize: file.length,
      remoteSize: v2.length,
    });
    expect(server.log.map((r) => r.method)).toEqual(['HEAD']);
    // A plain load still uses the cached copy; a refresh replaces it.
    const cached = await acquireModel({ kind: 'url', url }, deps);
    expect(cached.fromCache).toBe(true);
    const fresh = await acquireModel({ kind: 'url', url, refresh: true }, deps);
    expect(fresh.fromCache).toBe(false);
    expect(await fresh.done).toEqual({});
    expect(sha(await fresh.source.read(0, v2.length))).toBe(sha(v2));
    expect(await checkForUpdate(store, url)).toBeUndefined();

    // Never an error, never a long wait: a silent server, then no server at all.
    server.faults = { hangHeads: 1 };
    const t0 = Date.now();
    expect(await checkForUpdate(store, url, { timeoutMs: 200 })).toBeUndefined();
    expect(Date.now() - t0).toBeLessThan(2000);
    const gone = await startModelServer({});
    const port = new URL(gone.url).port;
    await gone.stop();
    const offlineStore = new ModelStore(new MemoryKeyValueStore());
    const m = newManifest(`http://127.0.0.1:${port}/m.gguf`, { size: 4 }, 1024);
    m.complete = true;
    m.storedChunks = 1;
    await offlineStore.putManifest(m);
    expect(await checkForUpdate(offlineStore, m.id)).toBeUndefined();
  });
});
