/**
 * EngineHost.inspect, the page's "Inspect before downloading": the header of a URL from the real
 * model server, read with Range requests, nothing stored; a web page instead of a model is named;
 * the error crosses the worker boundary with its code.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { EngineError } from '../engine/errors';
import { inspectionFacts } from '../engine/inspect-facts';
import { MemoryKeyValueStore } from '../storage/kv';
import { EngineHost } from './engine-host';
import { toEngineError, withWireErrors } from './errors';

const bytes = new Uint8Array(readFileSync('fixtures/tiny-f16-tied.gguf'));

describe('EngineHost.inspect', () => {
  let server: ModelServer;
  const kv = new MemoryKeyValueStore();
  const host = new EngineHost({
    kv,
    retryDelayMs: () => 5,
    loader: () => Promise.reject(new Error('inspect must not load a model')),
  });
  beforeAll(async () => {
    server = await startModelServer({ 'tiny.gguf': bytes });
  });
  afterAll(async () => {
    await server.stop();
  });

  it('describes the file from its header alone, downloads and stores nothing', async () => {
    const info = await host.inspect(server.fileUrl('tiny.gguf'), { maxSeqLen: 512 });
    expect(info).toMatchObject({
      name: 'tiny-f16-tied',
      runnable: true,
      chatTemplate: true,
      contextLength: 2048,
      gpu: { maxSeqLen: 512, maxBatch: 1 },
    });
    const sent = server.log.filter((l) => l.method === 'GET').reduce((a, l) => a + (l.sent ?? 0), 0);
    // The reads double from 1 MiB until the 7.8 MB header ends (15 MiB here): never the whole file.
    expect(sent).toBeLessThan(2 * 7.9e6 + (1 << 20));
    expect(sent).toBeLessThan(bytes.length);
    expect(await host.listCached()).toEqual([]);
    // What the panel shows: the CLI's lines.
    const facts = new Map(inspectionFacts(info, (n) => `${n} B`));
    expect(facts.get('runs here')).toBe('yes');
    expect(facts.get('chat template')).toBe('yes');
    expect(facts.get('GPU memory')).toMatch(/^\d+ B at 512 positions × 1 sequence/);
  });

  it('a web page at the URL: refused, named as a page, code intact across the wire', async () => {
    server.faults.html = true;
    try {
      const wired = withWireErrors(host);
      const err = toEngineError(await wired.inspect(server.fileUrl('tiny.gguf')).catch((e) => e));
      expect(err).toBeInstanceOf(EngineError);
      expect(err.message).toMatch(/HTML|web page|not a GGUF/i);
    } finally {
      server.faults.html = false;
    }
  });
});
