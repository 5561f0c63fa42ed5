/**
 * The fast repack (word masks, reused scratch; weights.ts `Repacker`) against the simple one it
 * replaced (byte by byte, kept here as the reference): equal bytes on random blocks, awkward row
 * and unit counts (odd units, odd q6_K blocks per row: padded scale words), unaligned sources, and
 * scratch reused from a larger call (stale bytes must not leak into the padding).
 */
import { describe, expect, it } from 'vitest';
import { GgmlType } from '../gguf/types';
import { mulberry32 } from '../random';
import { Repacker, repackRows } from './weights';

/** Reference q4_0 / q8_0 repack: quants verbatim per unit; d's bits, ⌈U/2⌉ words per row. */
function referenceBlocks(src: Uint8Array, n: number, units: number, qBytes: number) {
  const blockBytes = qBytes + 2;
  const quants = new Uint8Array(n * units * qBytes);
  const rowHalves = 2 * Math.ceil(units / 2);
  const scales = new Uint8Array(n * rowHalves * 2);
  for (let r = 0; r < n; r++) {
    for (let u = 0; u < units; u++) {
      const b = r * units + u;
      const o = b * blockBytes;
      const h = 2 * (r * rowHalves + u);
      scales[h] = src[o];
      scales[h + 1] = src[o + 1];
      for (let j = 0; j < qBytes; j++) quants[b * qBytes + j] = src[o + 2 + j];
    }
  }
  return { quants, aux: [scales] };
}

/** Reference q6_K repack: decode each block's 6-bit values, then lay them out as weights.ts says. */
function referenceQ6K(src: Uint8Array, n: number, units: number) {
  const blocksPerRow = units / 8;
  const quants = new Uint8Array(n * units * 16);
  const hi = new Uint8Array(n * units * 8);
  const sc = new Uint8Array(n * units * 2);
  const rowHalves = 2 * Math.ceil(units / 16);
  const d = new Uint8Array(n * rowHalves * 2);
  const q = new Uint8Array(256);
  for (let r = 0; r < n; r++) {
    for (let blk = 0; blk < blocksPerRow; blk++) {
      const b = r * blocksPerRow + blk;
      const base = 210 * b;
      for (let half = 0; half < 2; half++) {
        const ql = base + 64 * half;
        const qh = base + 128 + 32 * half;
        const y = 128 * half;
        for (let l = 0; l < 32; l++) {
          const h = src[qh + l];
          q[y + l] = (src[ql + l] & 0xf) | ((h & 3) << 4);
          q[y + l + 32] = (src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4);
          q[y + l + 64] = (src[ql + l] >> 4) | (((h >> 4) & 3) << 4);
          q[y + l + 96] = (src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4);
        }
      }
      for (let u = 0; u < 8; u++) {
        const e = 32 * u;
        const unit = 8 * b + u;
        for (let j = 0; j < 16; j++) quants[16 * unit + j] = (q[e + j] & 0xf) | ((q[e + j + 16] & 0xf) << 4);
        // Element 16h + 4i + j of the unit: its top 2 bits at bit 8j + 2i of hi word h (byte j, bit 2i).
        for (let h = 0; h < 2; h++) {
          for (let i = 0; i < 4; i++) {
            for (let j = 0; j < 4; j++)
              hi[8 * unit + 4 * h + j] |= (q[e + 16 * h + 4 * i + j] >> 4) << (2 * i);
          }
        }
        sc[2 * unit] = src[base + 192 + 2 * u];
        sc[2 * unit + 1] = src[base + 192 + 2 * u + 1];
      }
      const h = 2 * (r * rowHalves + blk);
      d[h] = src[base + 208];
      d[h + 1] = src[base + 209];
    }
  }
  return { quants, aux: [hi, sc, d] };
}

function randomBytes(n: number, seed: number): Uint8Array {
  const rng = mulberry32(seed);
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * 256));
}

const CASES: { type: GgmlType; name: string; blockBytes: number; blockSize: number; qBytes: number }[] = [
  { type: GgmlType.Q4_0, name: 'q4_0', blockBytes: 18, blockSize: 32, qBytes: 16 },
  { type: GgmlType.Q8_0, name: 'q8_0', blockBytes: 34, blockSize: 32, qBytes: 32 },
  { type: GgmlType.IQ4_NL, name: 'iq4_nl', blockBytes: 18, blockSize: 32, qBytes: 16 },
  { type: GgmlType.Q6_K, name: 'q6_K', blockBytes: 210, blockSize: 256, qBytes: 0 },
];

describe('fast repack equals the reference repack', () => {
  for (const c of CASES) {
    it(`${c.name}: random blocks, awkward shapes, unaligned sources, reused scratch`, () => {
      const reference = (src: Uint8Array, n: number, cols: number) =>
        c.type === GgmlType.Q6_K
          ? referenceQ6K(src, n, cols / 32)
          : referenceBlocks(src, n, cols / 32, c.qBytes);
      const repacker = new Repacker();
      // A large call first, so later calls reuse scratch full of other bytes.
      const shapes: [number, number][] = [
        [37, 16 * c.blockSize],
        [1, c.blockSize],
        [3, 3 * c.blockSize],
        [7, 5 * c.blockSize],
        [2, 2 * c.blockSize],
        [5, 17 * c.blockSize],
      ];
      let seed = 100 * c.type;
      for (const [n, cols] of shapes) {
        const bytes = (n * cols * c.blockBytes) / c.blockSize;
        for (const shift of [0, 1, 2, 3]) {
          // The source at every alignment: a subarray starting `shift` bytes into its buffer.
          const buffer = randomBytes(bytes + shift, seed++);
          const src = buffer.subarray(shift);
          const want = reference(src, n, cols);
          const got = repacker.repack(c.type, c.type, src, n, cols);
          const where = `${n} rows × ${cols} cols, source at offset ${shift}`;
          expect(Buffer.from(got.quants).equals(Buffer.from(want.quants)), `quants, ${where}`).toBe(true);
          expect(got.aux.length).toBe(want.aux.length);
          for (const [k, a] of want.aux.entries()) {
            expect(Buffer.from(got.aux[k]).equals(Buffer.from(a)), `aux ${k}, ${where}`).toBe(true);
          }
          // The source is left as it was.
          expect(
            Buffer.from(src).equals(Buffer.from(randomBytes(bytes + shift, seed - 1).subarray(shift))),
          ).toBe(true);
        }
      }
      // repackRows returns arrays of its own, not views of a scratch that the next call overwrites.
      const src = randomBytes((2 * c.blockSize * c.blockBytes) / c.blockSize, 7);
      const first = repackRows(c.type, c.type, src, 1, 2 * c.blockSize);
      const copy = first.quants.slice();
      repackRows(c.type, c.type, randomBytes(src.length, 8), 1, 2 * c.blockSize);
      expect(first.quants).toEqual(copy);
    });
  }
});
