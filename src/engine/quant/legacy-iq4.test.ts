/**
 * q4_1, q5_0, q5_1, iq4_nl, iq4_xs on the CPU: hand-built blocks decode to the values ggml's
 * formulas give (ggml-quants.c dequantize_row_*, written out here per element, independently of
 * the decoder's loops), and the quantizers' blocks round-trip.
 */
import { describe, expect, it } from 'vitest';
import { GgmlType, GGML_TYPE_TRAITS, SUPPORTED_TYPES } from '../gguf/types';
import { dequantize, f16ToF32, f32ToF16 } from '../reference/ops';
import { IQ4_VALUES, nearestIq4Index } from './legacy-iq4';
import { quantize } from './quantize';

/** A small LCG: the same bytes every run. */
function bytesOf(n: number, seed: number): Uint8Array {
  let s = seed >>> 0;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function randn(n: number, seed: number): Float32Array {
  const u = bytesOf(4 * n, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = (u[4 * i] * 256 + u[4 * i + 1] + 0.5) / 65536;
    const b = (u[4 * i + 2] * 256 + u[4 * i + 3]) / 65536;
    out[i] = 0.3 * Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
  }
  return out;
}

/** Sets f16 `value` (exactly representable) at byte o. */
function putF16(b: Uint8Array, o: number, value: number) {
  const h = f32ToF16(value);
  expect(f16ToF32(h)).toBe(value);
  b[o] = h & 0xff;
  b[o + 1] = h >> 8;
}

const f32 = Math.fround;

describe('block sizes (ggml type_traits)', () => {
  it('the new supported types have the reader’s block layout', () => {
    for (const [t, size, bytes] of [
      [GgmlType.Q4_1, 32, 20],
      [GgmlType.Q5_0, 32, 22],
      [GgmlType.Q5_1, 32, 24],
      [GgmlType.IQ4_NL, 32, 18],
      [GgmlType.IQ4_XS, 256, 136],
    ] as const) {
      expect(SUPPORTED_TYPES.get(t)).toMatchObject({ blockSize: size, bytesPerBlock: bytes });
      expect(GGML_TYPE_TRAITS.get(t)).toMatchObject({ blockSize: size, bytesPerBlock: bytes });
    }
  });
});

describe('dequantize: hand-built blocks, ggml formulas', () => {
  it('q4_1: nibble·d + m; byte j = element j (low), j + 16 (high)', () => {
    const b = bytesOf(2 * 20, 1);
    putF16(b, 0, 0.0234375);
    putF16(b, 2, -0.19140625);
    putF16(b, 20, -1.5); // a negative d is read as it is
    putF16(b, 22, 3.25);
    const y = dequantize(GgmlType.Q4_1, b, 64);
    for (let blk = 0; blk < 2; blk++) {
      const d = f16ToF32(b[20 * blk] | (b[20 * blk + 1] << 8));
      const m = f16ToF32(b[20 * blk + 2] | (b[20 * blk + 3] << 8));
      for (let j = 0; j < 16; j++) {
        expect(y[32 * blk + j]).toBe(f32(f32((b[20 * blk + 4 + j] & 15) * d) + m));
        expect(y[32 * blk + j + 16]).toBe(f32(f32((b[20 * blk + 4 + j] >> 4) * d) + m));
      }
    }
    // One element by hand: block 0 byte 4 = elements 0 and 16.
    expect(y[0]).toBe(f32((b[4] & 15) * 0.0234375 - 0.19140625));
  });

  it('q5_0: (nibble | qh bit e << 4) − 16, times d; qh bit e belongs to element e', () => {
    const b = bytesOf(22, 2);
    putF16(b, 0, 0.5);
    // qh = 0x80000001: element 0 and element 31 have their fifth bit.
    b.set([0x01, 0x00, 0x00, 0x80], 2);
    b[6] = 0xf3; // element 0 low nibble 3, element 16 nibble 15
    b[6 + 15] = 0x70; // element 15 nibble 0, element 31 nibble 7
    const y = dequantize(GgmlType.Q5_0, b, 32);
    expect(y[0]).toBe((3 + 16 - 16) * 0.5);
    expect(y[16]).toBe((15 - 16) * 0.5);
    expect(y[15]).toBe((0 - 16) * 0.5);
    expect(y[31]).toBe((7 + 16 - 16) * 0.5);
    const qh = 0x80000001;
    for (let j = 0; j < 16; j++) {
      const x0 = ((b[6 + j] & 15) | (((qh >>> j) << 4) & 0x10)) - 16;
      const x1 = ((b[6 + j] >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16; // ggml's own expression
      expect([y[j], y[j + 16]]).toEqual([x0 * 0.5, x1 * 0.5]);
    }
  });

  it('q5_1: (nibble | qh bit << 4)·d + m, with qh after d and m', () => {
    const b = bytesOf(2 * 24, 3);
    putF16(b, 0, 0.0625);
    putF16(b, 2, -1.0);
    putF16(b, 24, 0.001953125);
    putF16(b, 26, 0.75);
    const y = dequantize(GgmlType.Q5_1, b, 64);
    for (let blk = 0; blk < 2; blk++) {
      const o = 24 * blk;
      const d = f16ToF32(b[o] | (b[o + 1] << 8));
      const m = f16ToF32(b[o + 2] | (b[o + 3] << 8));
      const qh = (b[o + 4] | (b[o + 5] << 8) | (b[o + 6] << 16) | (b[o + 7] << 24)) >>> 0;
      for (let j = 0; j < 16; j++) {
        const x0 = (b[o + 8 + j] & 15) | (((qh >>> j) << 4) & 0x10);
        const x1 = (b[o + 8 + j] >> 4) | ((qh >>> (j + 12)) & 0x10);
        expect(y[32 * blk + j]).toBe(f32(x0 * d + m));
        expect(y[32 * blk + j + 16]).toBe(f32(x1 * d + m));
      }
    }
  });

  it('iq4_nl: d · kvalues_iq4nl[nibble]', () => {
    expect(IQ4_VALUES).toEqual([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]);
    const b = new Uint8Array(18);
    putF16(b, 0, -0.015625);
    for (let j = 0; j < 16; j++) b[2 + j] = j | ((15 - j) << 4);
    const y = dequantize(GgmlType.IQ4_NL, b, 32);
    for (let j = 0; j < 16; j++) {
      expect(y[j]).toBe(-0.015625 * IQ4_VALUES[j]);
      expect(y[j + 16]).toBe(-0.015625 * IQ4_VALUES[15 - j]);
    }
  });

  it('iq4_xs: 8 sub-blocks of 32, 6-bit scales (scales_l nibble | scales_h 2 bits) − 32', () => {
    const b = bytesOf(2 * 136, 5);
    putF16(b, 0, 0.0078125);
    putF16(b, 136, -3.0);
    const y = dequantize(GgmlType.IQ4_XS, b, 512);
    for (let blk = 0; blk < 2; blk++) {
      const o = 136 * blk;
      const d = f16ToF32(b[o] | (b[o + 1] << 8));
      const scalesH = b[o + 2] | (b[o + 3] << 8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((b[o + 4 + (ib >> 1)] >> (4 * (ib % 2))) & 0xf) | (((scalesH >> (2 * ib)) & 3) << 4);
        const dl = f32(d * (ls - 32));
        for (let j = 0; j < 16; j++) {
          const q = b[o + 8 + 16 * ib + j];
          expect(y[256 * blk + 32 * ib + j]).toBe(f32(dl * IQ4_VALUES[q & 15]));
          expect(y[256 * blk + 32 * ib + j + 16]).toBe(f32(dl * IQ4_VALUES[q >> 4]));
        }
      }
    }
    // Sub-block 3's scale by hand: scales_l[1] high nibble, scales_h bits 6..7.
    const c = new Uint8Array(136);
    putF16(c, 0, 1);
    c[4 + 1] = 0xa0; // ls low nibble 10 for sub-block 3
    c[2] = 0b10 << 6; // ls high bits 2 → ls = 42, ls − 32 = 10
    c[8 + 16 * 3] = 0x8f; // element 96: level 113, element 112: level 1
    const z = dequantize(GgmlType.IQ4_XS, c, 256);
    expect([z[96], z[112]]).toEqual([10 * 113, 10 * 1]);
    expect(z[0]).toBe(-32 * -127); // ls 0: scale −32, nibble 0: −127
  });
});

describe('quantizers (fixtures): valid blocks that round-trip', () => {
  // [type, allowed relative RMS error]
  const cases: [GgmlType, number][] = [
    [GgmlType.Q4_1, 0.12],
    [GgmlType.Q5_0, 0.06],
    [GgmlType.Q5_1, 0.05],
    [GgmlType.IQ4_NL, 0.12],
    [GgmlType.IQ4_XS, 0.12],
  ];
  for (const [type, tol] of cases) {
    it(`${GgmlType[type]}`, () => {
      const n = 256 * 5;
      const x = randn(n, 10 + type);
      x[7] = 2.5; // one outlier
      const bytes = quantize(type, x);
      expect(bytes.byteLength).toBe(
        (n / SUPPORTED_TYPES.get(type)!.blockSize) * SUPPORTED_TYPES.get(type)!.bytesPerBlock,
      );
      const y = dequantize(type, bytes, n);
      let num = 0;
      let den = 0;
      for (let i = 0; i < n; i++) {
        num += (x[i] - y[i]) ** 2;
        den += x[i] ** 2;
      }
      expect(Math.sqrt(num / den)).toBeLessThan(tol);
      // The quantized values decode exactly to themselves once more (a fixed point of the grid)
      // for the types with a plain linear grid.
      const zeros = dequantize(type, quantize(type, new Float32Array(256)), 256);
      expect(zeros.every((v) => v === 0 || Object.is(v, -0))).toBe(true);
    });
  }

  it('q4_1 and q5_1 hit min and max of each block (d = (max − min)/levels, m = min)', () => {
    const x = randn(64, 77);
    for (const [type, levels] of [
      [GgmlType.Q4_1, 15],
      [GgmlType.Q5_1, 31],
    ] as const) {
      const y = dequantize(type, quantize(type, x), 64);
      for (let blk = 0; blk < 2; blk++) {
        const xs = x.subarray(32 * blk, 32 * blk + 32);
        const ys = y.subarray(32 * blk, 32 * blk + 32);
        const min = Math.min(...xs);
        const step = (Math.max(...xs) - min) / levels;
        expect(Math.abs(Math.min(...ys) - min)).toBeLessThan(2e-3 * Math.abs(min) + 1e-6);
        for (let i = 0; i < 32; i++) expect(Math.abs(ys[i] - xs[i])).toBeLessThan(0.51 * step + 2e-3);
      }
    }
  });

  it('nearestIq4Index picks the closest level', () => {
    for (let v = -140; v <= 130; v += 0.5) {
      const i = nearestIq4Index(v);
      for (const l of IQ4_VALUES) expect(Math.abs(v - IQ4_VALUES[i])).toBeLessThanOrEqual(Math.abs(v - l));
    }
  });
});
