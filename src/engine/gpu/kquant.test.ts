/**
 * q4_K and q5_K on the GPU (Dawn, SwiftShader here): the repack keeps every value, the GPU takes the
 * file's bytes, and each linear / embedding kernel's own self-check (every epilogue, both paths,
 * awkward sizes, poisoned output) passes and catches a deliberate bug.
 */
import { describe, expect, it } from 'vitest';
import { GgmlType } from '../gguf/types';
import { dequantize, f16ToF32, kScaleMin } from '../reference/ops';
import { checkEmbedding, EMBEDDING_KERNELS } from './embedding';
import { KernelRegistry } from './check/registry';
import {
  createStorage,
  createTestContext,
  createUniform,
  makeRng,
  poison,
  randomFloats,
  readF32,
  relError,
  withValidation,
} from './check/testing';
import { LINEAR_KERNELS, Linear, linearKernelName, randomWeight, referenceLinear } from './linear';
import { partTypes, repackRows, uploadConcatenated, uploadWeight } from './weights';

const K_TYPES = [GgmlType.Q4_K, GgmlType.Q5_K];

function spec(kernels: typeof LINEAR_KERNELS, name: string) {
  const s = kernels.find((k) => k.name === name);
  if (!s) throw new Error(`no kernel ${name}`);
  return s;
}

describe('q4_K / q5_K repack (GPU layout decoded on the CPU)', () => {
  for (const type of K_TYPES) {
    it(`${GgmlType[type]}: every value survives, and the arrays add up to the file's bytes`, () => {
      const rows = 3;
      const units = 16; // 512 columns: two file blocks per row
      const { bytes, values } = randomWeight(type, rows, 32 * units, makeRng(7 + type));
      const { quants, aux } = repackRows(type, type, bytes, rows, 32 * units);
      const five = type === GgmlType.Q5_K;
      const [hiBytes, sm, dmBytes] = five ? aux : [undefined, aux[0], aux[1]];
      const total = quants.byteLength + aux.reduce((s, a) => s + a.byteLength, 0);
      expect(total).toBe(bytes.byteLength);
      const hi = hiBytes && new Uint32Array(hiBytes.buffer, hiBytes.byteOffset, hiBytes.byteLength / 4);
      const dm = new Uint16Array(dmBytes.buffer, dmBytes.byteOffset, dmBytes.byteLength / 2);
      const out = new Float32Array(rows * units * 32);
      for (let idx = 0; idx < rows * units; idx++) {
        const blk = idx >> 3; // units per row are a multiple of 8: blocks are row-major too
        const [sc, m] = kScaleMin(sm, 12 * blk, idx % 8);
        const d = f16ToF32(dm[2 * blk]) * sc;
        const min = f16ToF32(dm[2 * blk + 1]) * m;
        for (let e = 0; e < 32; e++) {
          const lo = (quants[idx * 16 + (e % 16)] >> (e < 16 ? 0 : 4)) & 0xf;
          const [h, i, j] = [e >> 4, (e >> 2) & 3, e & 3];
          const top = hi ? (hi[idx] >>> (8 * j + 4 * h + i)) & 1 : 0;
          out[idx * 32 + e] = d * (lo | (top << 4)) - min;
        }
      }
      expect(out).toEqual(values);
      expect(values).toEqual(dequantize(type, bytes, rows * units * 32));
    });
  }

  it('GPU bytes are the file bytes (≤ 1.01×) for a 4096-wide row and a split tensor', async () => {
    const { device } = await createTestContext();
    const ctx = { device, limits: device.limits };
    const rng = makeRng(3);
    for (const type of K_TYPES) {
      for (const [rows, cols, parts] of [
        [24, 4096, 1],
        [37, 4096, 3],
      ] as const) {
        const { bytes } = randomWeight(type, rows, cols, rng);
        const w = uploadWeight(ctx, 'kq', type, bytes, rows, cols, {
          maxBindingSize: parts > 1 ? Math.ceil(bytes.byteLength / parts) : undefined,
        });
        if (parts > 1) expect(w.parts.length).toBeGreaterThan(1);
        // The only extra: each part's quants section padded to 256 bytes.
        expect(w.bytes - bytes.byteLength).toBeLessThan(256 * w.parts.length);
        expect(w.bytes).toBeLessThanOrEqual(1.01 * bytes.byteLength + 272 * w.parts.length);
        for (const p of w.parts) p.buffer.destroy();
      }
    }
  });
});

describe('q4_K / q5_K kernels (self-checks: every epilogue, both paths, awkward sizes, poisoned output)', () => {
  for (const type of K_TYPES) {
    const name = linearKernelName(type);
    it(name, async () => {
      const { device } = await createTestContext();
      const s = spec(LINEAR_KERNELS, name);
      const r = await withValidation(device, () => s.check(device, s.source));
      expect(r.ok, r.detail).toBe(true);
      // Within 1e-4 apart from the RoPE + KV cases, whose K/V outputs are f16: a last-bit f32
      // difference may flip one f16 rounding (2^-11 ≈ 4.9e-4 relative; the check's slack allows it).
      expect(r.maxRelError).toBeLessThan(5e-4);
    });
    it(`embedding_${name.slice('linear_'.length)}`, async () => {
      const { device } = await createTestContext();
      const s = spec(EMBEDDING_KERNELS, `embedding_${name.slice('linear_'.length)}`);
      const r = await withValidation(device, () => s.check(device, s.source));
      expect(r.ok, r.detail).toBe(true);
    });
  }
});

describe('the self-checks catch wrong q4_K / q5_K kernels', () => {
  // [kernel, what, from, to, the path that must fail]
  const mutants: [string, string, string, string, RegExp][] = [
    // The min term dropped from the integer dot (weights lose their offset).
    ['linear_q4_k', 'min term dropped', '- s1.m * xs;', ';', /path=matvec/],
    // Sub-blocks 4..7 read their top scale bits from the min's byte (get_scale_min_k4 mixed up).
    [
      'linear_q5_k',
      'scale high bits from the wrong byte',
      'sc = ((w2 >> s) & 0xfu) | (((w0 >> (s + 6u)) & 3u) << 4u);',
      'sc = ((w2 >> s) & 0xfu) | (((w1 >> (s + 6u)) & 3u) << 4u);',
      /path=/,
    ],
    // q5_K's 5th bit of the second 16 elements read from the first half's bits.
    [
      'linear_q5_k',
      '5th bit of the wrong half',
      'return ((lo[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> (4u * h + i)) & 0x01010101u) << 4u);',
      'return ((lo[i] >> (4u * h)) & 0x0f0f0f0fu) | (((hi >> i) & 0x01010101u) << 4u);',
      /path=/,
    ],
    // The prefill GEMM's half-unit decoders: the min added instead of subtracted, the fifth bits
    // of one word from the other half.
    [
      'linear_q4_k',
      'GEMM min with the wrong sign',
      'return vec2<f32>(s.d, -s.m);',
      'return vec2<f32>(s.d, s.m);',
      /path=matmul/,
    ],
    [
      'linear_q5_k',
      'GEMM fifth bits of the wrong half',
      'q5_bytes(lo, hi, h, 2u)',
      'q5_bytes(lo, hi, 1u - h, 2u)',
      /path=matmul/,
    ],
  ];
  for (const [name, what, from, to, path] of mutants) {
    it(`${name}: ${what}`, async () => {
      const { device } = await createTestContext();
      const s = spec(LINEAR_KERNELS, name);
      const broken = s.source.replaceAll(from, to);
      expect(broken).not.toBe(s.source);
      const r = await withValidation(device, () => s.check(device, broken));
      expect(r.ok, r.detail).toBe(false);
      expect(r.detail).toMatch(path);
    });
  }

  it('embedding_q4_k with the dmin read as d is rejected', async () => {
    const { device } = await createTestContext();
    const s = spec(EMBEDDING_KERNELS, 'embedding_q4_k');
    const broken = s.source.replace(
      'return KScale(dm.x * f32(sc), dm.y * f32(m));',
      'return KScale(dm.x * f32(sc), dm.x * f32(m));',
    );
    expect(broken).not.toBe(s.source);
    const r = await checkEmbedding(device, broken, GgmlType.Q4_K);
    expect(r.ok).toBe(false);
  });
});

describe('a llama-quantize mix in one concatenated weight (Q4_K_M: q4_K q and k, q6_K v)', () => {
  it('each type gets parts of its own and its own kernel; both paths match the reference', async () => {
    const ctx = await createTestContext();
    const { device } = ctx;
    const rng = makeRng(5);
    const cols = 256;
    const pieces = [
      { type: GgmlType.Q4_K, rows: 6 },
      { type: GgmlType.Q4_K, rows: 3 },
      { type: GgmlType.Q6_K, rows: 5 },
    ].map((p) => ({ ...p, ...randomWeight(p.type, p.rows, cols, rng) }));
    const rows = pieces.reduce((s, p) => s + p.rows, 0);
    const registry = new KernelRegistry();
    for (const k of LINEAR_KERNELS) registry.register(k);
    const W = new Float32Array(rows * cols);
    let at = 0;
    for (const p of pieces) {
      W.set(p.values, at);
      at += p.values.length;
    }
    const w = uploadConcatenated(ctx, 'attn_qkv', pieces, cols);
    expect(w.rows).toBe(rows);
    expect(partTypes(w)).toEqual([GgmlType.Q4_K, GgmlType.Q6_K]);
    expect(w.parts.map((p) => [p.rowStart, p.rows])).toEqual([
      [0, 9],
      [9, 5],
    ]);
    for (const tokens of [2, 9]) {
      const x = randomFloats(tokens * cols, rng);
      const y = createStorage(device, tokens * rows * 4, 'y');
      poison(device, y);
      const params = createUniform(device, [tokens], 'params');
      const linear = new Linear(ctx, registry, w, {
        x: createStorage(device, x, 'x'),
        y,
        params,
        maxTokens: tokens,
      });
      const got = await withValidation(device, async () => {
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        linear.encode(pass, tokens); // 2: the integer mat-vec; 9: the mat-mat
        pass.end();
        device.queue.submit([enc.finish()]);
        return readF32(device, y);
      });
      const ref = referenceLinear(W, x, new Float32Array(tokens * rows), rows, cols, tokens, 'store', true);
      expect(relError(got, ref).maxRelError, `${tokens} tokens`).toBeLessThan(1e-4);
    }
  });
});
