/**
 * The CPU reference: plain, obvious math in f32 storage with f64 accumulation. It is the oracle for
 * every WGSL kernel and the `--device cpu` backend. Clarity over speed.
 *
 * Axis legend: D = model dim, H = query heads, Hkv = KV heads, Dh = head dim, T = positions so far,
 * R/C = rows/cols of a weight matrix (ggml ne = [C, R]).
 */
import { GgmlType, SUPPORTED_TYPES, typeName } from '../gguf/types';
import {
  dequantizeBlockIq4Nl,
  dequantizeBlockIq4Xs,
  dequantizeBlockQ4_1,
  dequantizeBlockQ5_0,
  dequantizeBlockQ5_1,
} from '../quant/legacy-iq4';

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

/** IEEE half → number (exact). */
export function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// One scratch word for the bit casts below (they run per weight when writing test models).
const castF32 = new Float32Array(1);
const castU32 = new Uint32Array(castF32.buffer);

/** number → IEEE half bits, round to nearest even (like numpy / ggml's fp32_to_fp16). */
export function f32ToF16(value: number): number {
  castF32[0] = value;
  const x = castU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

export function bf16ToF32(b: number): number {
  return new Float32Array(new Uint32Array([b << 16]).buffer)[0];
}

// ---------------------------------------------------------------------------------------------
// Dequantization: raw GGUF tensor bytes → f32
// ---------------------------------------------------------------------------------------------

/** Dequantizes one block of a quantized type: the block's bytes at `o` → out[y .. y + block size). */
export type BlockDequantizer = (
  bytes: Uint8Array,
  o: number,
  view: DataView,
  out: Float32Array,
  y: number,
) => void;

/** q4_0: f16 d, 16 bytes; byte j = element j (low nibble), element j + 16 (high nibble). */
function dequantizeBlockQ4_0(bytes: Uint8Array, o: number, view: DataView, out: Float32Array, y: number) {
  const d = f16ToF32(view.getUint16(o, true));
  for (let j = 0; j < 16; j++) {
    const q = bytes[o + 2 + j];
    out[y + j] = ((q & 0xf) - 8) * d;
    out[y + j + 16] = ((q >> 4) - 8) * d;
  }
}

/** q8_0: f16 d, 32 × int8. */
function dequantizeBlockQ8_0(_bytes: Uint8Array, o: number, view: DataView, out: Float32Array, y: number) {
  const d = f16ToF32(view.getUint16(o, true));
  for (let j = 0; j < 32; j++) out[y + j] = view.getInt8(o + 2 + j) * d;
}

/** q6_K (256): ql[128], qh[64], int8 scales[16], f16 d. Two halves of 128 elements. */
function dequantizeBlockQ6K(bytes: Uint8Array, o: number, view: DataView, out: Float32Array, y0: number) {
  const d = f16ToF32(view.getUint16(o + 208, true));
  for (let half = 0; half < 2; half++) {
    const ql = o + 64 * half;
    const qh = o + 128 + 32 * half;
    const sc = o + 192 + 8 * half;
    const y = y0 + 128 * half;
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = bytes[qh + l];
      const q1 = ((bytes[ql + l] & 0xf) | (((h >> 0) & 3) << 4)) - 32;
      const q2 = ((bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
      const q3 = ((bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const q4 = ((bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
      out[y + l] = d * view.getInt8(sc + is) * q1;
      out[y + l + 32] = d * view.getInt8(sc + is + 2) * q2;
      out[y + l + 64] = d * view.getInt8(sc + is + 4) * q3;
      out[y + l + 96] = d * view.getInt8(sc + is + 6) * q4;
    }
  }
}

/** The block dequantizer of every quantized type (block sizes and bytes: SUPPORTED_TYPES). */
const BLOCK_DEQUANTIZERS: ReadonlyMap<GgmlType, BlockDequantizer> = new Map([
  [GgmlType.Q4_0, dequantizeBlockQ4_0],
  [GgmlType.Q8_0, dequantizeBlockQ8_0],
  [GgmlType.Q6_K, dequantizeBlockQ6K],
  [GgmlType.Q4_K, dequantizeBlockQ4K],
  [GgmlType.Q5_K, dequantizeBlockQ5K],
  [GgmlType.Q4_1, dequantizeBlockQ4_1],
  [GgmlType.Q5_0, dequantizeBlockQ5_0],
  [GgmlType.Q5_1, dequantizeBlockQ5_1],
  [GgmlType.IQ4_NL, dequantizeBlockIq4Nl],
  [GgmlType.IQ4_XS, dequantizeBlockIq4Xs],
]);

/** Dequantize `n` elements of type `type` from `bytes` (the tensor's raw GGUF bytes). */
export function dequantize(type: GgmlType, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (type) {
    case GgmlType.F32:
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    case GgmlType.F16:
      for (let i = 0; i < n; i++) out[i] = f16ToF32(view.getUint16(2 * i, true));
      return out;
    case GgmlType.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(view.getUint16(2 * i, true));
      return out;
  }
  const block = BLOCK_DEQUANTIZERS.get(type);
  const traits = SUPPORTED_TYPES.get(type);
  if (!block || !traits) throw new Error(`dequantize: unsupported tensor type ${typeName(type)}`);
  const { blockSize, bytesPerBlock } = traits;
  for (let b = 0; b < n / blockSize; b++) block(bytes, bytesPerBlock * b, view, out, blockSize * b);
  return out;
}

/**
 * ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j (< 8) of a q4_K / q5_K block from
 * its 12 packed bytes at `o`: j < 4 in the low 6 bits of bytes j (scale) and j + 4 (min); j ≥ 4 in
 * the nibbles of byte j + 4 with the top 2 bits in the spare high bits of bytes j − 4 and j.
 */
export function kScaleMin(bytes: Uint8Array, o: number, j: number): [scale: number, min: number] {
  if (j < 4) return [bytes[o + j] & 63, bytes[o + j + 4] & 63];
  return [
    (bytes[o + j + 4] & 0xf) | ((bytes[o + j - 4] >> 6) << 4),
    (bytes[o + j + 4] >> 4) | ((bytes[o + j] >> 6) << 4),
  ];
}

/**
 * q4_K (dequantize_row_q4_K): block of 256 = f16 d, f16 dmin, scales[12] (8 × 6-bit scale and
 * min, kScaleMin), qs[128]. Each 64 elements use 32 bytes: element l (< 32) in the low nibble of
 * byte l, element 32 + l in its high nibble. Value = d·sc·q − dmin·m. Bit for bit ggml's f32: d·sc
 * and dmin·m (11-bit f16 × 6 bits) and then d·sc·q (× 5 bits) are exact in f32, so the one rounding
 * is the subtraction's (the Float32Array store), with or without the compiler's FMA contraction.
 */
function dequantizeBlockQ4K(bytes: Uint8Array, o: number, view: DataView, out: Float32Array, y: number) {
  const d = f16ToF32(view.getUint16(o, true));
  const dmin = f16ToF32(view.getUint16(o + 2, true));
  for (let j = 0; j < 4; j++) {
    const [sc1, m1] = kScaleMin(bytes, o + 4, 2 * j);
    const [sc2, m2] = kScaleMin(bytes, o + 4, 2 * j + 1);
    const d1 = d * sc1;
    const d2 = d * sc2;
    const min1 = dmin * m1;
    const min2 = dmin * m2;
    const qs = o + 16 + 32 * j;
    for (let l = 0; l < 32; l++) {
      out[y + 64 * j + l] = d1 * (bytes[qs + l] & 0xf) - min1;
      out[y + 64 * j + 32 + l] = d2 * (bytes[qs + l] >> 4) - min2;
    }
  }
}

/**
 * q5_K (dequantize_row_q5_K): q4_K's layout with qh[32] between scales and qs: bit k of qh[l] is
 * the 5th bit (+16) of element 32k + l. Block: d, dmin, scales[12], qh[32], qs[128] = 176 bytes.
 */
function dequantizeBlockQ5K(bytes: Uint8Array, o: number, view: DataView, out: Float32Array, y: number) {
  const d = f16ToF32(view.getUint16(o, true));
  const dmin = f16ToF32(view.getUint16(o + 2, true));
  const qh = o + 16;
  for (let j = 0; j < 4; j++) {
    const [sc1, m1] = kScaleMin(bytes, o + 4, 2 * j);
    const [sc2, m2] = kScaleMin(bytes, o + 4, 2 * j + 1);
    const d1 = d * sc1;
    const d2 = d * sc2;
    const min1 = dmin * m1;
    const min2 = dmin * m2;
    const qs = o + 48 + 32 * j;
    for (let l = 0; l < 32; l++) {
      const h = bytes[qh + l];
      const q1 = (bytes[qs + l] & 0xf) | (((h >> (2 * j)) & 1) << 4);
      const q2 = (bytes[qs + l] >> 4) | (((h >> (2 * j + 1)) & 1) << 4);
      out[y + 64 * j + l] = d1 * q1 - min1;
      out[y + 64 * j + 32 + l] = d2 * q2 - min2;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Layer math
// ---------------------------------------------------------------------------------------------

/** RMSNorm: out[i] = x[i] / sqrt(mean(x²) + eps) · w[i]. x, w: [D]. */
export function rmsNorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i] * x[i];
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = x[i] * scale * w[i];
  return out;
}

/** out[r] = Σ_c W[r, c] · x[c]. W: [R, C] row-major (ggml ne = [C, R]), x: [C]. */
export function matVec(W: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) acc += W[o + c] * x[c];
    out[r] = acc;
  }
  return out;
}

/**
 * RoPE in place, llama.cpp NORM pairing: rotate adjacent pairs (x[2i], x[2i+1]) of each head.
 * θ_i = pos · base^(−2i/Dh) / freqFactors[i]. vec: [nHeads · Dh].
 */
export function rope(
  vec: Float32Array,
  nHeads: number,
  headDim: number,
  pos: number,
  base: number,
  freqFactors?: Float32Array,
): void {
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < headDim / 2; i++) {
      const freq = base ** ((-2 * i) / headDim) / (freqFactors ? freqFactors[i] : 1);
      const angle = pos * freq;
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      const k = h * headDim + 2 * i;
      const x0 = vec[k];
      const x1 = vec[k + 1];
      vec[k] = x0 * c - x1 * s;
      vec[k + 1] = x0 * s + x1 * c;
    }
  }
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}

/** SwiGLU: silu(gate) · up, elementwise. */
export function swiglu(gate: Float32Array, up: Float32Array): Float32Array {
  const out = new Float32Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = silu(gate[i]) * up[i];
  return out;
}

/** Numerically stable softmax in place over x[0..n). */
export function softmaxInPlace(x: Float32Array | Float64Array, n = x.length): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) max = Math.max(max, x[i]);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    x[i] = Math.exp(x[i] - max);
    sum += x[i];
  }
  for (let i = 0; i < n; i++) x[i] /= sum;
}

/**
 * Causal attention of one query position over T cached positions, with GQA:
 * query head h reads KV head h / (H / Hkv).
 * q: [H · Dh]; kCache, vCache: [T, Hkv · Dh] row-major (only the first T rows are read).
 * Returns [H · Dh].
 */
export function attention(
  q: Float32Array,
  kCache: Float32Array,
  vCache: Float32Array,
  T: number,
  nHeads: number,
  nKvHeads: number,
  headDim: number,
): Float32Array {
  const out = new Float32Array(nHeads * headDim);
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(T);
  for (let h = 0; h < nHeads; h++) {
    const kvh = Math.floor(h / group);
    for (let t = 0; t < T; t++) {
      let dot = 0;
      for (let i = 0; i < headDim; i++) dot += q[h * headDim + i] * kCache[t * kvDim + kvh * headDim + i];
      scores[t] = dot * scale;
    }
    softmaxInPlace(scores, T);
    for (let i = 0; i < headDim; i++) {
      let acc = 0;
      for (let t = 0; t < T; t++) acc += scores[t] * vCache[t * kvDim + kvh * headDim + i];
      out[h * headDim + i] = acc;
    }
  }
  return out;
}

/**
 * Round x to IEEE half precision in place (round to nearest even; beyond ±65504 → ±Inf), as the
 * KV cache stores K and V: the GPU cache holds f16 pairs (pack2x16float), llama.cpp's default
 * cache is f16 too, so the reference keeps the same values.
 */
export function roundToF16InPlace(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) x[i] = f16ToF32(f32ToF16(x[i]));
  return x;
}

/** a += b, elementwise. */
export function addInPlace(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** Index of the largest value (first on ties). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

// ---------------------------------------------------------------------------------------------
// 8-bit activations (the GPU's integer mat-vec)
// ---------------------------------------------------------------------------------------------

/** Round half to even, as WGSL's round(). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Activations quantized per 32-block like llama.cpp's q8_1 (without the sum): d = max|x| / 127,
 * q = round(x / d) as int8, in f32 arithmetic exactly as the GPU mat-vec's prologue does it
 * (d = amax / 127, then x · (1 / d) rounded half to even). x.length must be a multiple of 32.
 */
export function quantizeActivationsQ8(x: Float32Array): { q: Int8Array; d: Float32Array } {
  const blocks = x.length / 32;
  const q = new Int8Array(x.length);
  const d = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < 32; i++) amax = Math.max(amax, Math.abs(x[32 * b + i]));
    const db = Math.fround(amax / 127);
    const id = db > 0 ? Math.fround(1 / db) : 0;
    d[b] = db;
    for (let i = 0; i < 32; i++) q[32 * b + i] = roundHalfEven(Math.fround(x[32 * b + i] * id));
  }
  return { q, d };
}

/** The activations the integer mat-vec actually multiplies: q · d per element. */
export function dequantizeActivationsQ8(x: Float32Array): Float32Array {
  const { q, d } = quantizeActivationsQ8(x);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = q[i] * d[i >> 5];
  return out;
}

/** matVec with x quantized to 8 bits per 32-block first (quantizeActivationsQ8). */
export function matVecQ8(W: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
  return matVec(W, dequantizeActivationsQ8(x), rows, cols);
}
