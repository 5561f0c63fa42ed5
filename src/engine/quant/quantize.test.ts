import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import { GgmlType } from '../gguf/types';
import { dequantize, f16ToF32, f32ToF16 } from '../reference/ops';
import { f32ToBf16, nearestInt, quantize, roundAway } from './quantize';

/** Deterministic N(0,1)-ish values (Box–Muller on a small LCG): fresh per seed, same every run. */
function randn(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

function relRms(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += a[i] ** 2;
  }
  return Math.sqrt(num / den);
}

describe('rounding helpers', () => {
  it('nearestInt rounds ties to even like ggml, roundAway like C roundf', () => {
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, 2.6].map(nearestInt)).toEqual([0, 2, 2, 0, -2, -2, 2, 3]);
    expect([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4].map(roundAway)).toEqual([1, 2, 3, -1, -2, -3, 2]);
  });
});

describe('round trips: dequantize(quantize(x)) ≈ x', () => {
  // [type, block size, allowed relative RMS error]
  const cases: [GgmlType, number, number][] = [
    [GgmlType.F32, 1, 0],
    [GgmlType.F16, 1, 1e-3],
    [GgmlType.BF16, 1, 5e-3],
    [GgmlType.Q8_0, 32, 0.01],
    [GgmlType.Q6_K, 256, 0.02],
    [GgmlType.Q4_0, 32, 0.15],
  ];
  for (const [type, bs, tol] of cases) {
    for (const blocks of [1, 3, 7, 17]) {
      it(`${GgmlType[type]} × ${blocks} blocks`, () => {
        const x = randn(bs * blocks * (bs === 1 ? 33 : 1), 1000 * type + blocks, 0.37);
        const y = dequantize(type, quantize(type, x), x.length);
        expect(relRms(x, y)).toBeLessThanOrEqual(tol);
        if (type === GgmlType.F32) expect(y).toEqual(x);
      });
    }
  }

  it('all-zero blocks stay zero (no NaN from a zero scale)', () => {
    for (const type of [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q6_K]) {
      const y = dequantize(type, quantize(type, new Float32Array(512)), 512);
      expect(Array.from(y).every((v) => v === 0)).toBe(true);
    }
  });

  it('q6_K reproduces values that sit exactly on its grid (checks the ql/qh/scales layout)', () => {
    // Every 16-value sub-block holds the integers −32..31 (a permutation) times its own step, so the
    // quantizer has an exact answer; a mixed-up nibble, high-bit or scale slot would scramble it.
    const x = new Float32Array(512);
    for (let sb = 0; sb < 32; sb++) {
      // Steps in powers of two keep each int8 sub-scale exact (−128 · step / max step).
      const step = 0.01 * 2 ** (sb % 5);
      for (let i = 0; i < 16; i++) x[16 * sb + i] = ((sb * 7 + i * 4 + (i === 0 ? 0 : 1)) % 64) - 32;
      x[16 * sb] = -32; // the largest magnitude of each sub-block is −32·step
      for (let i = 0; i < 16; i++) x[16 * sb + i] *= step;
    }
    const y = dequantize(GgmlType.Q6_K, quantize(GgmlType.Q6_K, x), x.length);
    for (let i = 0; i < x.length; i++)
      expect(Math.abs(y[i] - x[i])).toBeLessThan(1e-3 * Math.abs(x[i]) + 1e-6);
  });

  it('rejects a length that is not a whole number of blocks, and unknown types', () => {
    expect(() => quantize(GgmlType.Q4_0, new Float32Array(33))).toThrow(EngineError);
    expect(() => quantize(GgmlType.Q6_K, new Float32Array(32))).toThrow(
      /multiple of the q6_K block size 256/,
    );
    expect(() => quantize(GgmlType.Q2_K, new Float32Array(256))).toThrow(/no encoder for q2_K/);
  });
});

describe('q4_0 known values', () => {
  it('d = max / −8 and the extreme value gets nibble 0', () => {
    const x = new Float32Array(32).map((_, i) => (i - 16) * 0.1);
    x[5] = 4; // largest magnitude, positive → d = −0.5
    x[20] = -3.5; // −3.5 · (1/−0.5) + 8.5 = 15.5 → 15
    const bytes = quantize(GgmlType.Q4_0, x);
    const view = new DataView(bytes.buffer);
    expect(f16ToF32(view.getUint16(0, true))).toBe(-0.5);
    expect(bytes[2 + 5] & 0xf).toBe(0);
    expect(bytes[2 + 4] >> 4).toBe(15);
    // x[0] = −1.6: −1.6 · −2 + 8.5 = 11.7 → 11
    expect(bytes[2] & 0xf).toBe(11);
    // dequantized extreme is exact: (0 − 8) · −0.5 = 4
    expect(dequantize(GgmlType.Q4_0, bytes, 32)[5]).toBe(4);
  });

  it('a negative extreme gives a positive d', () => {
    const x = new Float32Array(32);
    x[31] = -3.2; // d = 0.4, nibble trunc(−8 + 8.5) = 0
    x[0] = 2.8; // 2.8 / 0.4 + 8.5 = 15.5 → 15
    x[1] = 3.0; // 7.5 + 8.5 = 16 → clamped to 15
    const bytes = quantize(GgmlType.Q4_0, x);
    expect(f16ToF32(new DataView(bytes.buffer).getUint16(0, true))).toBeCloseTo(0.4, 3);
    expect(bytes[2 + 15] >> 4).toBe(0);
    expect(bytes[2] & 0xf).toBe(15);
    expect(bytes[3] & 0xf).toBe(15);
    expect(bytes[4] & 0xf).toBe(8); // zeros map to 8
  });

  it('ops.dequantize reads hand-built q4_0 bytes as (nibble − 8) · d', () => {
    const bytes = new Uint8Array(36);
    const view = new DataView(bytes.buffer);
    view.setUint16(0, f32ToF16(0.5), true);
    bytes[2] = 0x9f; // element 0 = nibble 15, element 16 = nibble 9
    bytes[17] = 0x08; // element 15 = 8, element 31 = 0
    view.setUint16(18, f32ToF16(-2), true);
    bytes[20] = 0x3c; // block 1: element 0 = 12, element 16 = 3
    const y = dequantize(GgmlType.Q4_0, bytes, 64);
    expect(y[0]).toBe(3.5);
    expect(y[16]).toBe(0.5);
    expect(y[15]).toBe(0);
    expect(y[31]).toBe(-4);
    expect(y[1]).toBe(-4); // nibble 0
    expect(y[32]).toBe(-8); // (12 − 8) · −2
    expect(y[48]).toBe(10); // (3 − 8) · −2
  });
});

describe('q8_0 known values', () => {
  it('d = max|x| / 127 and q = roundf(x / d), ties away from zero', () => {
    const x = new Float32Array(32);
    x[0] = 127; // d = 1
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = -127;
    x[4] = 0.49;
    const bytes = quantize(GgmlType.Q8_0, x);
    const view = new DataView(bytes.buffer);
    expect(f16ToF32(view.getUint16(0, true))).toBe(1);
    expect([1, 2, 3, 4, 5].map((i) => view.getInt8(1 + i))).toEqual([127, 3, -3, -127, 0]);
  });
});

describe('f16 / bf16 encoders', () => {
  it('bf16 rounds to nearest even and keeps NaN quiet', () => {
    const bits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(f32ToBf16(bits(0x3f808000))).toBe(0x3f80); // tie → even
    expect(f32ToBf16(bits(0x3f818000))).toBe(0x3f82); // tie → even (up)
    expect(f32ToBf16(bits(0x3f808001))).toBe(0x3f81);
    expect(f32ToBf16(-Infinity)).toBe(0xff80);
    expect(f32ToBf16(Number.NaN) & 0x7fc0).toBe(0x7fc0);
  });
  it('f16 tensors hold f32ToF16 of each value', () => {
    const x = new Float32Array([1, -2, 65504, 1e-8, 0.1]);
    const view = new DataView(quantize(GgmlType.F16, x).buffer);
    expect([0, 1, 2, 3, 4].map((i) => view.getUint16(2 * i, true))).toEqual([
      0x3c00, 0xc000, 0x7bff, 0x0000, 0x2e66,
    ]);
  });
});
