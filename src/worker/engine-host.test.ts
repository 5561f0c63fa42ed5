/**
 * EngineHost in-process (as a non-worker host would use it): a real HTTP server, the memory store,
 * the real engine on the CPU reference backend, the stub model fixture.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { LoadedModel } from '../engine/engine';
import { EngineError } from '../engine/errors';
import { readGguf } from '../engine/gguf/reader';
import { MemorySource } from '../engine/source';
import { downloadToStore } from '../storage/downloader';
import { MemoryKeyValueStore } from '../storage/kv';
import { ModelStore } from '../storage/model-store';
import type { LoadProgress } from './api';
import { EngineHost, type LoadedModelLike, type ModelLoader } from './engine-host';
import { toEngineError, withWireErrors } from './errors';

const FIXTURE = 'fixtures/tiny-q4_0.gguf';

describe.skipIf(!existsSync(FIXTURE))('EngineHost (in-process, CPU backend)', () => {
  const bytes = existsSync(FIXTURE) ? new Uint8Array(readFileSync(FIXTURE)) : new Uint8Array();
  let server: ModelServer;
  const kv = new MemoryKeyValueStore();
  const host = new EngineHost({
    kv,
    chunkSize: 4 << 20,
    retryDelayMs: () => 5,
    loader: (source, opts) => LoadedModel.load(source, { device: 'cpu', ...opts }),
  });
  const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };

  beforeAll(async () => {
    server = await startModelServer({ 'tiny.gguf': bytes });
  });
  afterAll(async () => {
    await host.unload();
    await server.stop();
  });

  it('loads from a URL while downloading, then generates what the engine generates on the same bytes', async () => {
    const phases = new Set<string>();
    let lastDownload: LoadProgress | undefined;
    const info = await host.load({ kind: 'url', url: server.fileUrl('tiny.gguf') }, (p) => {
      phases.add(p.phase);
      if (p.phase === 'download') lastDownload = p;
    });
    expect(info.fromCache).toBe(false);
    expect(info.cached).toBe(true);
    expect(info.sizeBytes).toBe(bytes.length);
    expect(phases.has('download')).toBe(true);
    expect(phases.has('weights')).toBe(true);
    expect(lastDownload?.totalBytes).toBe(bytes.length);
    const cached = await host.listCached();
    expect(cached).toMatchObject([{ name: 'tiny.gguf', complete: true, storedBytes: bytes.length }]);

    const streamed: string[] = [];
    const out = await host.generate(
      { prompts: ['Once upon a time'], mode: 'completion', maxTokens: 5, sampling: greedy },
      (ev) => streamed.push(ev.delta),
    );
    expect(streamed.join('')).toBe(out.text[0]);

    const direct = await LoadedModel.load(new MemorySource(bytes), { device: 'cpu' });
    try {
      const want = await direct.complete({ prompts: ['Once upon a time'], maxTokens: 5, sampling: greedy });
      expect(out.tokens).toEqual(want.tokens);
      expect(out.text).toEqual(want.text);
    } finally {
      direct.dispose();
    }
  });

  it('loads from the cache without the network and stops a generation on interrupt()', async () => {
    await server.stop();
    const info = await host.load({ kind: 'cache', id: server.fileUrl('tiny.gguf') });
    expect(info.fromCache).toBe(true);
    let n = 0;
    const run = host.generate(
      { prompts: ['Hello', 'The sky is'], mode: 'completion', maxTokens: 500, sampling: greedy },
      () => {
        if (++n === 3) host.interrupt();
      },
    );
    const out = await run;
    expect(out.finishReasons).toEqual(['interrupted', 'interrupted']);
    expect(out.tokens[0].length).toBeLessThan(10);
  });

  it('loading or unloading while a step runs ends that generation as interrupted, with its text', async () => {
    for (const action of ['load', 'unload'] as const) {
      await host.load({ kind: 'cache', id: server.fileUrl('tiny.gguf') });
      const deltas: string[] = [];
      let n = 0;
      let next: Promise<unknown> | undefined;
      const out = await host.generate(
        { prompts: ['Once upon a time'], mode: 'completion', maxTokens: 200, sampling: greedy },
        (ev) => {
          deltas.push(ev.delta);
          // Called from inside the step loop: the runner is busy with the model being replaced.
          if (ev.token >= 0 && ++n === 3) {
            next =
              action === 'load'
                ? host.load({ kind: 'cache', id: server.fileUrl('tiny.gguf') })
                : host.unload();
          }
        },
      );
      expect(out.finishReasons, action).toEqual(['interrupted']);
      expect(out.tokens[0].length, action).toBeGreaterThanOrEqual(3);
      expect(out.tokens[0].length, action).toBeLessThan(10);
      expect(deltas.join(''), action).toBe(out.text[0]);
      await next;
      if (action === 'load') {
        // The new model is in place and usable: no stale state from the stopped generation.
        const again = await host.generate({
          prompts: ['Once'],
          mode: 'completion',
          maxTokens: 2,
          sampling: greedy,
        });
        expect(again.tokens[0]).toHaveLength(2);
      } else {
        const e = await host
          .generate({ prompts: ['Once'], mode: 'completion', maxTokens: 2, sampling: greedy })
          .catch((x) => x);
        expect(e).toMatchObject({ code: 'bad-argument' });
      }
    }
  });

  it('rejects with "[code] message" across the wire, and the code survives', async () => {
    const wired = withWireErrors(host);
    const e = await wired.load({ kind: 'cache', id: 'http://nowhere/x.gguf' }).catch((x) => x);
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(EngineError);
    expect(e.message).toMatch(/^\[storage\] /);
    expect(EngineError.fromSerialized(e).code).toBe('storage');
    await host.unload();
    const g = await wired
      .generate({ prompts: ['x'], mode: 'completion', maxTokens: 1, sampling: greedy })
      .catch((x) => x);
    expect(EngineError.fromSerialized(g)).toMatchObject({ code: 'bad-argument' });
  });

  it('a newer load stops the one in progress; the newer model is the one that stays', async () => {
    // A server of its own: an earlier test stops the shared one to prove it loads offline.
    const own = await startModelServer({ 'tiny.gguf': bytes, 'other.gguf': bytes });
    const fresh = new EngineHost({
      kv: new MemoryKeyValueStore(),
      chunkSize: 4 << 20,
      loader: (source, opts) => LoadedModel.load(source, { device: 'cpu', ...opts }),
    });
    own.faults = { delayMsPerPiece: 5 }; // the first download is slow…
    const first = fresh.load({ kind: 'url', url: own.fileUrl('tiny.gguf') }).catch((e) => e);
    own.faults = {}; // …the second is not (faults are read when a request starts)
    const second = await fresh.load({ kind: 'url', url: own.fileUrl('other.gguf') });
    expect(await first).toMatchObject({ code: 'interrupted' });
    expect(second.name).toBe('other.gguf');
    const out = await fresh.generate({
      prompts: ['Once'],
      mode: 'completion',
      maxTokens: 1,
      sampling: greedy,
    });
    expect(out.tokens[0].length).toBe(1);
    const cached = await fresh.listCached();
    expect(cached.find((c) => c.name === 'other.gguf')?.complete).toBe(true);
    expect(cached.find((c) => c.name === 'tiny.gguf')?.complete ?? false).toBe(false);
    await fresh.unload();
    await own.stop();
  });

  it('a load that fails or is stopped keeps the loaded model, which still generates', async () => {
    await host.load({ kind: 'cache', id: server.fileUrl('tiny.gguf') });
    const own = await startModelServer({ 'page.gguf': bytes, 'slow.gguf': bytes });
    try {
      const failures = [
        await host.load({ kind: 'url', url: own.fileUrl('missing.gguf') }).catch((e) => e),
        await (async () => {
          own.faults = { html: true };
          return host.load({ kind: 'url', url: own.fileUrl('page.gguf') }).catch((e) => e);
        })(),
        await (async () => {
          own.faults = { delayMsPerPiece: 20 };
          // Stopped mid-download, as the page's Cancel does.
          return host
            .load({ kind: 'url', url: own.fileUrl('slow.gguf') }, (p) => {
              if (p.phase === 'download' && p.loadedBytes > 0) host.interrupt();
            })
            .catch((e) => e);
        })(),
      ];
      expect(failures.map((e) => e.code)).toEqual(['network', 'bad-gguf', 'interrupted']);
      const out = await host.generate({
        prompts: ['Once upon a time'],
        mode: 'completion',
        maxTokens: 2,
        sampling: greedy,
      });
      expect(out.tokens[0]).toHaveLength(2);
    } finally {
      await own.stop();
    }
  });

  it('without WebGPU, a host that needs it refuses to load before downloading anything', async () => {
    const own = await startModelServer({ 'tiny.gguf': bytes }); // listening: a request would be logged
    const noGpu = new EngineHost({
      kv: new MemoryKeyValueStore(),
      requireWebGpu: true,
      loader: () => Promise.reject(new Error('the loader must not run')),
    });
    const e = await noGpu.load({ kind: 'url', url: own.fileUrl('tiny.gguf') }).catch((x) => x);
    expect(e).toBeInstanceOf(EngineError);
    expect(e.code).toBe('no-webgpu');
    expect(e.message).toMatch(/no WebGPU/);
    expect(own.log).toEqual([]);
    expect(await noGpu.listCached()).toEqual([]);
    await own.stop();
  });
});

describe.skipIf(!existsSync(FIXTURE))('EngineHost: a GPU that holds one model at a time', () => {
  const bytes = existsSync(FIXTURE) ? new Uint8Array(readFileSync(FIXTURE)) : new Uint8Array();
  /** The models alive on the "GPU"; a second one does not fit, and huge.gguf never fits. */
  const live = new Set<string>();
  const loader: ModelLoader = async (source) => {
    const file = await readGguf(source);
    if (live.size > 0 || source.name === 'huge.gguf')
      throw new EngineError('gpu-out-of-memory', `no room for ${source.name}`);
    live.add(source.name);
    // Only what the host touches: the name of the model that answers is the answer.
    const model = {
      file,
      config: { name: source.name },
      runner: { maxBatch: 1, maxSeqLen: 16 },
      complete: async () => ({ text: [source.name], tokens: [[]], finishReasons: ['stop'], stats: {} }),
      dispose: () => live.delete(source.name),
    };
    return model as unknown as LoadedModelLike;
  };
  const host = new EngineHost({ kv: new MemoryKeyValueStore(), loader });
  const load = (name: string) => host.load({ kind: 'file', file: new File([bytes], name) });
  const answerer = async () =>
    (await host.generate({ prompts: ['x'], mode: 'completion', maxTokens: 1, sampling: {} })).text[0];

  it('frees the old model to make room, and loads it again when the new one still does not fit', async () => {
    await load('a.gguf');
    expect(await answerer()).toBe('a.gguf');
    // b.gguf does not fit next to a.gguf: a.gguf goes, b.gguf loads.
    expect((await load('b.gguf')).name).toBe('b.gguf');
    expect(await answerer()).toBe('b.gguf');
    expect([...live]).toEqual(['b.gguf']);
    // huge.gguf fits nowhere: b.gguf goes, then comes back, and the error says so.
    const e = await load('huge.gguf').catch((x) => x);
    expect(e).toMatchObject({ code: 'gpu-out-of-memory' });
    expect(e.message).toMatch(/no room for huge\.gguf.*previous model was unloaded.*loaded again/);
    expect(await answerer()).toBe('b.gguf');
    expect([...live]).toEqual(['b.gguf']);
    await host.unload();
    expect(live.size).toBe(0);
  });
});

describe('error classification', () => {
  it('maps platform errors to codes the UI acts on', () => {
    expect(toEngineError(new DOMException('', 'QuotaExceededError')).code).toBe('storage-full');
    expect(toEngineError(new DOMException('x', 'AbortError')).code).toBe('interrupted');
    expect(toEngineError(new RangeError('Array buffer allocation failed')).code).toBe('gpu-out-of-memory');
    expect(toEngineError(new Error('The Device was lost before mapping was resolved.')).code).toBe(
      'device-lost',
    );
    expect(toEngineError(new TypeError('Failed to fetch')).code).toBe('network');
    expect(toEngineError(new Error('[bad-gguf] nope')).code).toBe('bad-gguf');
    expect(toEngineError('weird').code).toBe('internal');
  });
});

describe('EngineHost acquisition (no model is run)', () => {
  const gguf = (n: number, fill: number) => {
    const b = new Uint8Array(n).fill(fill);
    b.set([0x47, 0x47, 0x55, 0x46]);
    return b;
  };

  it('refuses a chunk size that is not a sane whole number, before any request', async () => {
    const own = await startModelServer({ 'tiny.gguf': gguf(1000, 1) });
    try {
      const host = new EngineHost({
        kv: new MemoryKeyValueStore(),
        chunkSize: 0.5,
        loader: () => Promise.reject(new Error('the loader must not run')),
      });
      const e = await host.load({ kind: 'url', url: own.fileUrl('tiny.gguf') }).catch((x) => x);
      expect(e).toMatchObject({ code: 'bad-argument', message: expect.stringMatching(/chunk size/) });
      expect(own.log).toEqual([]);
      expect(await host.listCached()).toEqual([]);
    } finally {
      await own.stop();
    }
  });

  it('checkForUpdate: a HEAD says when the cached file changed at its URL, and nothing when offline', async () => {
    const own = await startModelServer({ 'm.gguf': gguf(200_000, 1) });
    const kv = new MemoryKeyValueStore();
    const host = new EngineHost({
      kv,
      chunkSize: 64 * 1024,
      updateCheckTimeoutMs: 300,
      // A loader that reads nothing: this test is about the bytes, not the model.
      loader: async () => Promise.reject(new EngineError('unsupported-model', 'not run here')),
    });
    const url = own.fileUrl('m.gguf');
    await downloadToStore(url, new ModelStore(kv), { chunkSize: 64 * 1024 });
    expect(await host.checkForUpdate(url)).toBeUndefined();
    own.files.set('m.gguf', gguf(200_000, 2)); // same size, new content: the ETag tells
    expect(await host.checkForUpdate(url)).toMatchObject({ reason: expect.stringMatching(/ETag/) });
    own.faults = { hangHeads: 1 };
    expect(await host.checkForUpdate(url)).toBeUndefined();
    await own.stop();
    expect(await host.checkForUpdate(url)).toBeUndefined();
    expect(await host.checkForUpdate('http://127.0.0.1:9/never-cached.gguf')).toBeUndefined();
  });
});
