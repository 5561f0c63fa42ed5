import { describe, expect, it } from 'vitest';
import { GgmlType } from '../gguf/types';
import { dequantize, f32ToF16, kScaleMin } from '../reference/ops';
import { quantize } from './quantize';

/** Deterministic N(0,1)-ish values (Box–Muller on a small LCG). */
function randn(n: number, seed: number, scale = 1, mean = 0): Float32Array {
  let s = seed >>> 0 || 1;
  const u = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++)
    out[i] = mean + scale * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
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

/**
 * Packs 8 (scale, min) 6-bit pairs the way ggml's quantize_row_q4_K_ref stores them (sub-blocks
 * 0..3 in the low 6 bits of bytes j and j + 4; 4..7 as nibbles of byte j + 4 and the top 2 bits in
 * bytes j − 4 and j), written out by hand here so that it checks kScaleMin independently.
 */
function packScales(sc: number[], m: number[]): number[] {
  const b = new Array(12).fill(0);
  for (let j = 0; j < 4; j++) {
    b[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
    b[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
    b[j + 8] = (sc[j + 4] & 0xf) | ((m[j + 4] & 0xf) << 4);
  }
  return b;
}

describe('k-quant scales (get_scale_min_k4)', () => {
  it('unpacks every 6-bit scale and min, including the split ones of sub-blocks 4..7', () => {
    const sc = [1, 63, 17, 40, 33, 62, 5, 48];
    const m = [0, 21, 63, 9, 47, 2, 60, 31];
    const bytes = new Uint8Array(packScales(sc, m));
    for (let j = 0; j < 8; j++) expect(kScaleMin(bytes, 0, j)).toEqual([sc[j], m[j]]);
  });
});

describe('q4_K / q5_K dequantize: hand-built blocks as ggml lays them out', () => {
  const sc = [1, 2, 3, 4, 35, 6, 7, 63];
  const m = [0, 1, 0, 2, 0, 33, 0, 62];

  it('q4_K: d·sc·q − dmin·m, element 64i + l in the low nibble of qs[32i + l], 64i + 32 + l in its high', () => {
    const b = new Uint8Array(2 * 144);
    const v = new DataView(b.buffer);
    v.setUint16(0, f32ToF16(0.5), true); // d
    v.setUint16(2, f32ToF16(0.25), true); // dmin
    b.set(packScales(sc, m), 4);
    b[16 + 0] = 0x3f; // element 0 → 15, element 32 → 3
    b[16 + 31] = 0xa1; // element 31 → 1, element 63 → 10
    b[16 + 32 * 2 + 5] = 0x72; // element 128 + 5 → 2 (sub-block 4), 160 + 5 → 7 (sub-block 5)
    b[16 + 32 * 3 + 31] = 0xf0; // element 223 → 0 (sub-block 6), 255 → 15 (sub-block 7)
    // Second block: d = −1, dmin = 0, every nibble 9: −sc·9.
    v.setUint16(144, f32ToF16(-1), true);
    b.set(packScales(sc, m), 148);
    b.fill(0x99, 160, 288);
    const y = dequantize(GgmlType.Q4_K, b, 512);
    expect(y[0]).toBe(0.5 * 1 * 15 - 0);
    expect(y[32]).toBe(0.5 * 2 * 3 - 0.25 * 1);
    expect(y[31]).toBe(0.5 * 1 * 1);
    expect(y[63]).toBe(0.5 * 2 * 10 - 0.25);
    expect(y[1]).toBe(0); // q 0, min 0
    expect(y[100]).toBe(-0.25 * 2); // sub-block 3, q 0
    expect(y[133]).toBe(0.5 * 35 * 2);
    expect(y[165]).toBe(0.5 * 6 * 7 - 0.25 * 33);
    expect(y[223]).toBe(0);
    expect(y[255]).toBe(0.5 * 63 * 15 - 0.25 * 62);
    for (let e = 0; e < 256; e++) expect(y[256 + e]).toBe(-sc[e >> 5] * 9);
  });

  it('q5_K: bit k of qh[l] adds 16 to element 32k + l', () => {
    const b = new Uint8Array(176);
    const v = new DataView(b.buffer);
    v.setUint16(0, f32ToF16(0.5), true);
    v.setUint16(2, f32ToF16(0.25), true);
    b.set(packScales(sc, m), 4);
    b[16 + 0] = 0b00000011; // elements 0 and 32 get +16
    b[16 + 7] = 0b10000000; // element 7·32 + 7 = 231 gets +16
    b[16 + 31] = 0b00010000; // element 4·32 + 31 = 159 gets +16
    b[48 + 0] = 0x3f; // element 0 → 15, 32 → 3
    b[48 + 32 * 3 + 7] = 0x40; // element 199 → 0, 231 → 4
    const y = dequantize(GgmlType.Q5_K, b, 256);
    expect(y[0]).toBe(0.5 * 1 * 31);
    expect(y[32]).toBe(0.5 * 2 * 19 - 0.25);
    expect(y[231]).toBe(0.5 * 63 * 20 - 0.25 * 62);
    expect(y[199]).toBe(0);
    expect(y[159]).toBe(0.5 * 35 * 16);
    expect(y[1]).toBe(0);
  });
});

describe('q4_K / q5_K quantizers', () => {
  // [type, allowed relative RMS error on N(0,1) data]: 4 or 5 bits on an asymmetric grid per 32.
  const cases: [GgmlType, number][] = [
    [GgmlType.Q4_K, 0.11],
    [GgmlType.Q5_K, 0.055],
  ];
  for (const [type, tol] of cases) {
    it(`${GgmlType[type]}: round trips within ${tol}, on centred and shifted data`, () => {
      for (const [blocks, mean] of [
        [1, 0],
        [5, 0],
        [3, 0.8],
      ]) {
        const x = randn(256 * blocks, 31 * type + blocks, 0.37, mean);
        const y = dequantize(type, quantize(type, x), x.length);
        expect(relRms(x, y)).toBeLessThanOrEqual(tol);
      }
    });

    it(`${GgmlType[type]}: all-zero blocks stay zero, constant blocks come back close`, () => {
      const y = dequantize(type, quantize(type, new Float32Array(512)), 512);
      expect(y.every((v) => v === 0)).toBe(true);
      const c = dequantize(type, quantize(type, new Float32Array(256).fill(-0.3)), 256);
      for (const v of c) expect(Math.abs(v + 0.3)).toBeLessThan(0.01);
    });
  }

  it('values on a 4-bit grid per 32 come back almost exactly (checks the nibble and scale placement)', () => {
    // Sub-block j: integers 0..15 (a permutation per sub-block) · step_j − offset_j.
    const x = new Float32Array(512);
    for (let s = 0; s < 16; s++) {
      const step = 0.01 * (1 + (s % 7));
      for (let i = 0; i < 32; i++) x[32 * s + i] = ((i * 5 + s) % 16) * step - 0.02 * (s % 3);
    }
    for (const type of [GgmlType.Q4_K, GgmlType.Q5_K]) {
      const y = dequantize(type, quantize(type, x), x.length);
      // The 6-bit scales round each step to 1/63 of the block's largest: ≲ 1% of a value.
      expect(relRms(x, y)).toBeLessThan(0.02);
      for (let i = 0; i < x.length; i++) expect(Math.abs(y[i] - x[i])).toBeLessThan(0.02);
    }
  });
});
