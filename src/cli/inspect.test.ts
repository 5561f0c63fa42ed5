/**
 * `inspect` as a child process: a URL served by the real model server (--json), a file this version
 * refuses (text), and the usage errors. The facts themselves are tested in engine/inspect.test.ts.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { tinyLlama } from '../engine/gguf/test-helpers';
import { GgmlType } from '../engine/gguf/types';
import type { ModelInspection } from '../engine/inspect';
import { FIXTURES, lastJson, runCliProcess } from './spawn.testutil';

let tmp: string;
let server: ModelServer;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'inspect-test-'));
  server = await startModelServer({
    'tiny-f16-tied.gguf': new Uint8Array(readFileSync(join(FIXTURES, 'tiny-f16-tied.gguf'))),
  });
});
afterAll(async () => {
  await server.stop();
  await rm(tmp, { recursive: true, force: true });
});

describe('inspect', () => {
  it('--json on a URL: the header through Range requests, the memory at --max-seq-len', async () => {
    const r = await runCliProcess([
      'inspect',
      '--model-path',
      server.fileUrl('tiny-f16-tied.gguf'),
      '--max-seq-len',
      '1024',
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const info = lastJson<ModelInspection>(r.stdout);
    expect(info).toMatchObject({
      name: 'tiny-f16-tied',
      architecture: 'llama',
      fileType: 'F16',
      contextLength: 2048,
      chatTemplate: true,
      runnable: true,
      problems: [],
      shapes: { dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, tiedEmbeddings: true, ropeFreqs: true },
      gpu: { maxSeqLen: 1024, maxBatch: 1 },
    });
    expect(info.tensorTypes.map((t) => t.type)).toEqual(['f16', 'f32']);
    const gets = server.log.filter((l) => l.method === 'GET');
    expect(gets.every((l) => l.range !== undefined)).toBe(true);
    expect(gets.reduce((a, l) => a + (l.sent ?? 0), 0)).toBeLessThan(info.fileBytes);
  });

  it('text on a file it cannot run: the facts, then "runs here no" and why', async () => {
    const path = join(tmp, 'q2k.gguf');
    await writeFile(path, tinyLlama({ dim: 256, ffnDim: 512, type: GgmlType.Q2_K }));
    const r = await runCliProcess(['inspect', '--model-path', path]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^model +tiny$/m);
    expect(r.stdout).toMatch(/^architecture +llama: 2 layers, dim 256, 4 query \/ 2 KV heads of 64/m);
    expect(r.stdout).toMatch(/^tensor types +q2_K .* 16 tensors \(not supported\)$/m);
    expect(r.stdout).toMatch(/^GPU memory +.* at 256 positions × 1 sequence/m);
    expect(r.stdout).toMatch(/^runs here +no$/m);
    expect(r.stdout).toMatch(/^ +- unsupported tensor type q2_K in token_embd\.weight/m);
  });

  it('usage errors exit 2; a missing file exits 1 with the reason', async () => {
    const none = await runCliProcess(['inspect']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/^error: inspect needs --model-path FILE\|URL/);
    const missing = await runCliProcess(['inspect', '--model-path', join(tmp, 'nope.gguf')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error: .*nope\.gguf/);
  });
});
