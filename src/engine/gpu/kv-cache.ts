/**
 * The KV cache: f16 pairs, two halves per u32 word (layout in shaders/attention.wgsl's header).
 * The rope kernel writes it, the attention kernels read it; the CPU-side helpers here size it,
 * encode and decode it, and pick distinct (sequence, position) slots for the self-checks.
 */
import * as ref from '../reference/ops';

/** Bytes of one K (or V) cache of `batch` sequences × `maxSeq` positions × `kvDim` values in f16. */
export const kvCacheBytes = (batch: number, maxSeq: number, kvDim: number) => batch * maxSeq * kvDim * 2;

/** f32 values → u32 words of two IEEE halves (element 2i low), as pack2x16float with RNE. */
export function encodeF16Pairs(x: Float32Array): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(Math.ceil(x.length / 2));
  for (let i = 0; i < x.length; i += 2) {
    out[i / 2] = (ref.f32ToF16(x[i]) | (ref.f32ToF16(i + 1 < x.length ? x[i + 1] : 0) << 16)) >>> 0;
  }
  return out;
}

/** u32 words of two IEEE halves → f32 values (unpack2x16float). */
export function decodeF16Pairs(words: Uint32Array): Float32Array {
  const out = new Float32Array(2 * words.length);
  for (let i = 0; i < words.length; i++) {
    out[2 * i] = ref.f16ToF32(words[i] & 0xffff);
    out[2 * i + 1] = ref.f16ToF32(words[i] >>> 16);
  }
  return out;
}

/**
 * Whether `half` (a value read back from f16) is one of the two f16 values around `exact`: a
 * faithful rounding. WGSL lets a device round f32 → f16 either way; anything further off is a bug.
 */
export function isFaithfulF16(half: number, exact: number): boolean {
  const nearest = ref.f16ToF32(ref.f32ToF16(exact));
  if (half === nearest) return true; // also ±Inf for values beyond the f16 range
  if (!Number.isFinite(half)) return false;
  // Spacing of f16 values around |exact|: 2^(e − 10) in the normal range, 2^−24 below it.
  const e = Math.max(-14, Math.floor(Math.log2(Math.max(Math.abs(exact), 2 ** -24))));
  return Math.abs(half - exact) < 2 ** (e - 10);
}

/**
 * Distinct (seq, pos) slots for `n` tokens in a cache of `batch` × `maxSeq` positions. With
 * `lastFirst`, token 0 (of several) takes the last position of a random sequence: the largest
 * angle for RoPE, the whole cache for attention. Distinct matters: two tokens writing one KV slot
 * leave whichever the GPU ran last.
 */
export function randomSlots(
  n: number,
  batch: number,
  maxSeq: number,
  rng: () => number,
  lastFirst = false,
): Uint32Array {
  const used = new Set<number>();
  const rows = new Uint32Array(2 * n);
  for (let t = 0; t < n; t++) {
    let slot: number;
    if (t === 0 && lastFirst && n > 1) slot = Math.floor(rng() * batch) * maxSeq + maxSeq - 1;
    else
      do slot = Math.floor(rng() * batch * maxSeq);
      while (used.has(slot));
    used.add(slot);
    rows[2 * t] = Math.floor(slot / maxSeq);
    rows[2 * t + 1] = slot % maxSeq;
  }
  return rows;
}
