/**
 * q4_K and q5_K quantizers (ggml-quants.c quantize_row_q4_K_ref / quantize_row_q5_K_ref, no
 * importance matrix), for the fixture generator and the CPU reference. A 256-block holds 8
 * sub-blocks of 32 with an asymmetric grid each: value ≈ d·sc·q − dmin·m, q in 0..nmax (15 or 31),
 * sc and m 6-bit integers packed into 12 bytes (the inverse of kScaleMin in reference/ops.ts).
 * Our f64 sums may choose a different one of make_qkx2_quants' trial scales than ggml's f32 sums
 * on near-equal errors; the blocks are valid either way (llama.cpp only has to read them).
 */
import { f16ToF32, f32ToF16, kScaleMin } from '../reference/ops';

const fr = Math.fround;

/** ggml's nearest_int (round half to even), local so that this file needs only ops.ts. */
function nearest(x: number): number {
  const r = Math.floor(x + 0.5);
  return r - x === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

const qkxAux = new Uint8Array(32); // scratch: makeQkx2Quants' trial integers

/**
 * ggml's make_qkx2_quants (use_mad false): fit x ≈ scale·L − min with L in 0..nmax, weights w,
 * starting from the min/max grid and trying nstep + 1 scales (rmin + rdelta·is + nmax)/(max − min),
 * each refit by weighted least squares; keeps the lowest weighted squared error. Writes L at `lo`,
 * returns [scale, min] (min ≥ 0: the value subtracted).
 */
function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  lo: number,
  rmin: number,
  rdelta: number,
  nstep: number,
): [scale: number, min: number] {
  let min = x[xo];
  let max = x[xo];
  let sumW = w[0];
  let sumX = sumW * x[xo];
  for (let i = 1; i < n; i++) {
    const v = x[xo + i];
    if (v < min) min = v;
    if (v > max) max = v;
    sumW += w[i];
    sumX += w[i] * v;
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = fr(nmax / (max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearest(fr(iscale * (x[xo + i] - min)))));
    L[lo + i] = l;
    const diff = scale * l + min - x[xo + i];
    bestError += w[i] * diff * diff;
  }
  const aux = qkxAux;
  let sumX2 = 0;
  for (let i = 0; i < n; i++) sumX2 += w[i] * x[xo + i] * x[xo + i];
  for (let is = 0; is <= nstep; is++) {
    iscale = fr((rmin + rdelta * is + nmax) / (max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = fr(iscale * (x[xo + i] - min));
      let l = Math.floor(v + 0.5);
      if (l - v === 0.5 && (l & 1) !== 0) l--;
      l = Math.max(0, Math.min(nmax, l));
      aux[i] = l;
      const wl = w[i] * l;
      sumL += wl;
      sumL2 += wl * l;
      sumXL += wl * x[xo + i];
    }
    const D = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale = (sumW * sumXL - sumX * sumL) / D;
      let thisMin = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      // Σ w·(s·l + m − x)² expanded into the sums above (ggml loops over the values again; the
      // same quantity up to rounding, and this runs for every 32 weights of a fixture).
      const s = thisScale;
      const m = thisMin;
      const err = s * s * sumL2 + 2 * s * m * sumL - 2 * s * sumXL + m * m * sumW - 2 * m * sumX + sumX2;
      if (err < bestError) {
        L.set(aux.subarray(0, n), lo);
        bestError = err;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [fr(scale), fr(-min)];
}

const kL = new Uint8Array(256); // scratch: the block's integers q
const kWeights = new Float32Array(32);
const kScales = new Float32Array(8);
const kMins = new Float32Array(8);

/**
 * Quantize 256 values at x[xo] into the common head of a q4_K / q5_K block at out[o]: f16 d, f16
 * dmin, scales[12]; leaves the integers (0..nmax) in kL, re-fit against the stored 6-bit scales.
 */
function quantizeKHead(
  x: Float32Array,
  xo: number,
  out: Uint8Array,
  o: number,
  view: DataView,
  nmax: number,
) {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < 8; j++) {
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 += x[xo + 32 * j + l] ** 2;
    const avX = Math.sqrt(sumX2 / 32);
    for (let l = 0; l < 32; l++) kWeights[l] = avX + Math.abs(x[xo + 32 * j + l]);
    const [scale, min] =
      nmax === 15
        ? makeQkx2Quants(32, 15, x, xo + 32 * j, kWeights, kL, 32 * j, -1, 0.1, 20)
        : makeQkx2Quants(32, 31, x, xo + 32 * j, kWeights, kL, 32 * j, -0.5, 0.1, 15);
    kScales[j] = scale;
    kMins[j] = min;
    if (scale > maxScale) maxScale = scale;
    if (min > maxMin) maxMin = min;
  }
  const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
  const sc = o + 4;
  out.fill(0, sc, sc + 12);
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearest(fr(invScale * kScales[j])));
    const lm = Math.min(63, nearest(fr(invMin * kMins[j])));
    if (j < 4) {
      out[sc + j] = ls;
      out[sc + j + 4] = lm;
    } else {
      out[sc + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      out[sc + j - 4] |= (ls >> 4) << 6;
      out[sc + j] |= (lm >> 4) << 6;
    }
  }
  view.setUint16(o, f32ToF16(fr(maxScale / 63)), true);
  view.setUint16(o + 2, f32ToF16(fr(maxMin / 63)), true);
  const d16 = f16ToF32(view.getUint16(o, true));
  const dmin16 = f16ToF32(view.getUint16(o + 2, true));
  for (let j = 0; j < 8; j++) {
    const [s, m] = kScaleMin(out, sc, j);
    const d = fr(d16 * s);
    if (!d) continue;
    const dm = fr(dmin16 * m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearest(fr(fr(x[xo + 32 * j + ii] + dm) / d));
      kL[32 * j + ii] = Math.max(0, Math.min(nmax, l));
    }
  }
}

/** q4_K block (144 bytes): d, dmin, scales[12], qs[128] (element 64i + l low nibble, 64i + 32 + l high). */
export function quantizeBlockQ4K(x: Float32Array, xo: number, out: Uint8Array, o: number, view: DataView) {
  quantizeKHead(x, xo, out, o, view, 15);
  for (let i = 0; i < 4; i++) {
    for (let l = 0; l < 32; l++) out[o + 16 + 32 * i + l] = kL[64 * i + l] | (kL[64 * i + 32 + l] << 4);
  }
}

/** q5_K block (176 bytes): q4_K's fields with qh[32] before qs: bit k of qh[l] = bit 4 of element 32k + l. */
export function quantizeBlockQ5K(x: Float32Array, xo: number, out: Uint8Array, o: number, view: DataView) {
  quantizeKHead(x, xo, out, o, view, 31);
  out.fill(0, o + 16, o + 48);
  for (let i = 0; i < 4; i++) {
    for (let l = 0; l < 32; l++) {
      const q1 = kL[64 * i + l];
      const q2 = kL[64 * i + 32 + l];
      out[o + 48 + 32 * i + l] = (q1 & 0xf) | ((q2 & 0xf) << 4);
      out[o + 16 + l] |= ((q1 >> 4) << (2 * i)) | ((q2 >> 4) << (2 * i + 1));
    }
  }
}
