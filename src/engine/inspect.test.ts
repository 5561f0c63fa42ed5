/**
 * inspectModel on every fixture (checked against the header the reader parses and the fixture
 * generator's own options), on a URL served by the real model server (Range requests of the header
 * only), on a truncated header, and on files this version refuses.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { TINY_FIXTURES } from '../../scripts/fixtures/make-model';
import { readGguf } from './gguf/reader';
import { engineError, tinyLlama } from './gguf/test-helpers';
import { GgmlType, GgufValueType, typeName } from './gguf/types';
import { HttpRangeSource } from './http-source';
import { describeGguf, inspectModel, type ModelInspection } from './inspect';
import { MemorySource } from './source';

const FIXTURES = join(__dirname, '../../fixtures');
const fixtureNames = readdirSync(FIXTURES).filter((f) => f.endsWith('.gguf'));
const bytesOf = (name: string) => new Uint8Array(readFileSync(join(FIXTURES, name)));

/** Each fixture inspected once (a header read and a tokenizer build: seconds on a loaded machine). */
const inspected = new Map<string, ModelInspection>();
beforeAll(async () => {
  for (const name of fixtureNames)
    inspected.set(name, await inspectModel(new MemorySource(bytesOf(name), name)));
});

describe('inspectModel on the fixtures', () => {
  it('finds every generated fixture', () => {
    expect(fixtureNames.sort()).toEqual(Object.keys(TINY_FIXTURES).sort());
  });

  it.each(fixtureNames)(
    '%s: shapes, parameters, type mix, context, template, memory, runnable',
    async (name) => {
      const info = inspected.get(name)!;
      const o = TINY_FIXTURES[name];
      const nTensors = 2 + 9 * o.nLayers + (o.tied ? 0 : 1) + (o.ropeFreqs ? 1 : 0);

      expect(info.runnable, info.problems.join('\n')).toBe(true);
      expect(info.problems).toEqual([]);
      expect(info.architecture).toBe('llama');
      expect(info.name).toBe(name.replace(/\.gguf$/, ''));
      const fileBytes = statSync(join(FIXTURES, name)).size;
      expect(info.fileBytes).toBe(fileBytes);
      // The header is the vocabulary (~7.8 MB) and the tensor table; the data section is aligned to 32.
      expect(info.headerBytes % 32).toBe(0);
      expect(info.headerBytes).toBeGreaterThan(7e6);
      expect(info.headerBytes).toBeLessThan(9e6);
      expect(info.ggufVersion).toBe(3);
      expect(info.shapes).toEqual({
        vocabSize: 128256,
        dim: o.dim,
        nLayers: o.nLayers,
        nHeads: o.nHeads,
        nKvHeads: o.nKvHeads,
        headDim: o.dim / o.nHeads,
        ffnDim: o.ffnDim,
        ropeTheta: o.ropeTheta ?? 500000,
        tiedEmbeddings: o.tied,
        ropeFreqs: o.ropeFreqs,
      });
      expect(info.contextLength).toBe(o.contextLength ?? 2048);
      expect(info.chatTemplate).toBe(true);
      expect(info.tensorCount).toBe(nTensors);

      // Parameters from the generator's shapes: embedding, head unless tied, layers, norms, rope_freqs.
      const { dim, ffnDim, nLayers } = o;
      const kvDim = (o.nKvHeads * dim) / o.nHeads;
      const perLayer = 2 * dim * dim + 2 * dim * kvDim + 3 * dim * ffnDim + 2 * dim;
      const expected =
        128256 * dim * (o.tied ? 1 : 2) + nLayers * perLayer + dim + (o.ropeFreqs ? dim / o.nHeads / 2 : 0);
      expect(info.parameters).toBe(expected);

      // The type mix covers every tensor exactly once and names the generator's types.
      expect(info.tensorTypes.reduce((a, t) => a + t.tensors, 0)).toBe(nTensors);
      expect(info.tensorTypes.reduce((a, t) => a + t.parameters, 0)).toBe(expected);
      // Tensor data fills the file after the header, up to the alignment padding between tensors.
      const dataBytes = info.tensorTypes.reduce((a, t) => a + t.bytes, 0);
      expect(fileBytes - info.headerBytes - dataBytes).toBeGreaterThanOrEqual(0);
      expect(fileBytes - info.headerBytes - dataBytes).toBeLessThan(32 * nTensors);
      const typeNames = info.tensorTypes.map((t) => t.type);
      const embedType = o.tied ? o.headType : (o.embedType ?? o.bodyType);
      const wanted = new Set([GgmlType.F32, o.bodyType, embedType, ...(o.tied ? [] : [o.headType])]);
      // Mixed fixtures (Q4_K_M-shaped) add types of their own; the generator's main ones are all there.
      for (const t of wanted) expect(typeNames).toContain(typeName(t));
      expect(new Set(typeNames).size).toBe(typeNames.length);
      for (const t of info.tensorTypes) expect(t.supported).toBe(true);
      for (let i = 1; i < info.tensorTypes.length; i++) {
        expect(info.tensorTypes[i - 1].bytes).toBeGreaterThanOrEqual(info.tensorTypes[i].bytes);
      }

      // GPU memory at the model's context for one sequence: at least the weights and the f16 KV cache.
      const kv = 2 * nLayers * (o.contextLength ?? 2048) * kvDim * 2;
      expect(info.gpu?.maxSeqLen).toBe(o.contextLength ?? 2048);
      expect(info.gpu?.maxBatch).toBe(1);
      expect(info.gpu?.weightBytes).toBe(dataBytes);
      expect(info.gpu?.bytes).toBeGreaterThan(dataBytes + kv);
    },
  );

  it('the memory estimate grows with the context and the batch by the f16 KV cache', async () => {
    // A shape fixture (128-token vocabulary, no tokenizer): parsed once, described at several sizes.
    const file = await readGguf(new MemorySource(tinyLlama({ dim: 64, nHeads: 4, nKvHeads: 2, nLayers: 2 })));
    const at = async (maxSeqLen: number, maxBatch = 1) =>
      (await describeGguf(file, 'tiny', { maxSeqLen, maxBatch })).gpu?.bytes ?? 0;
    const perPosition = 2 * 2 * 32 * 2; // K and V, 2 layers, KV dim 2 × 16, f16
    // …and the RoPE table (Dh/2 (cos, sin) f32 pairs per position), which the GPU keeps twice: its
    // own buffer and the decode fusions' constants (memory.ts).
    const ropePerPosition = 2 * 16 * 4;
    // 16 sequences, so the prefill chunk is its 2,048-row maximum at both contexts (a chunk never
    // exceeds maxBatch × maxSeqLen: prefillChunkTokens) and only the KV cache and RoPE table grow.
    expect((await at(256, 16)) - (await at(128, 16))).toBe(128 * (16 * perPosition + ropePerPosition));
    expect((await at(128, 3)) - (await at(128, 1))).toBeGreaterThanOrEqual(2 * 128 * perPosition);
    expect((await describeGguf(file, 'tiny')).gpu?.maxSeqLen).toBe(256); // the model's context
    const err = await engineError(() => describeGguf(file, 'tiny', { maxSeqLen: 257 }));
    expect(err.code).toBe('bad-argument');
    expect(err.message).toMatch(/max sequence length must be an integer in 2\.\.256, got 257/);
  });
});

describe('inspectModel on a URL', () => {
  let server: ModelServer;
  const bytes = bytesOf('tiny-q4_0.gguf');
  beforeAll(async () => {
    server = await startModelServer({ 'tiny-q4_0.gguf': bytes });
  });
  afterAll(async () => {
    await server.stop();
  });

  it('reads the header alone with Range requests and says what the file says', async () => {
    const url = server.fileUrl('tiny-q4_0.gguf');
    const info = await inspectModel(await HttpRangeSource.open(url));
    const local = inspected.get('tiny-q4_0.gguf');
    expect({ ...info, source: '' }).toEqual({ ...local, source: '' });
    expect(info.source).toContain('tiny-q4_0.gguf');
    const gets = server.log.filter((r) => r.method === 'GET');
    expect(gets.length).toBeGreaterThan(1); // the 7.8 MB header needs a few growing reads
    for (const r of gets) expect(r.range).toMatch(/^bytes=\d+-\d+$/);
    const sent = gets.reduce((a, r) => a + (r.sent ?? 0), 0);
    // The reads double from 1 MiB and stop at the header: never the weights (46 MB here).
    expect(sent).toBeGreaterThanOrEqual(info.headerBytes);
    expect(sent).toBeLessThan(2 * info.headerBytes + (1 << 20));
    expect(sent).toBeLessThan(bytes.byteLength / 2);
  });

  it('a server that cuts the file inside the header: bad-gguf naming where it ends', async () => {
    const header = (await readGguf(new MemorySource(bytes))).dataOffset;
    server.faults.truncateTo = header - 100; // inside the last tensor info
    try {
      const err = await engineError(async () =>
        inspectModel(await HttpRangeSource.open(server.fileUrl('tiny-q4_0.gguf'))),
      );
      expect(err.code).toBe('bad-gguf');
      expect(err.message).toMatch(new RegExp(`tensor info 19 of 21: .* file ends at byte ${header - 100}`));
      expect(err.message).toMatch(/truncated/);
    } finally {
      server.faults.truncateTo = undefined;
    }
  });
});

describe('what inspect refuses and why', () => {
  it('a truncated header is bad-gguf, not a partial description', async () => {
    const cut = bytesOf('tiny-f16-tied.gguf').subarray(0, 1_000_000); // inside the vocabulary
    const err = await engineError(() => inspectModel(new MemorySource(cut, 'cut.gguf')));
    expect(err.code).toBe('bad-gguf');
    expect(err.message).toMatch(/"tokenizer\.ggml\.tokens".*only 999318 bytes remain in the file/);
  });

  it('an unsupported tensor type: described, not runnable, the type and a tensor named', async () => {
    const q2k = tinyLlama({ dim: 256, nHeads: 4, nKvHeads: 2, ffnDim: 512, type: GgmlType.Q2_K });
    const info = await inspectModel(new MemorySource(q2k, 'q2k.gguf'));
    expect(info.runnable).toBe(false);
    expect(info.shapes?.dim).toBe(256);
    expect(info.gpu?.bytes).toBeGreaterThan(0);
    const q2 = info.tensorTypes.find((t) => t.type === 'q2_K');
    expect(q2).toMatchObject({ supported: false, tensors: 2 + 2 * 7, example: 'token_embd.weight' });
    expect(info.tensorTypes.find((t) => t.type === 'f32')?.supported).toBe(true);
    expect(info.problems.some((p) => /unsupported tensor type q2_K in token_embd\.weight/.test(p))).toBe(
      true,
    );
    // The tensor check does not repeat the type problem.
    expect(info.problems.filter((p) => p.includes('q2_K'))).toHaveLength(1);
    // This shape fixture has no tokenizer: that is a problem of its own.
    expect(info.problems.some((p) => /tokenizer\.ggml\.model/.test(p))).toBe(true);
    expect(info.chatTemplate).toBe(false);
  });

  it('another architecture: described without Llama shapes or a memory estimate', async () => {
    const other = tinyLlama({
      kvs: [{ key: 'general.architecture', type: GgufValueType.STRING, value: 'qwen2' }],
    });
    const info = await inspectModel(new MemorySource(other));
    expect(info.architecture).toBe('qwen2');
    expect(info.shapes).toBeUndefined();
    expect(info.gpu).toBeUndefined();
    expect(info.runnable).toBe(false);
    expect(info.problems[0]).toMatch(/architecture "qwen2" is not supported/);
  });

  it('a missing tensor is named', async () => {
    const bad = tinyLlama({ editTensors: (ts) => ts.filter((t) => t.name !== 'blk.1.ffn_up.weight') });
    const info = await inspectModel(new MemorySource(bad));
    expect(info.shapes).toBeDefined();
    expect(info.problems.some((p) => /tensor blk\.1\.ffn_up\.weight is missing/.test(p))).toBe(true);
  });

  it('names the llama-quantize preset from general.file_type', async () => {
    const f = tinyLlama({ kvs: [{ key: 'general.file_type', type: GgufValueType.UINT32, value: 15 }] });
    expect((await inspectModel(new MemorySource(f))).fileType).toBe('Q4_K_M');
  });
});
