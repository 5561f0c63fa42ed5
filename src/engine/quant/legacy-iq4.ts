/**
 * q4_1, q5_0, q5_1, iq4_nl and iq4_xs: dequantizers equal to ggml's (ggml-quants.c
 * `dequantize_row_*`, bit for bit) and quantizers for the fixture generator (llama.cpp's reference
 * rounding for q4_1/q5_0/q5_1; a plain weighted scale search for the IQ4 types, whose blocks any
 * reader decodes the same way even where llama-quantize would have chosen other indices).
 *
 * Block layouts (ggml-common.h; every f16 little-endian):
 *   q4_1   32 weights, 20 B: d, m, qs[16]             value = nibble · d + m
 *   q5_0   32 weights, 22 B: d, qh (u32), qs[16]       value = (nibble | hbit << 4 − 16) · d
 *   q5_1   32 weights, 24 B: d, m, qh (u32), qs[16]    value = (nibble | hbit << 4) · d + m
 *   iq4_nl 32 weights, 18 B: d, qs[16]                 value = d · IQ4_VALUES[nibble]
 *   iq4_xs 256 weights, 136 B: d, scales_h (u16), scales_l[4], qs[128]; sub-block ib (32 weights)
 *          has the 6-bit scale ls = scales_l nibble ib | (scales_h bits 2ib..2ib+1) << 4 and
 *          value = d · (ls − 32) · IQ4_VALUES[nibble], its 16 qs bytes laid out like iq4_nl's.
 * In every one, byte j of qs holds element j (low nibble) and element j + 16 (high nibble), and
 * bit e of qh is element e's fifth bit.
 *
 * Exactness: ggml computes in f32. nibble·d (≤ 5 bits × an f16) and d·(ls − 32) are exact in f32, so
 * every value below is one correctly rounded f32 operation on exact operands, which the f64
 * arithmetic here followed by the Float32Array store reproduces (whether or not the C compiler
 * fused the multiply-add).
 */
import { type BlockDequantizer, f16ToF32, f32ToF16 } from '../reference/ops';

/** ggml's kvalues_iq4nl: the 16 levels of the IQ4 nibbles (int8). */
export const IQ4_VALUES: readonly number[] = [
  -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

const fr = Math.fround;

// ---------------------------------------------------------------------------------------------
// Block dequantizers (reference/ops.ts dequantize runs them over a tensor): one block at byte o → out[y ..]
// ---------------------------------------------------------------------------------------------

/** q4_1 block (20 bytes at o) → out[y .. y + 32). */
export const dequantizeBlockQ4_1: BlockDequantizer = (bytes, o, view, out, y) => {
  const d = f16ToF32(view.getUint16(o, true));
  const m = f16ToF32(view.getUint16(o + 2, true));
  for (let j = 0; j < 16; j++) {
    const q = bytes[o + 4 + j];
    out[y + j] = (q & 0xf) * d + m;
    out[y + j + 16] = (q >> 4) * d + m;
  }
};

/** q5_0 / q5_1 (with `hasMin`) block at o: the fifth bit of element e is bit e of qh. */
function dequantizeBlockQ5(
  bytes: Uint8Array,
  o: number,
  view: DataView,
  out: Float32Array,
  y: number,
  hasMin: boolean,
) {
  const head = hasMin ? 4 : 2; // bytes before qh
  const d = f16ToF32(view.getUint16(o, true));
  const m = hasMin ? f16ToF32(view.getUint16(o + 2, true)) : 0;
  const qh = view.getUint32(o + head, true);
  const offset = hasMin ? 0 : -16;
  for (let j = 0; j < 16; j++) {
    const q = bytes[o + head + 4 + j];
    const x0 = ((q & 0xf) | (((qh >>> j) & 1) << 4)) + offset;
    const x1 = ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) + offset;
    out[y + j] = x0 * d + m;
    out[y + j + 16] = x1 * d + m;
  }
}

/** q5_0 block (22 bytes at o) → out[y .. y + 32). */
export const dequantizeBlockQ5_0: BlockDequantizer = (bytes, o, view, out, y) =>
  dequantizeBlockQ5(bytes, o, view, out, y, false);

/** q5_1 block (24 bytes at o) → out[y .. y + 32). */
export const dequantizeBlockQ5_1: BlockDequantizer = (bytes, o, view, out, y) =>
  dequantizeBlockQ5(bytes, o, view, out, y, true);

/** 32 IQ4 weights from the 16 nibble bytes at qs (byte j: element j low, j + 16 high), · scale. */
function dequantizeIq4Unit(bytes: Uint8Array, qs: number, scale: number, out: Float32Array, y: number) {
  for (let j = 0; j < 16; j++) {
    out[y + j] = scale * IQ4_VALUES[bytes[qs + j] & 0xf];
    out[y + j + 16] = scale * IQ4_VALUES[bytes[qs + j] >> 4];
  }
}

/** iq4_nl block (18 bytes at o) → out[y .. y + 32). */
export const dequantizeBlockIq4Nl: BlockDequantizer = (bytes, o, view, out, y) =>
  dequantizeIq4Unit(bytes, o + 2, f16ToF32(view.getUint16(o, true)), out, y);

/** The 6-bit scale (0..63, stored +32) of sub-block ib of the iq4_xs block at byte o. */
export function iq4xsScale(bytes: Uint8Array, view: DataView, o: number, ib: number): number {
  const low = (bytes[o + 4 + (ib >> 1)] >> (4 * (ib & 1))) & 0xf;
  const high = (view.getUint16(o + 2, true) >> (2 * ib)) & 3;
  return low | (high << 4);
}

/** iq4_xs block (136 bytes at o) → out[y .. y + 256). */
export const dequantizeBlockIq4Xs: BlockDequantizer = (bytes, o, view, out, y) => {
  const d = f16ToF32(view.getUint16(o, true));
  for (let ib = 0; ib < 8; ib++) {
    const dl = fr(d * (iq4xsScale(bytes, view, o, ib) - 32)); // exact
    dequantizeIq4Unit(bytes, o + 8 + 16 * ib, dl, out, y + 32 * ib);
  }
};

// ---------------------------------------------------------------------------------------------
// Quantizers (fixtures, --quantization-encoding checks): x → raw GGUF bytes
// ---------------------------------------------------------------------------------------------

/** q4_1 (quantize_row_q4_1_ref): d = (max − min) / 15, m = min, q = min(15, (int)((x − min)/d + 0.5)). */
export function quantizeQ4_1(x: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b < x.length / 32; b++) {
    const xo = 32 * b;
    const o = 20 * b;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < 32; j++) {
      min = Math.min(min, x[xo + j]);
      max = Math.max(max, x[xo + j]);
    }
    const d = fr((max - min) / 15);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(o, f32ToF16(d), true);
    view.setUint16(o + 2, f32ToF16(min), true);
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(fr(x[xo + j] - min) * id) + 0.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(fr(x[xo + j + 16] - min) * id) + 0.5)));
      out[o + 4 + j] = q0 | (q1 << 4);
    }
  }
}

/** q5_0 (quantize_row_q5_0_ref): d = max / −16 (max the signed value of largest magnitude). */
export function quantizeQ5_0(x: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b < x.length / 32; b++) {
    const xo = 32 * b;
    const o = 22 * b;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      if (amax < Math.abs(x[xo + j])) {
        amax = Math.abs(x[xo + j]);
        max = x[xo + j];
      }
    }
    const d = fr(max / -16);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(o, f32ToF16(d), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // (int8_t)(x·id + 16.5f), capped at 31.
      const q0 = Math.min(31, Math.trunc(fr(fr(x[xo + j] * id) + 16.5)));
      const q1 = Math.min(31, Math.trunc(fr(fr(x[xo + j + 16] * id) + 16.5)));
      out[o + 6 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
    }
    view.setUint32(o + 2, qh >>> 0, true);
  }
}

/** q5_1 (quantize_row_q5_1_ref): d = (max − min) / 31, m = min, q = (int)((x − min)/d + 0.5). */
export function quantizeQ5_1(x: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b < x.length / 32; b++) {
    const xo = 32 * b;
    const o = 24 * b;
    let min = Number.POSITIVE_INFINITY;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < 32; j++) {
      min = Math.min(min, x[xo + j]);
      max = Math.max(max, x[xo + j]);
    }
    const d = fr((max - min) / 31);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(o, f32ToF16(d), true);
    view.setUint16(o + 2, f32ToF16(min), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      // ggml has no cap here: (x − min)·id ≤ 31 up to rounding; cap so a rounding never spills.
      const q0 = Math.min(31, Math.trunc(fr(fr(fr(x[xo + j] - min) * id) + 0.5)));
      const q1 = Math.min(31, Math.trunc(fr(fr(fr(x[xo + j + 16] - min) * id) + 0.5)));
      out[o + 8 + j] = (q0 & 0xf) | ((q1 & 0xf) << 4);
      qh |= ((q0 >> 4) << j) | ((q1 >> 4) << (j + 16));
    }
    view.setUint32(o + 4, qh >>> 0, true);
  }
}

/** Index of the IQ4 level nearest to v (ggml's best_index_int8). */
export function nearestIq4Index(v: number): number {
  if (v <= IQ4_VALUES[0]) return 0;
  if (v >= IQ4_VALUES[15]) return 15;
  let lo = 0;
  let hi = 15;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (v < IQ4_VALUES[mid]) hi = mid;
    else lo = mid;
  }
  return v - IQ4_VALUES[lo] < IQ4_VALUES[hi] - v ? lo : hi;
}

/**
 * The scale of one 32-value sub-block for the IQ4 levels (after ggml's quantize_row_iq4_nl_impl,
 * without an importance matrix: weights x²): try the 15 scales that map the signed extreme onto
 * −127 − 7 .. −127 + 7 and keep the least-squares scale of the best fit.
 */
function iq4SubBlockScale(x: Float32Array, xo: number): number {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const ax = Math.abs(x[xo + j]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + j];
    }
  }
  if (amax < 1e-15) return 0;
  let bestScale = 0;
  let best = -1;
  for (let itry = -7; itry <= 7; itry++) {
    const id = (itry + IQ4_VALUES[0]) / max;
    let sumqx = 0;
    let sumq2 = 0;
    for (let j = 0; j < 32; j++) {
      const xj = x[xo + j];
      const q = IQ4_VALUES[nearestIq4Index(id * xj)];
      const w = xj * xj;
      sumqx += w * q * xj;
      sumq2 += w * q * q;
    }
    if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
      best = (sumqx * sumqx) / sumq2;
      bestScale = sumqx / sumq2;
    }
  }
  return bestScale;
}

/** 16 qs bytes of one 32-value sub-block against the stored scale dl (0 → all level 1, ≈ 0). */
function iq4Nibbles(x: Float32Array, xo: number, dl: number, out: Uint8Array, o: number): void {
  const id = dl ? 1 / dl : 0;
  for (let j = 0; j < 16; j++) {
    const lo = nearestIq4Index(id * x[xo + j]);
    const hi = nearestIq4Index(id * x[xo + j + 16]);
    out[o + j] = lo | (hi << 4);
  }
}

export function quantizeIq4Nl(x: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b < x.length / 32; b++) {
    const dBits = f32ToF16(iq4SubBlockScale(x, 32 * b));
    view.setUint16(18 * b, dBits, true);
    iq4Nibbles(x, 32 * b, f16ToF32(dBits), out, 18 * b + 2);
  }
}

const subScales = new Float64Array(8);

/**
 * iq4_xs: each sub-block's scale as for iq4_nl, then one f16 d per 256 (d = max scale / −32, so the
 * largest lands on ls − 32 = −32) and 6-bit ls = nearest(scale / d) + 32; nibbles against d·(ls − 32).
 */
export function quantizeIq4Xs(x: Float32Array, out: Uint8Array, view: DataView): void {
  for (let b = 0; b < x.length / 256; b++) {
    const xo = 256 * b;
    const o = 136 * b;
    let maxScale = 0;
    for (let ib = 0; ib < 8; ib++) {
      subScales[ib] = iq4SubBlockScale(x, xo + 32 * ib);
      if (Math.abs(subScales[ib]) > Math.abs(maxScale)) maxScale = subScales[ib];
    }
    const dBits = f32ToF16(maxScale / -32);
    const d = f16ToF32(dBits);
    view.setUint16(o, dBits, true);
    let scalesH = 0;
    for (let ib = 0; ib < 8; ib++) {
      const l = d ? Math.max(-32, Math.min(31, Math.round(subScales[ib] / d))) : 0;
      const ls = l + 32;
      out[o + 4 + (ib >> 1)] |= (ls & 0xf) << (4 * (ib & 1));
      scalesH |= (ls >> 4) << (2 * ib);
      iq4Nibbles(x, xo + 32 * ib, fr(d * l), out, o + 8 + 16 * ib);
    }
    view.setUint16(o + 2, scalesH, true);
  }
}
