/**
 * RoPE (NORM pairing, θ, rope_freqs) fused with the KV-cache write: shaders/rope.wgsl as a
 * `KernelSpec`, its cos/sin table, and its self-check against the CPU reference on fresh random
 * inputs of awkward sizes, the caches poisoned with NaN first. Binding contract: the .wgsl header
 * and docs/kernels.md.
 */
import ropeSource from '../../../shaders/rope.wgsl?raw';
import * as ref from '../reference/ops';
import type { CheckResult, KernelSpec, ModelShape } from './check/registry';
import {
  createStorage,
  createUniform,
  dispatch,
  F32_TOLERANCE,
  makeRng,
  poison,
  randomFloats,
  readF32,
  readU32,
  runCases,
} from './check/testing';
import { decodeF16Pairs, isFaithfulF16, kvCacheBytes, randomSlots } from './kv-cache';
import { cachedPipeline, shaderModule } from './pipelines';

/**
 * cos/sin of every (position, pair) in f64: [maxSeq, headDim/2] × (cos, sin), the `table`
 * binding of the rope kernel. θ = pos · base^(−2i/Dh) / freqFactors[i], as ops.rope.
 */
export function ropeTable(maxSeq: number, headDim: number, base: number, freqFactors?: Float32Array) {
  const half = headDim / 2;
  const out = new Float32Array(maxSeq * half * 2);
  for (let i = 0; i < half; i++) {
    const freq = base ** ((-2 * i) / headDim) / (freqFactors ? freqFactors[i] : 1);
    for (let pos = 0; pos < maxSeq; pos++) {
      out[2 * (pos * half + i)] = Math.cos(pos * freq);
      out[2 * (pos * half + i) + 1] = Math.sin(pos * freq);
    }
  }
  return out;
}

interface RopeCase {
  /** Tokens, query and KV heads, head dim, cache positions and sequences. */
  n: number;
  H: number;
  Hkv: number;
  Dh: number;
  maxSeq: number;
  batch: number;
  /** With rope_freqs (Llama 3.1 frequency factors). */
  factors: boolean;
}

/** A single pair, GQA 2 and 3, odd pair counts, the Llama 3 head dim at a long cache. */
export const ROPE_CASES: readonly RopeCase[] = [
  { n: 1, H: 1, Hkv: 1, Dh: 2, maxSeq: 1, batch: 1, factors: false },
  { n: 5, H: 4, Hkv: 2, Dh: 16, maxSeq: 33, batch: 2, factors: true },
  { n: 17, H: 3, Hkv: 1, Dh: 34, maxSeq: 129, batch: 3, factors: false },
  { n: 3, H: 8, Hkv: 2, Dh: 128, maxSeq: 2000, batch: 1, factors: true },
];

/** One case of the load-time check: GQA, several sequences, rope_freqs (one pipeline). */
export const ROPE_QUICK_CASES: readonly RopeCase[] = [
  { n: 5, H: 4, Hkv: 2, Dh: 16, maxSeq: 33, batch: 2, factors: true },
];

export function checkRopeCases(
  device: GPUDevice,
  source: string,
  cases: readonly RopeCase[],
  seed: number,
): Promise<CheckResult> {
  const module = shaderModule(device, source, 'check:rope');
  const rng = makeRng(seed);
  return runCases(
    cases,
    async ({ n, H, Hkv, Dh, maxSeq, batch, factors }) => {
      const theta = 500000;
      const qDim = H * Dh;
      const kvDim = Hkv * Dh;
      const stride = qDim + 2 * kvDim;
      const qkv = randomFloats(n * stride, rng, 2);
      const ff = factors ? Float32Array.from({ length: Dh / 2 }, () => 1 + 31 * rng()) : undefined;
      // Token 0 at the end of the table (big angles).
      const rows = randomSlots(n, batch, maxSeq, rng, true);
      const pipeline = cachedPipeline(
        device,
        module,
        'main',
        { N_HEADS: H, N_KV_HEADS: Hkv, HEAD_DIM: Dh, MAX_SEQ: maxSeq },
        'rope',
      );
      const qkvBuf = createStorage(device, qkv, 'qkv');
      const kBuf = createStorage(device, kvCacheBytes(batch, maxSeq, kvDim), 'k_cache');
      const vBuf = createStorage(device, kvCacheBytes(batch, maxSeq, kvDim), 'v_cache');
      poison(device, kBuf);
      poison(device, vBuf);
      const bufs = [
        createUniform(device, [n], 'params'),
        createStorage(device, rows, 'rows'),
        createStorage(device, ropeTable(maxSeq, Dh, theta, ff), 'table'),
        qkvBuf,
        kBuf,
        vBuf,
      ];
      await dispatch(device, pipeline, bufs, [n]);
      const qOut = await readF32(device, qkvBuf);
      const kOut = decodeF16Pairs(await readU32(device, kBuf));
      const vOut = decodeF16Pairs(await readU32(device, vBuf));
      const got = new Float32Array(n * stride);
      const want = new Float32Array(n * stride);
      for (let t = 0; t < n; t++) {
        const [seq, pos] = [rows[2 * t], rows[2 * t + 1]];
        const q = qkv.slice(t * stride, t * stride + qDim);
        const k = qkv.slice(t * stride + qDim, t * stride + qDim + kvDim);
        const v = qkv.slice(t * stride + qDim + kvDim, (t + 1) * stride);
        ref.rope(q, H, Dh, pos, theta, ff);
        ref.rope(k, Hkv, Dh, pos, theta, ff);
        want.set(q, t * stride);
        got.set(qOut.subarray(t * stride, t * stride + qDim), t * stride);
        // K and V went through f16: any faithful rounding of the f32 value is right (WGSL leaves
        // the rounding direction to the device); compared against round-to-nearest-even.
        const slot = (seq * maxSeq + pos) * kvDim;
        for (const [exact, cache, at] of [
          [k, kOut, t * stride + qDim],
          [v, vOut, t * stride + qDim + kvDim],
        ] as const) {
          for (let j = 0; j < kvDim; j++) {
            const rounded = ref.f16ToF32(ref.f32ToF16(exact[j]));
            want[at + j] = rounded;
            got[at + j] = isFaithfulF16(cache[slot + j], exact[j]) ? rounded : cache[slot + j];
          }
        }
      }
      for (const b of bufs) b.destroy();
      return { got, ref: want };
    },
    F32_TOLERANCE,
    (c) => `tokens=${c.n} heads=${c.H}/${c.Hkv} head_dim=${c.Dh} max_seq=${c.maxSeq} rope_freqs=${c.factors}`,
  );
}

export const ropeSpec: KernelSpec = {
  name: 'rope',
  source: ropeSource,
  check: (device, source) => checkRopeCases(device, source, ROPE_CASES, 0x5eed02 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkRopeCases(
      device,
      source,
      shape
        ? [
            {
              n: 3,
              H: shape.nHeads,
              Hkv: shape.nKvHeads,
              Dh: shape.headDim,
              maxSeq: shape.maxSeqLen,
              batch: 1,
              factors: true,
            },
          ]
        : ROPE_QUICK_CASES,
      0x5eed02 ^ Date.now(),
    ),
};
