/**
 * Quantizers: f32 values → raw GGUF tensor bytes, with llama.cpp's reference rounding
 * (ggml-quants.c `quantize_row_*_ref`, ggml.c `fp32_to_fp16` / `fp32_to_bf16`).
 *
 * Used by the tiny-model generator (fixtures) and by the CPU reference's `q4_0` encoding, which
 * re-quantizes F16/F32 matrices exactly as the GPU upload path does so both see the same weights.
 * ggml computes these in f32; `Math.fround` after each operation reproduces that where the result
 * decides a rounding (q4_0, q8_0). The layouts are the ones `dequantize` in reference/ops.ts reads.
 */
import { EngineError } from '../errors';
import { GgmlType, SUPPORTED_TYPES, typeName } from '../gguf/types';
import { f16ToF32, f32ToF16 } from '../reference/ops';
import { quantizeBlockQ4K, quantizeBlockQ5K } from './k-quants';
import { quantizeIq4Nl, quantizeIq4Xs, quantizeQ4_1, quantizeQ5_0, quantizeQ5_1 } from './legacy-iq4';

const fr = Math.fround;

/** ggml's `nearest_int`: round to nearest, ties to even (it adds 1.5·2^23 in f32). */
export function nearestInt(x: number): number {
  const r = Math.floor(x + 0.5);
  // floor(x + 0.5) sends ties up (+∞); ties go to the even neighbour instead.
  if (r - x === 0.5 && (r & 1) !== 0) return r - 1;
  return r;
}

/** C `roundf`: round to nearest, ties away from zero. */
export function roundAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

const castF32 = new Float32Array(1);
const castU32 = new Uint32Array(castF32.buffer);

/** f32 → bf16 bits, round to nearest even; NaN stays a quiet NaN (ggml_compute_fp32_to_bf16). */
export function f32ToBf16(value: number): number {
  castF32[0] = value;
  const u = castU32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return ((u + (0x7fff + ((u >>> 16) & 1))) >>> 16) & 0xffff;
}

/** Quantize `x` (length a multiple of the type's block size) into the raw bytes of a GGUF tensor. */
export function quantize(type: GgmlType, x: Float32Array): Uint8Array {
  const traits = SUPPORTED_TYPES.get(type);
  if (!traits) throw new EngineError('unsupported-model', `quantize: no encoder for ${typeName(type)}`);
  if (x.length % traits.blockSize !== 0) {
    throw new EngineError(
      'bad-argument',
      `quantize: ${x.length} values is not a multiple of the ${traits.name} block size ${traits.blockSize}`,
    );
  }
  const out = new Uint8Array((x.length / traits.blockSize) * traits.bytesPerBlock);
  const view = new DataView(out.buffer);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < x.length; i++) view.setFloat32(4 * i, x[i], true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < x.length; i++) view.setUint16(2 * i, f32ToF16(x[i]), true);
      return out;
    case GgmlType.BF16:
      for (let i = 0; i < x.length; i++) view.setUint16(2 * i, f32ToBf16(x[i]), true);
      return out;
    case GgmlType.Q4_0:
      for (let b = 0; b < x.length / 32; b++) quantizeBlockQ4_0(x, 32 * b, out, 18 * b, view);
      return out;
    case GgmlType.Q8_0:
      for (let b = 0; b < x.length / 32; b++) quantizeBlockQ8_0(x, 32 * b, 34 * b, view);
      return out;
    case GgmlType.Q6_K:
      for (let b = 0; b < x.length / 256; b++) quantizeBlockQ6_K(x, 256 * b, out, 210 * b, view);
      return out;
    case GgmlType.Q4_K:
      for (let b = 0; b < x.length / 256; b++) quantizeBlockQ4K(x, 256 * b, out, 144 * b, view);
      return out;
    case GgmlType.Q5_K:
      for (let b = 0; b < x.length / 256; b++) quantizeBlockQ5K(x, 256 * b, out, 176 * b, view);
      return out;
    case GgmlType.Q4_1:
      quantizeQ4_1(x, out, view);
      return out;
    case GgmlType.Q5_0:
      quantizeQ5_0(x, out, view);
      return out;
    case GgmlType.Q5_1:
      quantizeQ5_1(x, out, view);
      return out;
    case GgmlType.IQ4_NL:
      quantizeIq4Nl(x, out, view);
      return out;
    case GgmlType.IQ4_XS:
      quantizeIq4Xs(x, out, view);
      return out;
    default:
      throw new EngineError('unsupported-model', `quantize: no encoder for ${typeName(type)}`);
  }
}

/**
 * q4_0 (quantize_row_q4_0_ref): the signed value of largest magnitude `max` maps to nibble 0
 * (d = max / −8), so the block uses the full range −8..7 on the side of its extreme value.
 * The nibbles are computed with the f32 d, not the f16-rounded one, as ggml does.
 */
function quantizeBlockQ4_0(x: Float32Array, xo: number, out: Uint8Array, o: number, view: DataView) {
  let amax = 0;
  let max = 0;
  for (let j = 0; j < 32; j++) {
    const v = x[xo + j];
    if (amax < Math.abs(v)) {
      amax = Math.abs(v);
      max = v;
    }
  }
  const d = fr(max / -8);
  const id = d ? fr(1 / d) : 0;
  view.setUint16(o, f32ToF16(d), true);
  for (let j = 0; j < 16; j++) {
    // (int8_t)(x·id + 8.5f): truncation toward zero of a value in [0.5, 16.5].
    const q0 = Math.min(15, Math.trunc(fr(fr(x[xo + j] * id) + 8.5)));
    const q1 = Math.min(15, Math.trunc(fr(fr(x[xo + j + 16] * id) + 8.5)));
    out[o + 2 + j] = q0 | (q1 << 4);
  }
}

/** q8_0 (quantize_row_q8_0_ref): d = max|x| / 127, q = roundf(x / d). */
function quantizeBlockQ8_0(x: Float32Array, xo: number, o: number, view: DataView) {
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
  const d = fr(amax / 127);
  const id = d ? fr(1 / d) : 0;
  view.setUint16(o, f32ToF16(d), true);
  for (let j = 0; j < 32; j++) view.setInt8(o + 2 + j, roundAway(fr(x[xo + j] * id)));
}

/** ggml's GROUP_MAX_EPS: a sub-block whose largest magnitude is below this is all zeros. */
const GROUP_MAX_EPS = 1e-15;

/**
 * ggml's make_qx_quants with rmse_type 1 (weights x²) and no importance matrix: quantize n values
 * to integers in [−nmax, nmax−1] (stored in L with +nmax), trying 19 scales around −nmax/max and
 * keeping the one that minimizes the weighted squared error. Returns the scale.
 */
export function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number) {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i];
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  // This runs for every 16 weights of a q6_K tensor (millions of times for a 128k-row head), so the
  // loops are written out: l = clamp(nearestInt(iscale·x), −nmax, nmax−1), weight w = x².
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const v = fr(iscale * xi);
    let l = Math.floor(v + 0.5);
    if (l - v === 0.5 && (l & 1) !== 0) l--;
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[lo + i] = l + nmax;
    const w = xi * xi;
    sumlx += w * xi * l;
    suml2 += w * l * l;
  }
  let scale = suml2 ? sumlx / suml2 : 0;
  let best = scale * sumlx;
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(0.1 * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const v = fr(iscale * xi);
      let l = Math.floor(v + 0.5);
      if (l - v === 0.5 && (l & 1) !== 0) l--;
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = xi * xi;
      sumlx += w * xi * l;
      suml2 += w * l * l;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(fr(iscale * x[xo + i]));
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return fr(scale);
}

/**
 * q6_K (quantize_row_q6_K_ref): 16 sub-blocks of 16 values, each with its own scale from
 * make_qx_quants(nmax 32); the scales are stored as int8 relative to a block f16 d
 * (iscale = −128 / the scale of largest magnitude), then every value is re-quantized against its
 * stored scale d·sc to 6 bits (−32..31, +32). Layout: ql[128] low nibbles, qh[64] 2-bit highs,
 * scales[16], d — per 128-value half, element l, l+32, l+64, l+96 share ql/qh bytes.
 * Our f64 sums may pick a different one of the 19 trial scales than ggml's f32 sums on near-equal
 * errors; the encoding is valid and as accurate either way (llama.cpp only has to read it).
 */
const q6L = new Int8Array(256); // scratch: the block's 6-bit values + 32
const q6Scales = new Float32Array(16); // scratch: each sub-block's float scale

function quantizeBlockQ6_K(x: Float32Array, xo: number, out: Uint8Array, o: number, view: DataView) {
  const L = q6L;
  const scales = q6Scales;
  let maxScale = 0;
  let maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib);
    scales[ib] = scale;
    if (Math.abs(scale) > maxAbsScale) {
      maxAbsScale = Math.abs(scale);
      maxScale = scale;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) return; // all zero: the block stays zero bytes (d = 0).
  const iscale = fr(-128 / maxScale);
  const dBits = f32ToF16(fr(1 / iscale));
  view.setUint16(o + 208, dBits, true);
  const d16 = f16ToF32(dBits);
  for (let ib = 0; ib < 16; ib++)
    view.setInt8(o + 192 + ib, Math.min(127, nearestInt(fr(iscale * scales[ib]))));
  for (let j = 0; j < 16; j++) {
    const d = fr(d16 * view.getInt8(o + 192 + j));
    if (!d) continue;
    for (let ii = 0; ii < 16; ii++) {
      const l = Math.max(-32, Math.min(31, nearestInt(fr(x[xo + 16 * j + ii] / d))));
      L[16 * j + ii] = l + 32;
    }
  }
  for (let half = 0; half < 2; half++) {
    const j = 128 * half;
    const ql = o + 64 * half;
    const qh = o + 128 + 32 * half;
    for (let l = 0; l < 32; l++) {
      const q1 = L[j + l];
      const q2 = L[j + l + 32];
      const q3 = L[j + l + 64];
      const q4 = L[j + l + 96];
      out[ql + l] = (q1 & 0xf) | ((q3 & 0xf) << 4);
      out[ql + l + 32] = (q2 & 0xf) | ((q4 & 0xf) << 4);
      out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
    }
  }
}
