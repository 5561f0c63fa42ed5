import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { EngineError } from '../engine/errors';
import { ByteGate, ChunkedSource } from './chunked-source';
import { downloadToStore, probeRemote } from './downloader';
import { MemoryKeyValueStore } from './kv';
import {
  contiguousBytes,
  decideResponse,
  type ModelManifest,
  newManifest,
  ProgressMeter,
  parseContentRange,
  planDownload,
  publishedSha256,
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
  for (let i = 0; i < chunks; i++) {
    m.chunks.push({
      index: i,
      offset: i * chunkSize,
      size: Math.min(chunkSize, size - i * chunkSize),
      sha256: '',
    });
  }
  return Object.assign(m, extra);
}

describe('manifest planning', () => {
  it('counts only a well-formed prefix of chunks', () => {
    expect(contiguousBytes(manifestWith(100, 30, 4))).toBe(100);
    const gap = manifestWith(100, 30, 3);
    gap.chunks.splice(1, 1);
    expect(contiguousBytes(gap)).toBe(30);
    const short = manifestWith(100, 30, 2);
    short.chunks[0].size = 10; // a short chunk that is not the last one ends the prefix
    expect(contiguousBytes(short)).toBe(0);
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
  const fast = { chunkSize: CHUNK, retryDelayMs: () => 5 };

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
    expect(m.chunks.length).toBe(Math.ceil(file.length / CHUNK));
    const blob = await store.getChunk(url, 3);
    expect(m.chunks[3].sha256).toBe(sha(new Uint8Array(await blob!.arrayBuffer())));
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
    expect(e.message).toMatch(/Could not reach .*other\.gguf/);
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
    expect(m.chunks.reduce((a, c) => a + c.size, 0)).toBe(file.length); // no concatenation
    expect(sha(await cachedBytes(url))).toBe(sha(file));
  });

  it('rejects an HTML page before storing anything', async () => {
    server.faults = { html: true };
    const err = await downloadToStore(server.fileUrl('m.gguf'), store, fast).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('bad-gguf');
    expect(err.message).toMatch(/not a GGUF file.*<!DOCTYPE/);
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
    expect((await store.getManifest(url))?.chunks.length).toBe(3);
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
      if (v instanceof Blob && ++writes === 3) throw new DOMException('', 'QuotaExceededError');
      return set(k, v);
    };
    const s = new ModelStore(full);
    const err = await downloadToStore(server.fileUrl('m.gguf'), s, fast).catch((e) => e);
    expect(err.code).toBe('storage-full');
    expect(err.message).toMatch(/97\.7 KiB/);
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
    const firstRead = new Promise<{ bytes: Uint8Array; availableAtRead: number }>((resolve) => {
      const d = downloadToStore(url, store, {
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
      d.then(() => gate.advance(file.length));
    });
    const { bytes, availableAtRead } = await firstRead;
    expect([...bytes]).toEqual([...file.subarray(CHUNK - 10, CHUNK + 10)]);
    // The read finished long before the whole file arrived.
    expect(availableAtRead).toBeLessThan(file.length);
  });

  it('catches a corrupt cached chunk and drops it and what follows', async () => {
    const url = server.fileUrl('m.gguf');
    await downloadToStore(url, store, fast);
    const key = [...kv.map.keys()].find((k) => k.startsWith('c:000005:'))!;
    const bad = new Uint8Array(await (kv.map.get(key) as Blob).arrayBuffer());
    bad[7] ^= 1;
    kv.map.set(key, new Blob([bad]));
    const m = (await store.getManifest(url))!;
    const src = new ChunkedSource(store, m);
    expect(sha(await src.read(0, 5 * CHUNK))).toBe(sha(file.subarray(0, 5 * CHUNK)));
    const err = await src.read(5 * CHUNK, 10).catch((e) => e);
    expect(err.code).toBe('storage');
    expect(err.message).toMatch(/corrupt/);
    const after = (await store.getManifest(url))!;
    expect(after.complete).toBe(false);
    expect(after.chunks.length).toBe(5);
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
