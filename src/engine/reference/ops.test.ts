import { describe, expect, it } from 'vitest';
import { GgmlType } from '../gguf/types';
import {
  argmax,
  attention,
  bf16ToF32,
  dequantize,
  f16ToF32,
  f32ToF16,
  dequantizeActivationsQ8,
  matVec,
  matVecQ8,
  quantizeActivationsQ8,
  rmsNorm,
  rope,
  roundToF16InPlace,
  silu,
  softmaxInPlace,
  swiglu,
} from './ops';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++)
    expect(Math.abs(a[i] - b[i]), `index ${i}: ${a[i]} vs ${b[i]}`).toBeLessThan(tol);
};

describe('f16 conversions', () => {
  it('known values, round-to-nearest-even, overflow, subnormals, signed zero, inf, NaN', () => {
    const cases: [number, number][] = [
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff], // largest finite half
      [65519, 0x7bff], // just below the rounding midpoint to inf
      [65520, 0x7c00], // midpoint rounds to even → inf
      [1e6, 0x7c00],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
      [-0, 0x8000],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // half of it: tie → even (0)
      [1.5 * 2 ** -25, 0x0001], // above the tie → 1
      [3 * 2 ** -25, 0x0002], // 1.5 ulp: tie → even (2)
      [1 + 2 ** -11, 0x3c00], // tie between 1 and 1 + 2^-10 → even (1)
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02 → even
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // just above the tie
      [0.1, 0x2e66],
    ];
    for (const [v, h] of cases) expect(f32ToF16(v), `f32ToF16(${v})`).toBe(h);
    expect(f32ToF16(Number.NaN) & 0x7c00).toBe(0x7c00);
    expect(f32ToF16(Number.NaN) & 0x3ff).not.toBe(0);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f16ToF32(0x03ff)).toBe(1023 * 2 ** -24);
    expect(f16ToF32(0x7bff)).toBe(65504);
    expect(f16ToF32(0xfc00)).toBe(Number.NEGATIVE_INFINITY);
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
    expect(Object.is(f16ToF32(0x8000), -0)).toBe(true);
  });

  it('every finite half survives f16 → f32 → f16 exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue; // NaN payloads
      if (f32ToF16(f16ToF32(h)) !== h) throw new Error(`half 0x${h.toString(16)} does not round-trip`);
    }
  });

  it('roundToF16InPlace keeps what an f16 KV cache holds (nearest even, overflow to ±Inf)', () => {
    const x = Float32Array.from([0.1, 1 + 2 ** -11, -(1 + 3 * 2 ** -11), 65519, 65520, -1e6, 2 ** -26]);
    expect(roundToF16InPlace(x)).toBe(x);
    expect(Array.from(x)).toEqual([
      f16ToF32(0x2e66),
      1,
      -(1 + 2 * 2 ** -10),
      65504,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      0,
    ]);
  });

  it('bf16ToF32 is the top half of an f32', () => {
    expect(bf16ToF32(0x3f80)).toBe(1);
    expect(bf16ToF32(0xc040)).toBe(-3);
    expect(bf16ToF32(0x7f80)).toBe(Number.POSITIVE_INFINITY);
    expect(bf16ToF32(0x0001)).toBe(2 ** -133);
  });
});

describe('dequantize hand-built blocks', () => {
  it('q8_0: q · d', () => {
    const b = new Uint8Array(34);
    const v = new DataView(b.buffer);
    v.setUint16(0, f32ToF16(0.25), true);
    v.setInt8(2, -128);
    v.setInt8(3, 127);
    v.setInt8(33, -1);
    const y = dequantize(GgmlType.Q8_0, b, 32);
    expect([y[0], y[1], y[2], y[31]]).toEqual([-32, 31.75, 0, -0.25]);
  });

  it('q6_K: ql low/high nibbles, qh 2-bit pairs and per-16 int8 scales land where ggml puts them', () => {
    const b = new Uint8Array(210);
    const v = new DataView(b.buffer);
    v.setUint16(208, f32ToF16(1), true); // d
    for (let i = 0; i < 16; i++) v.setInt8(192 + i, 1);
    v.setInt8(192 + 2, 2); // scale of elements 32..47
    v.setInt8(192 + 8, -1); // scale of elements 128..143 (second half)
    b[0] = 0x21; // element 0 low nibble 1; element 64 low nibble 2
    b[32] = 0x30; // element 32 low nibble 0; element 96 low nibble 3
    b[128] = 0b11100100; // high bits: el 0 → 0, el 32 → 1, el 64 → 2, el 96 → 3
    b[64] = 0x05; // second half: element 128 low nibble 5
    b[128 + 32] = 0b00000011; // second half: element 128 high bits 3
    const y = dequantize(GgmlType.Q6_K, b, 256);
    expect(y[0]).toBe(1 - 32); // (1 | 0 << 4) − 32
    expect(y[32]).toBe(2 * (16 - 32)); // (0 | 1 << 4) − 32, scale 2
    expect(y[64]).toBe(2 + 32 - 32); // (2 | 2 << 4) − 32
    expect(y[96]).toBe(3 + 48 - 32); // (3 | 3 << 4) − 32
    expect(y[1]).toBe(-32);
    expect(y[128]).toBe(-1 * (5 + 48 - 32)); // scale −1
    expect(y[255]).toBe(-32);
  });

  it('rejects types it cannot read', () => {
    expect(() => dequantize(GgmlType.Q2_K, new Uint8Array(84), 256)).toThrow(/q2_K/);
  });
});

describe('layer math', () => {
  it('rmsNorm', () => {
    // mean(x²) = (9 + 16) / 2 = 12.5
    const y = rmsNorm(new Float32Array([3, -4]), new Float32Array([1, 2]), 0);
    close(y, [3 / Math.sqrt(12.5), -8 / Math.sqrt(12.5)]);
    const z = rmsNorm(new Float32Array([0, 0]), new Float32Array([1, 1]), 1e-5);
    close(z, [0, 0]);
  });

  it('matVec reads W as row-major [R, C]', () => {
    // W = [[1, 2, 3], [4, 5, 6]]
    const y = matVec(new Float32Array([1, 2, 3, 4, 5, 6]), new Float32Array([1, 0, -1]), 2, 3);
    close(y, [-2, -2]);
  });

  it('rope at position 0 is the identity', () => {
    const x = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const y = x.slice();
    rope(y, 2, 4, 0, 500000);
    close(y, x);
  });

  it('rope uses NORM pairing: position 1 rotates (x0, x1) by 1 radian and pair i by θ^(−2i/Dh)', () => {
    const x = new Float32Array([1, 0, 0, 1, 1, 0, 0, 1]); // 2 heads of 4: pairs (x0,x1), (x2,x3)
    rope(x, 2, 4, 1, 10000);
    const f1 = 10000 ** (-2 / 4); // pair 1's frequency
    close(x, [
      Math.cos(1),
      Math.sin(1),
      -Math.sin(f1),
      Math.cos(f1),
      Math.cos(1),
      Math.sin(1),
      -Math.sin(f1),
      Math.cos(f1),
    ]);
    // NeoX pairing would rotate (x0, x2) instead; x1 would not move from 0 to sin(1).
  });

  it('rope divides each pair frequency by its rope_freqs factor', () => {
    const x = new Float32Array([1, 0, 1, 0]);
    rope(x, 1, 4, 3, 10000, new Float32Array([2, 8]));
    const a0 = 3 / 2;
    const a1 = (3 * 10000 ** (-2 / 4)) / 8;
    close(x, [Math.cos(a0), Math.sin(a0), Math.cos(a1), Math.sin(a1)]);
  });

  it('attention over one position returns v (each query head its own KV head)', () => {
    const q = new Float32Array([5, -3, 0.5, 2]); // H = 2, Dh = 2
    const k = new Float32Array([1, 1, -2, 7]); // Hkv = 2
    const v = new Float32Array([0.3, -0.7, 4, 9]);
    close(attention(q, k, v, 1, 2, 2, 2), [0.3, -0.7, 4, 9]);
  });

  it('GQA: query head h reads KV head floor(h / (H / Hkv))', () => {
    // H = 4, Hkv = 2, Dh = 1, T = 2. Zero queries → uniform weights → mean of that KV head's values.
    const q = new Float32Array(4);
    const k = new Float32Array([0, 0, 0, 0]);
    const v = new Float32Array([1, 10, 3, 30]); // t0: (kv0 = 1, kv1 = 10), t1: (3, 30)
    close(attention(q, k, v, 2, 4, 2, 1), [2, 2, 20, 20]);
  });

  it('attention scales scores by 1/sqrt(Dh) and is causal over the first T rows only', () => {
    // One head, Dh = 4: score_t = q·k_t / 2.
    const q = new Float32Array([1, 1, 1, 1]);
    const k = new Float32Array([1, 0, 0, 0, 0, 0, 0, 0, 99, 99, 99, 99]); // row 2 must be ignored
    const v = new Float32Array([1, 0, 0, 0, 0, 1, 0, 0, 5, 5, 5, 5]);
    const w0 = Math.exp(0.5) / (Math.exp(0.5) + 1);
    close(attention(q, k, v, 2, 1, 1, 4), [w0, 1 - w0, 0, 0]);
  });

  it('silu, swiglu, softmax, argmax', () => {
    expect(silu(0)).toBe(0);
    expect(silu(2)).toBeCloseTo(2 / (1 + Math.exp(-2)), 12);
    close(swiglu(new Float32Array([0, 1]), new Float32Array([5, 3])), [0, 3 / (1 + Math.exp(-1))]);
    const s = new Float64Array([1000, 1000, 999]);
    softmaxInPlace(s);
    const e = Math.exp(-1);
    close(s, [1 / (2 + e), 1 / (2 + e), e / (2 + e)], 1e-12);
    expect(argmax([1, 3, 3, 2])).toBe(1);
  });
});

describe('8-bit activations (the GPU integer mat-vec)', () => {
  it('quantizes per 32-block: d = max|x| / 127, q = round(x / d) half to even, a zero block stays 0', () => {
    const x = new Float32Array(64);
    x[0] = 127;
    x[1] = -63.5; // exactly half way: to even (−64)
    x[2] = 62.5; // to even (62)
    x[3] = -127;
    x[4] = 0.4;
    const { q, d } = quantizeActivationsQ8(x);
    expect(Array.from(d)).toEqual([1, 0]);
    expect(Array.from(q.subarray(0, 5))).toEqual([127, -64, 62, -127, 0]);
    expect(q.subarray(32).every((v) => v === 0)).toBe(true);
    // The largest magnitude of a block is exactly ±127 · d; everything is within d / 2.
    const y = Float32Array.from({ length: 96 }, (_, i) => Math.sin(i * 1.7) * (i < 32 ? 1e-3 : 40));
    const back = dequantizeActivationsQ8(y);
    const dq = quantizeActivationsQ8(y).d;
    for (let i = 0; i < y.length; i++)
      expect(Math.abs(back[i] - y[i])).toBeLessThanOrEqual(dq[i >> 5] / 2 + 1e-9);
    const W = Float32Array.from({ length: 2 * 96 }, (_, i) => Math.cos(i));
    close(matVecQ8(W, y, 2, 96), matVec(W, back, 2, 96), 1e-9);
  });
});
