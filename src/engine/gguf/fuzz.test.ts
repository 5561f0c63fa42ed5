/**
 * Fuzz: mutated and truncated GGUF headers, from a seeded PRNG so every failure replays. Each case
 * must parse (and then satisfy the reader's invariants) or throw EngineError 'bad-gguf' /
 * 'unsupported-model': never another error, never a hang. The Llama checks get the same treatment.
 */
import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import { MemorySource } from '../source';
import { llamaConfigFromGguf, validateLlamaTensors } from './config';
import { readGguf } from './reader';
import { prng, tinyLlama } from './test-helpers';
import { GgmlType, type GgufFile, GgufValueType } from './types';
import { writeGguf } from './writer';

const ALLOWED = new Set(['bad-gguf', 'unsupported-model']);
const CASES = 1200;
const PER_CASE_MS = 2000;

function bases(): Uint8Array[] {
  const model = tinyLlama({
    dim: 32,
    nLayers: 1,
    nHeads: 2,
    nKvHeads: 1,
    ffnDim: 64,
    vocabSize: 16,
    kvs: [
      {
        key: 'tokenizer.ggml.tokens',
        type: GgufValueType.ARRAY,
        arrayType: GgufValueType.STRING,
        value: Array.from({ length: 16 }, (_, i) => `tok${i}`),
      },
      {
        key: 'tokenizer.ggml.scores',
        type: GgufValueType.ARRAY,
        arrayType: GgufValueType.FLOAT32,
        value: Array.from({ length: 16 }, (_, i) => -i),
      },
    ],
  });
  const kinds = writeGguf(
    [
      { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
      { key: 'a.u64', type: GgufValueType.UINT64, value: 123n },
      { key: 'a.i64', type: GgufValueType.INT64, value: -5n },
      { key: 'a.f64', type: GgufValueType.FLOAT64, value: 2.5 },
      { key: 'a.bool', type: GgufValueType.BOOL, value: true },
      {
        key: 'a.nested',
        type: GgufValueType.ARRAY,
        arrayType: GgufValueType.ARRAY,
        value: [['p', 'q'], ['r']],
      },
      { key: 'a.i16s', type: GgufValueType.ARRAY, arrayType: GgufValueType.INT16, value: [1, -2, 3] },
      { key: 'general.alignment', type: GgufValueType.UINT32, value: 16 },
    ],
    [
      { name: 'x', dims: [4, 2], type: GgmlType.F32, data: new Uint8Array(32) },
      { name: 'y', dims: [32], type: GgmlType.Q8_0, data: new Uint8Array(34) },
    ],
    16,
  );
  return [model, kinds];
}

/** Values that break lengths and counts: zero, one, just past small limits, 2^32, 2^53, 2^63, all ones. */
const HOSTILE_U64 = [
  0n,
  1n,
  2n,
  255n,
  2n ** 31n,
  2n ** 32n,
  2n ** 32n + 1n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n,
  2n ** 64n - 1n,
];

function mutate(base: Uint8Array, r: () => number): { bytes: Uint8Array; how: string } {
  const headerEnd = Math.min(base.length, headerLength(base));
  let b = base.slice();
  const at = () => Math.floor(r() * Math.min(headerEnd, b.length));
  const hows: string[] = [];
  const steps = 1 + Math.floor(r() * 3);
  for (let s = 0; s < steps; s++) {
    const kind = Math.floor(r() * 6);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (kind === 0) {
      // flip a few bytes
      const n = 1 + Math.floor(r() * 4);
      for (let i = 0; i < n; i++) b[at()] = Math.floor(r() * 256);
      hows.push(`flip ${n}`);
    } else if (kind === 1 && b.length >= 8) {
      // a hostile u64 where a length, count, dim or offset may live
      const o = Math.min(at(), b.length - 8);
      const v = HOSTILE_U64[Math.floor(r() * HOSTILE_U64.length)];
      dv.setBigUint64(o, v, true);
      hows.push(`u64@${o}=${v}`);
    } else if (kind === 2 && b.length >= 4) {
      // a hostile u32 where a type, n_dims or small value may live
      const o = Math.min(at(), b.length - 4);
      const v = [0, 1, 4, 5, 9, 12, 13, 31, 77, 0xffffffff][Math.floor(r() * 10)];
      dv.setUint32(o, v, true);
      hows.push(`u32@${o}=${v}`);
    } else if (kind === 3) {
      // the counts in the fixed header
      const o = r() < 0.5 ? 8 : 16;
      if (b.length >= o + 8) dv.setBigUint64(o, BigInt(Math.floor(r() * 64)), true);
      hows.push(`count@${o}`);
    } else if (kind === 4) {
      // insert or delete bytes: everything after shifts
      const o = at();
      const n = 1 + Math.floor(r() * 9);
      if (r() < 0.5) {
        const c = new Uint8Array(b.length + n);
        c.set(b.subarray(0, o));
        c.set(b.subarray(o), o + n);
        b = c;
        hows.push(`insert ${n}@${o}`);
      } else {
        b = Uint8Array.from([...b.subarray(0, o), ...b.subarray(o + n)]);
        hows.push(`delete ${n}@${o}`);
      }
    } else {
      // truncate anywhere, mostly inside the header
      const n = r() < 0.8 ? at() : Math.floor(r() * b.length);
      b = b.subarray(0, n);
      hows.push(`truncate ${n}`);
    }
  }
  return { bytes: b, how: hows.join(', ') };
}

/** Where the tensor data starts in a valid base file (the mutations aim at the header). */
function headerLength(b: Uint8Array): number {
  // The base files are valid and small, so parsing them synchronously-enough is fine.
  return headerLengths.get(b) ?? b.length;
}
const headerLengths = new WeakMap<Uint8Array, number>();

/** What a file that parsed must satisfy. */
function checkInvariants(f: GgufFile, size: number | undefined) {
  expect(f.alignment & (f.alignment - 1)).toBe(0);
  expect(f.dataOffset % f.alignment).toBe(0);
  const sorted = [...f.tensors].sort((a, b) => a.offset - b.offset);
  for (const [i, t] of sorted.entries()) {
    expect(t.dims.length).toBeGreaterThanOrEqual(1);
    expect(t.dims.length).toBeLessThanOrEqual(4);
    expect(Number.isSafeInteger(t.elements)).toBe(true);
    expect(t.offset).toBeGreaterThanOrEqual(f.dataOffset);
    expect((t.offset - f.dataOffset) % f.alignment).toBe(0);
    if (size !== undefined) expect(t.offset + t.byteLength).toBeLessThanOrEqual(size);
    if (i > 0) expect(sorted[i - 1].offset + sorted[i - 1].byteLength).toBeLessThanOrEqual(t.offset);
  }
}

async function expectEngineOutcome(label: string, f: () => Promise<void>) {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      f(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`hang: ${label} took over ${PER_CASE_MS} ms`)),
          PER_CASE_MS,
        );
      }),
    ]);
  } catch (e) {
    if (!(e instanceof EngineError) || !ALLOWED.has(e.code)) {
      throw new Error(`${label}: expected EngineError bad-gguf/unsupported-model, got ${String(e)}`, {
        cause: e,
      });
    }
  } finally {
    clearTimeout(timer);
  }
  // A synchronous loop cannot be interrupted by the timer above; its time is checked here.
  expect(performance.now() - t0, `${label} time`).toBeLessThan(PER_CASE_MS);
}

describe('fuzz: mutated and truncated headers', () => {
  it(`${CASES} random-access cases parse or fail with a typed error`, async () => {
    const files = bases();
    for (const b of files) headerLengths.set(b, (await readGguf(new MemorySource(b))).dataOffset);
    const r = prng(20261127);
    let parsed = 0;
    const codes = new Map<string, number>();
    for (let i = 0; i < CASES; i++) {
      const base = files[i % files.length];
      const { bytes, how } = mutate(base, r);
      const label = `case ${i} (base ${i % files.length}: ${how})`;
      await expectEngineOutcome(label, async () => {
        let f: GgufFile;
        try {
          f = await readGguf(new MemorySource(bytes));
        } catch (e) {
          if (e instanceof EngineError) codes.set(e.code, (codes.get(e.code) ?? 0) + 1);
          throw e;
        }
        parsed++;
        checkInvariants(f, bytes.length);
        const c = llamaConfigFromGguf(f);
        validateLlamaTensors(f, c);
      });
    }
    console.log(
      `fuzz: ${CASES} cases, ${parsed} parsed, errors by code: ${JSON.stringify(Object.fromEntries(codes))}`,
    );
    // The mutations must actually exercise both outcomes, or the fuzz proves nothing.
    expect(parsed).toBeGreaterThan(CASES * 0.02);
    expect(codes.get('bad-gguf') ?? 0).toBeGreaterThan(CASES * 0.5);
  });
});
