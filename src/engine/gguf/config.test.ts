import { openAsBlob } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BlobSource, MemorySource } from '../source';
import { getArray, getNumber, getString, llamaConfigFromGguf, validateLlamaTensors } from './config';
import { readGguf, readTensorBytes } from './reader';
import { engineError, type TinyLlamaOptions, tinyLlama } from './test-helpers';
import { GgmlType, type GgufFile, GgufValueType, tensorBytes, typeName, workingPresets } from './types';
import { DEMO_MODEL_PATH } from '../../node/paths';

const read = (o: TinyLlamaOptions = {}) => readGguf(new MemorySource(tinyLlama(o)));

describe('llamaConfigFromGguf', () => {
  it('reads every hyper-parameter', async () => {
    const c = llamaConfigFromGguf(
      await read({ dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, vocabSize: 128 }),
    );
    expect(c).toEqual({
      name: 'tiny',
      vocabSize: 128,
      dim: 64,
      nLayers: 2,
      nHeads: 4,
      nKvHeads: 2,
      headDim: 16,
      ffnDim: 96,
      normEps: Math.fround(1e-5),
      ropeTheta: 500000,
      contextLength: 256,
      tiedEmbeddings: false,
      hasRopeFreqs: false,
    });
  });

  it('applies the defaults: KV heads = heads, RoPE base 10000, name "llama"', async () => {
    const f = await read({
      nHeads: 4,
      nKvHeads: 4,
      dropKeys: ['llama.attention.head_count_kv', 'llama.rope.freq_base', 'general.name'],
    });
    const c = llamaConfigFromGguf(f);
    expect(c.nKvHeads).toBe(4);
    expect(c.ropeTheta).toBe(10000);
    expect(c.name).toBe('llama');
    validateLlamaTensors(f, c);
  });

  it('takes the vocabulary size from llama.vocab_size, else the tokens array, else token_embd rows', async () => {
    const tokens = {
      key: 'tokenizer.ggml.tokens',
      type: GgufValueType.ARRAY,
      arrayType: GgufValueType.STRING,
      value: Array.from({ length: 96 }, (_, i) => `t${i}`),
    };
    expect(llamaConfigFromGguf(await read({ vocabSize: 96, kvs: [tokens] })).vocabSize).toBe(96);
    expect(
      llamaConfigFromGguf(await read({ vocabSize: 96, kvs: [tokens], dropKeys: ['llama.vocab_size'] }))
        .vocabSize,
    ).toBe(96);
    expect(
      llamaConfigFromGguf(await read({ vocabSize: 160, dropKeys: ['llama.vocab_size'] })).vocabSize,
    ).toBe(160);
  });

  it('reports tied embeddings when output.weight is absent, and rope_freqs when present', async () => {
    const f = await read({ tied: true, ropeFreqs: true });
    const c = llamaConfigFromGguf(f);
    expect(c.tiedEmbeddings).toBe(true);
    expect(c.hasRopeFreqs).toBe(true);
    const t = validateLlamaTensors(f, c);
    expect(t.output).toBe(t.tokenEmbd);
    expect(t.ropeFreqs?.dims).toEqual([c.headDim / 2]);
    const untied = await read();
    const tu = validateLlamaTensors(untied, llamaConfigFromGguf(untied));
    expect(tu.output.name).toBe('output.weight');
    expect(tu.ropeFreqs).toBeUndefined();
  });

  it('uses llama.attention.key_length for the head dimension', async () => {
    const f = await read({
      dim: 64,
      nHeads: 4,
      kvs: [{ key: 'llama.attention.key_length', type: GgufValueType.UINT32, value: 8 }],
    });
    // The file's attn_q is [64, 64] while head_dim 8 makes it [64, 32]: the config is refused,
    // naming the mismatch.
    const e = await engineError(() => llamaConfigFromGguf(f));
    expect(e.code).toBe('unsupported-model');
    expect(e.message).toMatch(/tensor blk.0.attn_q.weight has dims \[64, 64\], expected \[64, 32\]/);
  });

  it('refuses another architecture with the message the UI shows', async () => {
    const f = await read({
      kvs: [{ key: 'general.architecture', type: GgufValueType.STRING, value: 'gemma' }],
    });
    const e = await engineError(() => llamaConfigFromGguf(f));
    expect(e.code).toBe('unsupported-model');
    expect(e.message).toBe(
      'architecture "gemma" is not supported; this app runs Llama 3 (architecture llama)',
    );
  });

  const bad: [string, TinyLlamaOptions, string, RegExp][] = [
    [
      'missing block_count',
      { dropKeys: ['llama.block_count'] },
      'bad-gguf',
      /metadata key "llama.block_count" is missing/,
    ],
    [
      'missing architecture',
      { dropKeys: ['general.architecture'] },
      'bad-gguf',
      /metadata key "general.architecture" is missing/,
    ],
    [
      'embedding_length as a string',
      { kvs: [{ key: 'llama.embedding_length', type: GgufValueType.STRING, value: '64' }] },
      'bad-gguf',
      /metadata "llama.embedding_length" should be a number, got the string "64"/,
    ],
    [
      'zero layers',
      { kvs: [{ key: 'llama.block_count', type: GgufValueType.UINT32, value: 0 }] },
      'bad-gguf',
      /metadata "llama.block_count" is 0; it must be a positive integer/,
    ],
    [
      'heads not a multiple of KV heads',
      { kvs: [{ key: 'llama.attention.head_count_kv', type: GgufValueType.UINT32, value: 3 }] },
      'bad-gguf',
      /head_count 4 is not a multiple of llama.attention.head_count_kv 3/,
    ],
    [
      'negative epsilon',
      { kvs: [{ key: 'llama.attention.layer_norm_rms_epsilon', type: GgufValueType.FLOAT32, value: -1 }] },
      'bad-gguf',
      /layer_norm_rms_epsilon is -1; expected in \(0, 1\)/,
    ],
    [
      'partial RoPE',
      { kvs: [{ key: 'llama.rope.dimension_count', type: GgufValueType.UINT32, value: 8 }] },
      'unsupported-model',
      /llama.rope.dimension_count 8 differs from the head dimension 16; partial RoPE is not supported/,
    ],
    [
      'head_count as a per-layer array',
      {
        kvs: [
          {
            key: 'llama.attention.head_count',
            type: GgufValueType.ARRAY,
            arrayType: GgufValueType.UINT32,
            value: [4, 4],
          },
        ],
      },
      'bad-gguf',
      /metadata "llama.attention.head_count" should be a number, got an array of 2 elements/,
    ],
  ];
  for (const [label, o, code, message] of bad) {
    it(`${label} → ${code}`, async () => {
      const e = await engineError(async () => llamaConfigFromGguf(await read(o)));
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    });
  }
});

describe('validateLlamaTensors', () => {
  it('returns every tensor by role with the documented dims', async () => {
    const f = await read({ dim: 64, nLayers: 2, nHeads: 4, nKvHeads: 2, ffnDim: 96, vocabSize: 128 });
    const t = validateLlamaTensors(f, llamaConfigFromGguf(f));
    expect(t.tokenEmbd.dims).toEqual([64, 128]);
    expect(t.layers).toHaveLength(2);
    expect(t.layers[1].wk).toMatchObject({ name: 'blk.1.attn_k.weight', dims: [64, 32] });
    expect(t.layers[1].wo.dims).toEqual([64, 64]);
    expect(t.layers[0].wDown.dims).toEqual([96, 64]);
    expect(t.layers[0].attnNorm.type).toBe(GgmlType.F32);
  });

  const cases: [string, TinyLlamaOptions, RegExp][] = [
    [
      'a missing tensor',
      { editTensors: (ts) => ts.filter((t) => t.name !== 'blk.1.ffn_down.weight') },
      /tensor blk.1.ffn_down.weight is missing \(expected dims \[96, 64\]\)/,
    ],
    [
      'a missing norm',
      { editTensors: (ts) => ts.filter((t) => t.name !== 'output_norm.weight') },
      /tensor output_norm.weight is missing/,
    ],
    [
      'a transposed matrix',
      {
        editTensors: (ts) =>
          ts.map((t) => (t.name === 'blk.0.ffn_gate.weight' ? { ...t, dims: [t.dims[1], t.dims[0]] } : t)),
      },
      /tensor blk.0.ffn_gate.weight has dims \[96, 64\], expected \[64, 96\]/,
    ],
    [
      'a wrong rope_freqs length',
      {
        editTensors: (ts) => [
          ...ts,
          { name: 'rope_freqs.weight', dims: [16], type: GgmlType.F32, data: new Uint8Array(64) },
        ],
      },
      /tensor rope_freqs.weight has dims \[16\], expected \[8\]/,
    ],
    [
      'more layers than block_count',
      { kvs: [{ key: 'llama.block_count', type: GgufValueType.UINT32, value: 1 }] },
      /tensor blk.1.attn_q.weight exists but llama.block_count is 1/,
    ],
  ];
  for (const [label, o, message] of cases) {
    it(`${label} → unsupported-model`, async () => {
      const f = await read(o);
      const e = await engineError(() => validateLlamaTensors(f, llamaConfigFromGguf(f)));
      expect(e.code).toBe('unsupported-model');
      expect(e.message).toMatch(message);
    });
  }

  // Types llama-quantize writes for the presets this engine does not run (Q2_K, Q3_K_*, IQ1–IQ3,
  // TQ1_0/TQ2_0): each parses, then fails the Llama check naming the type, the tensor and the
  // presets that work.
  for (const type of [
    GgmlType.Q2_K,
    GgmlType.Q3_K,
    16, // iq2_xxs
    17, // iq2_xs
    18, // iq3_xxs
    19, // iq1_s
    21, // iq3_s
    22, // iq2_s
    29, // iq1_m
    34, // tq1_0
    35, // tq2_0
  ]) {
    it(`${typeName(type)} parses, then is refused naming type, tensor and the presets that work`, async () => {
      const f = await read({
        dim: 256,
        nHeads: 4,
        nKvHeads: 2,
        ffnDim: 64,
        nLayers: 4,
        editTensors: (ts) =>
          ts.map((t) =>
            t.name === 'blk.3.ffn_up.weight'
              ? { ...t, type, data: new Uint8Array(tensorBytes(type, 256 * 64)) }
              : t,
          ),
      });
      expect(f.tensors.find((t) => t.name === 'blk.3.ffn_up.weight')?.type).toBe(type);
      const e = await engineError(() => llamaConfigFromGguf(f));
      expect(e.code).toBe('unsupported-model');
      expect(e.message).toMatch(
        new RegExp(
          `^unsupported tensor type ${typeName(type)} in blk.3.ffn_up.weight; this app runs f32, .*q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs.* tensors: use a GGUF of the model made with one of the llama-quantize presets Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, `,
        ),
      );
      for (const name of workingPresets()) expect(e.message).toContain(name);
      expect(e.message).not.toMatch(/Q2_K|Q3_K|IQ[123]|TQ/);
    });
  }
});

describe('a vocabulary with ids that have no token (hostile: 300 rows, 266 tokens)', () => {
  const tokens = (n: number) => ({
    key: 'tokenizer.ggml.tokens',
    type: GgufValueType.ARRAY,
    arrayType: GgufValueType.STRING,
    value: Array.from({ length: n }, (_, i) => `t${i}`),
  });
  const vocabSize = (n: number) => ({ key: 'llama.vocab_size', type: GgufValueType.UINT32, value: n });

  it('llama.vocab_size above the token list is refused at load, naming both numbers', async () => {
    const f = await read({ vocabSize: 300, kvs: [tokens(266)] });
    const e = await engineError(() => llamaConfigFromGguf(f));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/^llama.vocab_size is 300 but tokenizer.ggml.tokens lists 266 tokens/);
  });

  it('llama.vocab_size below the token list is refused too', async () => {
    const e = await engineError(async () => llamaConfigFromGguf(await read({ kvs: [tokens(300)] })));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/^llama.vocab_size is 128 but tokenizer.ggml.tokens lists 300 tokens/);
  });

  it('embedding rows that differ from the token list (no llama.vocab_size) are refused', async () => {
    const f = await read({ vocabSize: 300, kvs: [tokens(266)], dropKeys: ['llama.vocab_size'] });
    const e = await engineError(() => llamaConfigFromGguf(f));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/^tensor token_embd.weight has 300 rows but the vocabulary has 266 entries/);
  });

  it('token_embd rows that differ from llama.vocab_size (no token list) are refused', async () => {
    const e = await engineError(async () => llamaConfigFromGguf(await read({ kvs: [vocabSize(100)] })));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/^tensor token_embd.weight has 128 rows but the vocabulary has 100 entries/);
  });

  it('a head with more rows than the embedding is refused', async () => {
    const f = await read({
      kvs: [tokens(128)],
      editTensors: (ts) =>
        ts.map((t) =>
          t.name === 'output.weight'
            ? { ...t, dims: [64, 160], data: new Uint8Array((64 * 160 * 18) / 32) }
            : t,
        ),
    });
    const e = await engineError(() => llamaConfigFromGguf(f));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/^tensor output.weight has 160 rows but the vocabulary has 128 entries/);
  });
});

describe('validation runs once', () => {
  it('llamaConfigFromGguf checks the tensors; validateLlamaTensors then returns that result', async () => {
    const f = await read({ kvs: [] });
    const c = llamaConfigFromGguf(f);
    const t = validateLlamaTensors(f, c);
    expect(validateLlamaTensors(f, c)).toBe(t);
    expect(Object.isFrozen(c)).toBe(true); // the checked config cannot drift from its result
  });

  it('a config that llamaConfigFromGguf did not make for this file is checked anew', async () => {
    const f = await read();
    const c = llamaConfigFromGguf(f);
    const other = await read();
    expect(validateLlamaTensors(other, c)).not.toBe(validateLlamaTensors(f, c));
    const e = await engineError(() => validateLlamaTensors(f, { ...c, ffnDim: 64 }));
    expect(e.code).toBe('unsupported-model');
    expect(e.message).toMatch(/tensor blk.0.ffn_gate.weight has dims \[64, 96\], expected \[64, 64\]/);
  });
});

describe('getString / getNumber / getArray', () => {
  const file: GgufFile = {
    version: 3,
    metadata: new Map<string, import('./types').GgufValue>([
      ['s', 'text'],
      ['n', 42],
      ['big', 2n ** 60n],
      ['small', 7n],
      ['a', [1, 2]],
    ]),
    tensors: [],
    dataOffset: 0,
    alignment: 32,
  };
  it('returns values, converts exact bigints and uses fallbacks', () => {
    expect(getString(file, 's')).toBe('text');
    expect(getNumber(file, 'n')).toBe(42);
    expect(getNumber(file, 'small')).toBe(7);
    expect(getArray(file, 'a')).toEqual([1, 2]);
    expect(getString(file, 'absent', 'd')).toBe('d');
    expect(getNumber(file, 'absent', 3)).toBe(3);
    expect(getArray(file, 'absent', [])).toEqual([]);
  });
  it('names the key and the actual type when the type is wrong', async () => {
    expect((await engineError(() => getString(file, 'n'))).message).toBe(
      'metadata "n" should be a string, got the number 42',
    );
    expect((await engineError(() => getNumber(file, 's'))).message).toBe(
      'metadata "s" should be a number, got the string "text"',
    );
    expect((await engineError(() => getArray(file, 'n'))).message).toBe(
      'metadata "n" should be an array, got the number 42',
    );
    expect((await engineError(() => getNumber(file, 'big'))).message).toMatch(
      /"big" is 1152921504606846976, beyond/,
    );
    expect((await engineError(() => getString(file, 'absent'))).code).toBe('bad-gguf');
  });
});

const DEMO = DEMO_MODEL_PATH;

describe('the trained demo model', () => {
  it(`parses ${DEMO} (shipped in public/models/) and matches MODEL.md`, async () => {
    const src = new BlobSource(await openAsBlob(DEMO), 'tinystories-llama3-q4_0.gguf');
    expect(src.size).toBe(28_681_440);
    const f = await readGguf(src);
    const c = llamaConfigFromGguf(f);
    expect(c).toMatchObject({
      dim: 256,
      nLayers: 6,
      nHeads: 8,
      nKvHeads: 2,
      headDim: 32,
      ffnDim: 704,
      contextLength: 2048,
      tiedEmbeddings: true,
      vocabSize: 128256,
      ropeTheta: 500000,
    });
    const t = validateLlamaTensors(f, c);
    // q4_0 for every matrix, including the tied embedding; F32 norms (MODEL.md).
    expect(t.tokenEmbd.type).toBe(GgmlType.Q4_0);
    expect(t.layers.every((l) => l.wq.type === GgmlType.Q4_0 && l.ffnNorm.type === GgmlType.F32)).toBe(true);
    // The last tensor ends inside the file; its bytes read back.
    const last = f.tensors.reduce((a, b) => (a.offset > b.offset ? a : b));
    expect(last.offset + last.byteLength).toBeLessThanOrEqual(src.size);
    expect((await readTensorBytes(src, t.outputNorm)).byteLength).toBe(256 * 4);
  });
});
