import { describe, expect, it } from 'vitest';
import { llama3VocabKvs } from '../../../scripts/fixtures/llama3-vocab';
import { EngineError } from '../errors';
import { MemorySource, type RandomAccessSource } from '../source';
import { readGguf, readTensorBytes, readTensorRows } from './reader';
import { engineError, prng, Raw } from './test-helpers';
import { GgmlType, GgufValueType, tensorBytes } from './types';
import { type GgufKv, type GgufTensorIn, writeGguf } from './writer';

/** Counts reads and their sizes, to check the reader never reads the whole file. */
class CountingSource implements RandomAccessSource {
  reads: [number, number][] = [];
  readonly size: number;
  readonly name = 'counting';
  constructor(private readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    this.reads.push([offset, length]);
    if (offset < 0 || length < 0 || offset + length > this.size) throw new RangeError('past the end');
    return this.bytes.slice(offset, offset + length);
  }
  get bytesRead() {
    return this.reads.reduce((s, [, n]) => s + n, 0);
  }
}

const ALL_KVS: GgufKv[] = [
  { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
  { key: 't.u8', type: GgufValueType.UINT8, value: 255 },
  { key: 't.i8', type: GgufValueType.INT8, value: -128 },
  { key: 't.u16', type: GgufValueType.UINT16, value: 65535 },
  { key: 't.i16', type: GgufValueType.INT16, value: -32768 },
  { key: 't.u32', type: GgufValueType.UINT32, value: 4294967295 },
  { key: 't.i32', type: GgufValueType.INT32, value: -2147483648 },
  { key: 't.f32', type: GgufValueType.FLOAT32, value: Math.fround(0.1) },
  { key: 't.bool.true', type: GgufValueType.BOOL, value: true },
  { key: 't.bool.false', type: GgufValueType.BOOL, value: false },
  { key: 't.str', type: GgufValueType.STRING, value: 'héllo ✓ 𝄞 \u0000 end' },
  { key: 't.str.empty', type: GgufValueType.STRING, value: '' },
  { key: 't.u64', type: GgufValueType.UINT64, value: 18446744073709551615n },
  { key: 't.i64', type: GgufValueType.INT64, value: -9223372036854775808n },
  { key: 't.f64', type: GgufValueType.FLOAT64, value: 0.1 },
  { key: 't.arr.u8', type: GgufValueType.ARRAY, arrayType: GgufValueType.UINT8, value: [0, 1, 255] },
  { key: 't.arr.i8', type: GgufValueType.ARRAY, arrayType: GgufValueType.INT8, value: [-1, 127] },
  { key: 't.arr.u16', type: GgufValueType.ARRAY, arrayType: GgufValueType.UINT16, value: [1, 65535] },
  { key: 't.arr.i16', type: GgufValueType.ARRAY, arrayType: GgufValueType.INT16, value: [-2, 300] },
  { key: 't.arr.u32', type: GgufValueType.ARRAY, arrayType: GgufValueType.UINT32, value: [7, 4294967295] },
  { key: 't.arr.i32', type: GgufValueType.ARRAY, arrayType: GgufValueType.INT32, value: [-7, 1 << 30] },
  { key: 't.arr.f32', type: GgufValueType.ARRAY, arrayType: GgufValueType.FLOAT32, value: [1.5, -0.25] },
  { key: 't.arr.bool', type: GgufValueType.ARRAY, arrayType: GgufValueType.BOOL, value: [true, false, true] },
  { key: 't.arr.str', type: GgufValueType.ARRAY, arrayType: GgufValueType.STRING, value: ['a', '', 'ü'] },
  {
    key: 't.arr.u64',
    type: GgufValueType.ARRAY,
    arrayType: GgufValueType.UINT64,
    value: [0n, 2n ** 64n - 1n],
  },
  { key: 't.arr.i64', type: GgufValueType.ARRAY, arrayType: GgufValueType.INT64, value: [-(2n ** 63n), 5n] },
  { key: 't.arr.f64', type: GgufValueType.ARRAY, arrayType: GgufValueType.FLOAT64, value: [Math.PI, -1e300] },
  { key: 't.arr.empty', type: GgufValueType.ARRAY, arrayType: GgufValueType.UINT32, value: [] },
  {
    key: 't.arr.nested.str',
    type: GgufValueType.ARRAY,
    arrayType: GgufValueType.ARRAY,
    value: [['x', 'yz'], ['w']],
  },
  {
    key: 't.arr.nested.i32',
    type: GgufValueType.ARRAY,
    arrayType: GgufValueType.ARRAY,
    value: [[1, -2, 3], [4]],
  },
  { key: 'general.alignment', type: GgufValueType.UINT32, value: 64 },
];

function bytesOf(n: number, seed: number): Uint8Array {
  const r = prng(seed);
  return Uint8Array.from({ length: n }, () => (r() * 256) | 0);
}

function tensorsOfEveryKind(): GgufTensorIn[] {
  const t = (name: string, dims: number[], type: GgmlType, seed: number): GgufTensorIn => ({
    name,
    dims,
    type,
    data: bytesOf(
      tensorBytes(
        type,
        dims.reduce((a, b) => a * b, 1),
      ),
      seed,
    ),
  });
  return [
    t('f32.vec', [5], GgmlType.F32, 1),
    t('f16.mat', [3, 7], GgmlType.F16, 2),
    t('q4_0.mat', [64, 3], GgmlType.Q4_0, 3),
    t('q8_0.3d', [32, 2, 3], GgmlType.Q8_0, 4),
    t('q6_K.4d', [256, 1, 2, 1], GgmlType.Q6_K, 5),
    t('bf16.vec', [9], GgmlType.BF16, 6),
  ];
}

describe('readGguf round trip', () => {
  const tensors = tensorsOfEveryKind();
  const bytes = writeGguf(ALL_KVS, tensors, 64);

  it('reads back every KV type, nested arrays, bigints and f64 exactly', async () => {
    const f = await readGguf(new MemorySource(bytes));
    expect(f.version).toBe(3);
    expect(f.alignment).toBe(64);
    expect(f.fileSize).toBe(bytes.length);
    expect([...f.metadata.keys()]).toEqual(ALL_KVS.map((k) => k.key));
    for (const kv of ALL_KVS) expect(f.metadata.get(kv.key), kv.key).toEqual(kv.value);
    expect(typeof f.metadata.get('t.u64')).toBe('bigint');
    expect(f.metadata.get('t.f64')).toBe(0.1); // not rounded through f32
  });

  it('gives every tensor its dims, type, absolute offset and bytes', async () => {
    const src = new MemorySource(bytes);
    const f = await readGguf(src);
    expect(f.dataOffset % 64).toBe(0);
    expect(f.tensors.map((t) => t.name)).toEqual(tensors.map((t) => t.name));
    for (const [i, t] of f.tensors.entries()) {
      expect(t.dims).toEqual(tensors[i].dims);
      expect(t.type).toBe(tensors[i].type);
      expect(t.offset % 64).toBe(0);
      expect(t.elements).toBe(tensors[i].dims.reduce((a, b) => a * b, 1));
      expect(t.byteLength).toBe(tensors[i].data.length);
      expect(await readTensorBytes(src, t)).toEqual(tensors[i].data);
    }
  });

  it('reads GGUF v2 the same as v3', async () => {
    const v2 = bytes.slice();
    new DataView(v2.buffer).setUint32(4, 2, true);
    const f2 = await readGguf(new MemorySource(v2));
    const f3 = await readGguf(new MemorySource(bytes));
    expect(f2.version).toBe(2);
    expect({ ...f2, version: 3 }).toEqual(f3);
  });

  it('accepts general.alignment written as u64', async () => {
    const b = new Raw().header(1, 1).str('general.alignment').u32(GgufValueType.UINT64).u64(64n);
    b.tensor('w', [8], GgmlType.F32, 0).pad(64).zeros(32);
    const f = await readGguf(new MemorySource(b.result()));
    expect(f.alignment).toBe(64);
    expect(f.dataOffset).toBe(128);
  });

  it('defaults the alignment to 32 and reads a header-only file', async () => {
    const b = writeGguf([{ key: 'a', type: GgufValueType.UINT8, value: 1 }], []);
    const f = await readGguf(new MemorySource(b));
    expect(f.alignment).toBe(32);
    expect(f.tensors).toEqual([]);
    expect(f.dataOffset).toBe(b.length);
    // Without the padding a tensor-less file is still fine.
    const unpadded = new Raw().header(0, 1).str('a').u32(GgufValueType.UINT8).u8(1).result();
    expect((await readGguf(new MemorySource(unpadded))).metadata.get('a')).toBe(1);
  });

  it('reads arrays nested 4 deep and rejects 5', async () => {
    const nest = (depth: number) => {
      const r = new Raw().header(0, 1).str('deep').u32(GgufValueType.ARRAY);
      for (let d = 1; d < depth; d++) r.u32(GgufValueType.ARRAY).u64(1);
      return r.u32(GgufValueType.UINT8).u64(2).u8(7).u8(9).result();
    };
    const f = await readGguf(new MemorySource(nest(4)));
    expect(f.metadata.get('deep')).toEqual([[[[7, 9]]]]);
    const e = await engineError(() => readGguf(new MemorySource(nest(5))));
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(
      /metadata "deep": value\[0\]\[0\]\[0\]\[0\] nests arrays 5 deep; allowed at most 4/,
    );
  });

  it('reads a file with an unsupported (but known) tensor type: inspection works', async () => {
    const b = writeGgufRaw([{ name: 'blk.3.ffn_up.weight', dims: [32, 2], type: GgmlType.Q5_1, bytes: 48 }]);
    const f = await readGguf(new MemorySource(b));
    expect(f.tensors[0]).toMatchObject({ name: 'blk.3.ffn_up.weight', type: GgmlType.Q5_1, byteLength: 48 });
  });
});

/** A file with the given tensor infos (offsets packed in order) and zero data, via the raw builder. */
function writeGgufRaw(
  ts: { name: string; dims: number[]; type: number; bytes: number; offset?: number }[],
  alignment = 32,
): Uint8Array {
  const r = new Raw().header(ts.length, 0);
  let off = 0;
  let end = 0;
  for (const t of ts) {
    const o = t.offset ?? Math.ceil(off / alignment) * alignment;
    r.tensor(t.name, t.dims, t.type, o);
    off = o + t.bytes;
    end = Math.max(end, off);
  }
  return r.pad(alignment).zeros(end).result();
}

describe('the real Llama 3 vocabulary', () => {
  const kvs = llama3VocabKvs({ chatTemplate: true });
  const bytes = writeGguf(
    [{ key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' }, ...kvs],
    [{ name: 'w', dims: [32, 4], type: GgmlType.Q8_0, data: bytesOf(136, 9) }],
  );

  it('parses through small random-access reads, reading little past the header', async () => {
    const src = new CountingSource(bytes);
    const t0 = performance.now();
    const f = await readGguf(src, { initialWindow: 64 << 10 });
    const ms = performance.now() - t0;
    const tokens = f.metadata.get('tokenizer.ggml.tokens') as string[];
    expect(tokens.length).toBe(128256);
    expect(tokens[128000]).toBe('<|begin_of_text|>');
    expect(tokens[0]).toBe('!');
    // Every token and merge decodes exactly (the hand-written UTF-8 fast path included).
    expect(tokens).toEqual(kvs.find((k) => k.key === 'tokenizer.ggml.tokens')!.value);
    expect(f.metadata.get('tokenizer.ggml.merges')).toEqual(
      kvs.find((k) => k.key === 'tokenizer.ggml.merges')!.value,
    );
    expect((f.metadata.get('tokenizer.ggml.merges') as string[])[0]).toBe(
      (kvs.find((k) => k.key === 'tokenizer.ggml.merges')!.value as string[])[0],
    );
    expect(f.metadata.get('tokenizer.chat_template')).toContain('<|start_header_id|>');
    // Reads are contiguous, each at most double the last, and stop within one window of the header.
    let at = 0;
    for (const [off, n] of src.reads) {
      expect(off).toBe(at);
      at += n;
    }
    expect(src.bytesRead).toBeLessThanOrEqual(2 * f.dataOffset + (64 << 10));
    console.log(
      `vocab header ${f.dataOffset} bytes: ${src.reads.length} reads, ${src.bytesRead} bytes read, ${ms.toFixed(0)} ms`,
    );
    expect(ms).toBeLessThan(10_000); // generous: a hang or quadratic re-parse would blow far past it
  });
});

describe('hostile headers', () => {
  const cases: [string, () => Uint8Array, RegExp, string?][] = [
    [
      'bad magic (an HTML page)',
      () => new TextEncoder().encode('<!DOCTYPE html><html>not a model</html>'),
      /not a GGUF file: it starts with bytes 3c 21 44 4f \("<!DO"\), expected "GGUF" \(this looks like an HTML or JSON page/,
    ],
    ['version 1', () => new Raw().header(0, 0, 1).result(), /GGUF version 1 is not supported/],
    [
      'version 99',
      () => new Raw().header(0, 0, 99).result(),
      /unknown GGUF version 99; this reader knows versions 2 and 3/,
    ],
    ['big-endian', () => new Raw().header(0, 0, 0x03000000).result(), /big-endian GGUF/],
    [
      'empty file',
      () => new Uint8Array(0),
      /header: magic needs 4 bytes at offset 0, but the file ends at byte 0/,
    ],
    [
      'tensor count 2^63',
      () => new Raw().header(2n ** 63n, 0).result(),
      /header: tensor count is 9223372036854775808; allowed at most 2\^53 − 1/,
    ],
    [
      'tensor count beyond the bytes left',
      () => new Raw().header(1000, 0).zeros(100).result(),
      /header: tensor count is 1000, which needs at least 32000 bytes, but only 108 bytes remain in the file/,
    ],
    [
      'metadata count beyond the bytes left',
      () => new Raw().header(0, 2n ** 40n).result(),
      /header: metadata count is 1099511627776, which needs at least 14293651161088 bytes, but only 0 bytes remain/,
    ],
    [
      'key length 2^32',
      () =>
        new Raw()
          .header(0, 1)
          .u64(2 ** 32)
          .zeros(20)
          .result(),
      /metadata entry 0 of 1: key needs 4294967296 bytes at offset 32, but the file ends at byte 52 \(20 bytes left\)/,
    ],
    [
      'string value longer than the file',
      () => new Raw().header(0, 1).str('name').u32(GgufValueType.STRING).u64(1000).zeros(8).result(),
      /metadata "name": value needs 1000 bytes at offset \d+, but the file ends/,
    ],
    [
      'array count beyond the bytes left',
      () =>
        new Raw()
          .header(0, 1)
          .str('tokenizer.ggml.tokens')
          .u32(GgufValueType.ARRAY)
          .u32(GgufValueType.STRING)
          .u64(1e6)
          .result(),
      /metadata "tokenizer.ggml.tokens": value count is 1000000, which needs at least 8000000 bytes, but only 0 bytes remain/,
    ],
    [
      'array count above maxArrayLength',
      () =>
        new Raw()
          .header(0, 1)
          .str('a')
          .u32(GgufValueType.ARRAY)
          .u32(GgufValueType.UINT8)
          .u64(2 ** 23)
          .result(),
      /metadata "a": value count is 8388608; allowed at most 4194304 elements/,
    ],
    [
      'unknown KV value type',
      () => new Raw().header(0, 1).str('k').u32(13).u32(0).result(),
      /metadata "k": value has unknown value type 13; allowed 0–12 \(uint8, int8/,
    ],
    [
      'unknown array element type',
      () => new Raw().header(0, 1).str('k').u32(GgufValueType.ARRAY).u32(99).u64(1).result(),
      /metadata "k": value has unknown array element type 99; allowed 0–12/,
    ],
    [
      'bool byte 2',
      () => new Raw().header(0, 1).str('flag').u32(GgufValueType.BOOL).u8(2).result(),
      /metadata "flag": value is a bool with byte 2; allowed 0 or 1/,
    ],
    [
      'duplicate KV key',
      () => new Raw().header(0, 2).kvU32('a.b', 1).kvU32('a.b', 2).result(),
      /metadata key "a.b" appears twice \(entries 0 and 1\); keys must be unique/,
    ],
    [
      'n_dims 5',
      () => new Raw().header(1, 0).tensor('t', [1, 1, 1, 1, 1], 0, 0).pad(32).zeros(4).result(),
      /tensor "t": n_dims is 5; allowed 1–4/,
    ],
    [
      'n_dims 0',
      () => new Raw().header(1, 0).tensor('t', [], 0, 0).pad(32).zeros(4).result(),
      /tensor "t": n_dims is 0/,
    ],
    [
      'a zero dim',
      () => new Raw().header(1, 0).tensor('t', [4, 0], 0, 0).pad(32).result(),
      /tensor "t": dims\[1\] is 0; every dimension must be at least 1/,
    ],
    [
      'dims product over 2^53',
      () =>
        new Raw()
          .header(1, 0)
          .tensor('t', [2 ** 30, 2 ** 30], 0, 0)
          .pad(32)
          .result(),
      /tensor "t": element count of dims \[1073741824, 1073741824…\] exceeds 2\^53 − 1/,
    ],
    [
      'a dim of 2^63 (negative as int64)',
      () => new Raw().header(1, 0).tensor('t', [-1n], 0, 0).pad(32).result(),
      /tensor "t": dims\[0\] is 18446744073709551615; allowed at most 2\^53 − 1/,
    ],
    [
      'byte size not a whole number of blocks',
      () =>
        new Raw()
          .header(1, 0)
          .tensor('blk.0.attn_q.weight', [33, 2], GgmlType.Q4_0, 0)
          .pad(32)
          .zeros(64)
          .result(),
      /tensor "blk.0.attn_q.weight": dims\[0\] is 33, not a multiple of the q4_0 block size 32/,
    ],
    [
      'offset past the end of the file',
      () => writeGgufRaw([{ name: 'w', dims: [8], type: 0, bytes: 32, offset: 64 }]).subarray(0, -1),
      /tensor "w": data \[\d+, \d+\) \(32 bytes of f32\) runs past the end of the file at \d+ bytes/,
    ],
    [
      'data cut short',
      () => writeGgufRaw([{ name: 'w', dims: [16], type: 0, bytes: 64 }]).subarray(0, -1),
      /tensor "w": data .* runs past the end of the file/,
    ],
    [
      'misaligned offset',
      () => writeGgufRaw([{ name: 'w', dims: [8], type: 0, bytes: 32, offset: 4 }]),
      /tensor "w": data offset 4 is not a multiple of the alignment 32/,
    ],
    [
      'overlapping tensors',
      () =>
        writeGgufRaw([
          { name: 'a', dims: [16], type: 0, bytes: 64, offset: 0 },
          { name: 'b', dims: [8], type: 0, bytes: 32, offset: 32 },
        ]),
      /tensor "a" \[\d+, \d+\) overlaps tensor "b"/,
    ],
    [
      'duplicate tensor names',
      () =>
        writeGgufRaw([
          { name: 'w', dims: [8], type: 0, bytes: 32 },
          { name: 'w', dims: [8], type: 0, bytes: 32 },
        ]),
      /tensor name "w" appears twice \(tensor infos 0 and 1\)/,
    ],
    [
      'alignment 0',
      () => new Raw().header(0, 1).kvU32('general.alignment', 0).result(),
      /"general.alignment" is 0; allowed a power of two from 1 to 1048576/,
    ],
    [
      'alignment 3',
      () => new Raw().header(0, 1).kvU32('general.alignment', 3).result(),
      /"general.alignment" is 3; allowed a power of two/,
    ],
    [
      'alignment 2^30',
      () =>
        new Raw()
          .header(0, 1)
          .kvU32('general.alignment', 2 ** 30)
          .result(),
      /"general.alignment" is 1073741824; allowed a power of two from 1 to 1048576/,
    ],
    [
      'alignment a u64 of 2^40',
      () =>
        new Raw()
          .header(0, 1)
          .str('general.alignment')
          .u32(GgufValueType.UINT64)
          .u64(2n ** 40n)
          .result(),
      /"general.alignment" is 1099511627776; allowed a power of two from 1 to 1048576/,
    ],
    [
      'alignment a string',
      () => new Raw().header(0, 1).kvStr('general.alignment', '32').result(),
      /"general.alignment" must be an integer, got the string "32"/,
    ],
    [
      'unknown tensor type id',
      () => writeGgufRaw([{ name: 'w', dims: [8], type: 77, bytes: 32 }]),
      /tensor "w": unknown tensor type id 77 \(known ggml types: 0 f32, 1 f16, 2 q4_0/,
      'unsupported-model',
    ],
  ];

  for (const [label, make, message, code = 'bad-gguf'] of cases) {
    it(`${label} → ${code}`, async () => {
      const b = make();
      const e = await engineError(() => readGguf(new MemorySource(b)));
      expect(e.code).toBe(code);
      expect(e.message).toMatch(message);
    });
  }

  it('every proper prefix of a valid file is a bad-gguf error', async () => {
    const b = writeGguf(
      [
        { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
        { key: 'arr', type: GgufValueType.ARRAY, arrayType: GgufValueType.STRING, value: ['x', 'yy'] },
      ],
      [{ name: 'w', dims: [8], type: GgmlType.F32, data: bytesOf(32, 3) }],
    );
    await readGguf(new MemorySource(b)); // the whole file is fine
    for (let n = 0; n < b.length; n++) {
      const e = await engineError(() => readGguf(new MemorySource(b.subarray(0, n))));
      expect(e.code, `prefix ${n}`).toBe('bad-gguf');
    }
  });

  it('readTensorBytes refuses a range outside the source', async () => {
    const b = writeGgufRaw([{ name: 'w', dims: [8], type: 0, bytes: 32 }]);
    const f = await readGguf(new MemorySource(b));
    const e = await engineError(() =>
      readTensorBytes(new MemorySource(b.subarray(0, 40), 'short.gguf'), f.tensors[0]),
    );
    expect(e.code).toBe('bad-gguf');
    expect(e.message).toMatch(/tensor "w": bytes \[\d+, \d+\) lie outside short.gguf \(40 bytes\)/);
  });

  it('readTensorRows gives a slice of rows, checks the row range and the source', async () => {
    const b = writeGgufRaw([{ name: 'm', dims: [8, 5], type: 0, bytes: 160 }]); // f32 [5 rows, 8 cols]
    const f = await readGguf(new MemorySource(b));
    const t = f.tensors[0];
    const whole = await readTensorBytes(new MemorySource(b), t);
    expect(await readTensorRows(new MemorySource(b), t, 1, 3)).toEqual(whole.subarray(32, 128));
    expect(await readTensorRows(new MemorySource(b), t, 4, 1)).toEqual(whole.subarray(128, 160));
    await expect(readTensorRows(new MemorySource(b), t, 3, 3)).rejects.toThrow(
      /rows \[3, 6\) outside its 5 rows/,
    );
    const e = await engineError(() =>
      readTensorRows(new MemorySource(b.subarray(0, 40), 'short.gguf'), t, 0, 1),
    );
    expect(e.message).toMatch(/lie outside short.gguf/);
  });

  it('rejects bad options as bad-argument', async () => {
    const e = await engineError(() => readGguf(new MemorySource(new Uint8Array(4)), { initialWindow: 0 }));
    expect(e).toBeInstanceOf(EngineError);
    expect(e.code).toBe('bad-argument');
  });
});
