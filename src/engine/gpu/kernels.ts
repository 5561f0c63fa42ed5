/**
 * The non-linear kernels of the forward pass, each a named `KernelSpec` (one shaders/*.wgsl file)
 * with a self-check against the CPU reference (src/engine/reference/ops.ts) on fresh random inputs
 * of awkward sizes, outputs poisoned with NaN first. The Vitest kernel tests and
 * `--custom-ops-path` (registry.override) run the same checks.
 *
 *   rmsnorm     RMSNorm rows (attn_norm, ffn_norm, output_norm)
 *   rope        RoPE (NORM pairing, θ, rope_freqs) fused with the KV-cache write
 *   attention   causal GQA attention: `prefill` (whole range per query) and flash-decoding
 *               `decode_split` + `decode_reduce`
 *   sampling    argmax / temperature → top-k → top-p → draw with the CPU's u; token ids only
 *   elementwise `gather`: the last row of each sequence
 *
 * Binding contracts are written at the top of each .wgsl file and in docs/kernels.md.
 */
import attentionSource from '../../../shaders/attention.wgsl?raw';
import elementwiseSource from '../../../shaders/elementwise.wgsl?raw';
import rmsnormSource from '../../../shaders/rmsnorm.wgsl?raw';
import ropeSource from '../../../shaders/rope.wgsl?raw';
import * as ref from '../reference/ops';
import type { CheckResult, KernelRegistry, KernelSpec } from './registry';
import { samplingSpec } from './sampling';
import {
  createStorage,
  createUniform,
  dispatch,
  makeRng,
  POISON_NAN_BITS,
  poison,
  randomFloats,
  readF32,
  readU32,
  runCases,
} from './testing';

/** f32 kernels vs the f64-accumulating reference: a few ulps of the largest value. */
const F32_TOLERANCE = 1e-4;

/** A compute pipeline from `source` (user WGSL during a check, the registry's module otherwise). */
export function computePipeline(
  device: GPUDevice,
  module: GPUShaderModule,
  entryPoint: string,
  constants: Record<string, number>,
  label: string,
): GPUComputePipeline {
  return device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint, constants }, label });
}

function moduleOf(device: GPUDevice, source: string, label: string): GPUShaderModule {
  return device.createShaderModule({ code: source, label });
}

// ---------------------------------------------------------------------------------------------
// RMSNorm
// ---------------------------------------------------------------------------------------------

export const rmsnormSpec: KernelSpec = {
  name: 'rmsnorm',
  source: rmsnormSource,
  async check(device, source) {
    const module = moduleOf(device, source, 'check:rmsnorm');
    const rng = makeRng(0x5eed01 ^ Date.now());
    const cases = [
      { rows: 1, dim: 5, scale: 3 },
      { rows: 5, dim: 17, scale: 3 },
      { rows: 3, dim: 129, scale: 3 },
      { rows: 17, dim: 33, scale: 3 },
      { rows: 2, dim: 256, scale: 3 },
      { rows: 4, dim: 600, scale: 3 },
      // Activations so small that eps dominates the mean square: a kernel that drops eps fails.
      { rows: 3, dim: 64, scale: 0.003 },
    ];
    return runCases(
      cases,
      async ({ rows, dim, scale }) => {
        const eps = 1e-5;
        const x = randomFloats(rows * dim, rng, scale);
        const w = randomFloats(dim, rng, 2);
        const pipeline = computePipeline(device, module, 'main', { DIM: dim, EPS: eps }, 'rmsnorm');
        // One more row than n_rows is poisoned and must stay untouched (it is not compared, but a
        // kernel that ignores n_rows would read garbage for it).
        const yBuf = createStorage(device, (rows + 1) * dim * 4, 'y');
        poison(device, yBuf);
        const bufs = [
          createUniform(device, [rows], 'params'),
          createStorage(device, x, 'x'),
          createStorage(device, w, 'w'),
          yBuf,
        ];
        await dispatch(device, pipeline, bufs, [rows + 1]);
        const got = await readF32(device, yBuf, 0, rows * dim);
        const want = new Float32Array(rows * dim);
        for (let r = 0; r < rows; r++) {
          want.set(ref.rmsNorm(x.subarray(r * dim, (r + 1) * dim), w, eps), r * dim);
        }
        for (const b of bufs) b.destroy();
        return { got, ref: want };
      },
      F32_TOLERANCE,
      (c) => `rows=${c.rows} dim=${c.dim} |x| < ${c.scale}`,
    );
  },
};

// ---------------------------------------------------------------------------------------------
// KV cache: f16 pairs (layout in shaders/attention.wgsl's header)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// RoPE + KV-cache write
// ---------------------------------------------------------------------------------------------

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

export const ropeSpec: KernelSpec = {
  name: 'rope',
  source: ropeSource,
  async check(device, source) {
    const module = moduleOf(device, source, 'check:rope');
    const rng = makeRng(0x5eed02 ^ Date.now());
    const cases = [
      { n: 1, H: 1, Hkv: 1, Dh: 2, maxSeq: 1, batch: 1, factors: false },
      { n: 5, H: 4, Hkv: 2, Dh: 16, maxSeq: 33, batch: 2, factors: true },
      { n: 17, H: 3, Hkv: 1, Dh: 34, maxSeq: 129, batch: 3, factors: false },
      { n: 3, H: 8, Hkv: 2, Dh: 128, maxSeq: 2000, batch: 1, factors: true },
    ];
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
        const pipeline = computePipeline(
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
      (c) =>
        `tokens=${c.n} heads=${c.H}/${c.Hkv} head_dim=${c.Dh} max_seq=${c.maxSeq} rope_freqs=${c.factors}`,
    );
  },
};

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------

/** Floats per (token, head, split) of the decode_split output: o[HEAD_DIM], m, l. */
export const partialStride = (headDim: number) => headDim + 2;

/**
 * Query heads per attention workgroup (the GROUP_HEADS override): the whole GQA group when its
 * queries fit the kernel's workgroup memory (≤ 8 heads, ≤ 1024 query floats), else a part of it.
 */
export function attentionGroupHeads(nHeads: number, nKvHeads: number, headDim: number): number {
  return Math.max(1, Math.min(nHeads / nKvHeads, 8, Math.floor(1024 / headDim)));
}

/** Workgroup columns per token for `prefill` (x) and `decode_split` (y): KV heads × group chunks. */
export function attentionGroupColumns(nHeads: number, nKvHeads: number, headDim: number): number {
  return nKvHeads * Math.ceil(nHeads / nKvHeads / attentionGroupHeads(nHeads, nKvHeads, headDim));
}

/** Override constants of the attention pipelines. */
export function attentionConstants(nHeads: number, nKvHeads: number, headDim: number, maxSeq: number) {
  return {
    N_HEADS: nHeads,
    N_KV_HEADS: nKvHeads,
    HEAD_DIM: headDim,
    MAX_SEQ: maxSeq,
    GROUP_HEADS: attentionGroupHeads(nHeads, nKvHeads, headDim),
  };
}

export interface AttentionCase {
  /**
   * Token rows. With `lens`, token t is sequence t at position lens[t] − 1 (it sees lens[t]
   * positions); else the slots are random and token 0 sits at the last position of a sequence.
   */
  n: number;
  lens?: readonly number[];
  H: number;
  Hkv: number;
  Dh: number;
  maxSeq: number;
  batch: number;
  /** 0: `prefill`; else `decode_split` with this split length + `decode_reduce`. */
  splitLen: number;
  /** Queries are uniform in [−qScale, qScale): larger spreads the scores (a sharper softmax). */
  qScale: number;
}

/** Run the attention kernel(s) of `module` on fresh random inputs and the reference; one case. */
async function runAttentionCase(
  device: GPUDevice,
  module: GPUShaderModule,
  c: AttentionCase,
  rng: () => number,
) {
  const { n, H, Hkv, Dh, maxSeq, batch, splitLen } = c;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const stride = qDim + 2 * kvDim;
  const qkv = randomFloats(n * stride, rng, c.qScale);
  // The cache holds f16 values: the reference reads exactly what the kernel unpacks.
  const kCache = ref.roundToF16InPlace(randomFloats(batch * maxSeq * kvDim, rng, 1));
  const vCache = ref.roundToF16InPlace(randomFloats(batch * maxSeq * kvDim, rng, 1));
  const rows = c.lens
    ? Uint32Array.from(c.lens.flatMap((len, t) => [t, len - 1]))
    : randomSlots(n, batch, maxSeq, rng, true); // token 0 sees the whole cache
  const maxLen = Math.max(...Array.from({ length: n }, (_, t) => rows[2 * t + 1] + 1));
  const nSplits = splitLen > 0 ? Math.ceil(maxLen / splitLen) : 1;
  const constants = attentionConstants(H, Hkv, Dh, maxSeq);
  const columns = attentionGroupColumns(H, Hkv, Dh);
  const params = createUniform(device, [n, nSplits, splitLen], 'params');
  // One more token row than n_tokens is dispatched and has output room: it must stay poisoned.
  const outBuf = createStorage(device, (n + 1) * qDim * 4, 'out');
  poison(device, outBuf);
  const inputs = [
    params,
    createStorage(device, rows, 'rows'),
    createStorage(device, qkv, 'qkv'),
    createStorage(device, encodeF16Pairs(kCache), 'k_cache'),
    createStorage(device, encodeF16Pairs(vCache), 'v_cache'),
  ];
  const made = [...inputs, outBuf];
  if (splitLen === 0) {
    const pipeline = computePipeline(device, module, 'prefill', constants, 'attention.prefill');
    await dispatch(device, pipeline, [...inputs, outBuf], [columns, n + 1]);
  } else {
    const partial = createStorage(device, (n + 1) * H * nSplits * partialStride(Dh) * 4, 'partial');
    poison(device, partial);
    made.push(partial);
    const split = computePipeline(device, module, 'decode_split', constants, 'attention.split');
    const reduce = computePipeline(device, module, 'decode_reduce', constants, 'attention.reduce');
    await dispatch(device, split, [...inputs, partial], [nSplits, columns, n + 1]);
    await dispatch(device, reduce, [params, partial, outBuf], [H, n + 1]);
  }
  const out = await readF32(device, outBuf);
  const slack = await readU32(device, outBuf, n * qDim * 4, qDim);
  const got = new Float32Array(n * qDim + 1);
  got.set(out.subarray(0, n * qDim));
  // Last element: 0 when the slack row is still all poison, else NaN (fails the comparison).
  got[n * qDim] = slack.every((w) => w === POISON_NAN_BITS) ? 0 : Number.NaN;
  const want = new Float32Array(n * qDim + 1);
  for (let t = 0; t < n; t++) {
    const [seq, pos] = [rows[2 * t], rows[2 * t + 1]];
    const cache = (x: Float32Array) => x.subarray(seq * maxSeq * kvDim, (seq + 1) * maxSeq * kvDim);
    const q = qkv.subarray(t * stride, t * stride + qDim);
    want.set(ref.attention(q, cache(kCache), cache(vCache), pos + 1, H, Hkv, Dh), t * qDim);
  }
  for (const b of made) b.destroy();
  return { got, ref: want };
}

/** `lens` cases: one sequence per token row, as long as the longest. */
const lensCase = (
  lens: number[],
  c: Omit<AttentionCase, 'n' | 'lens' | 'batch' | 'maxSeq'>,
): AttentionCase => ({
  ...c,
  n: lens.length,
  lens,
  batch: lens.length,
  maxSeq: Math.max(...lens),
});

/**
 * Attention self-check cases: context lengths 1, 2, 63, 64, 65, 301 and random up to 333 (several
 * tiles and splits, an empty split), head dims 16, 34 (17 words: odd), 64, 80, 128, 256 (the
 * queries of a group in two chunks), GQA ratios 1, 2, 3, 4, 8, prefill and decode (split lengths 1,
 * 17, 40, 64), several sequences per step. The first case (prefill, 2 KV heads, 3 tiles) is the one
 * most mistakes fail, so a mutant is rejected quickly (each case compiles its own pipelines).
 */
export const ATTENTION_CASES: readonly AttentionCase[] = [
  lensCase([63, 1, 2], { H: 4, Hkv: 2, Dh: 128, splitLen: 0, qScale: 3 }),
  lensCase([2, 1], { H: 3, Hkv: 1, Dh: 16, splitLen: 1, qScale: 2 }),
  lensCase([64, 65, 63], { H: 4, Hkv: 1, Dh: 64, splitLen: 64, qScale: 3 }),
  lensCase([65, 1], { H: 8, Hkv: 1, Dh: 128, splitLen: 17, qScale: 3 }),
  { n: 3, H: 8, Hkv: 2, Dh: 64, maxSeq: 333, batch: 1, splitLen: 64, qScale: 4 },
  lensCase([301, 64], { H: 6, Hkv: 2, Dh: 80, splitLen: 0, qScale: 4 }),
  lensCase([70, 2], { H: 8, Hkv: 1, Dh: 256, splitLen: 40, qScale: 3 }),
  { n: 5, H: 2, Hkv: 2, Dh: 34, maxSeq: 40, batch: 3, splitLen: 0, qScale: 2 },
];

export function checkAttentionCases(
  device: GPUDevice,
  source: string,
  cases: readonly AttentionCase[],
  seed: number,
): Promise<CheckResult> {
  const module = moduleOf(device, source, 'check:attention');
  const rng = makeRng(seed);
  return runCases(
    cases,
    (c) => runAttentionCase(device, module, c, rng),
    F32_TOLERANCE,
    (c) =>
      `tokens=${c.n}${c.lens ? ` context=${c.lens.join('/')}` : ''} heads=${c.H}/${c.Hkv} head_dim=${c.Dh} max_seq=${c.maxSeq} ${c.splitLen ? `decode split_len=${c.splitLen}` : 'prefill'}`,
  );
}

export const attentionSpec: KernelSpec = {
  name: 'attention',
  source: attentionSource,
  check: (device, source) => checkAttentionCases(device, source, ATTENTION_CASES, 0x5eed03 ^ Date.now()),
};

// ---------------------------------------------------------------------------------------------
// Sampling: its own module (src/engine/gpu/sampling.ts, two passes), re-exported here
// ---------------------------------------------------------------------------------------------

export { NON_FINITE_TOKEN } from './sampling';

// ---------------------------------------------------------------------------------------------
// Elementwise (gather)
// ---------------------------------------------------------------------------------------------

export const elementwiseSpec: KernelSpec = {
  name: 'elementwise',
  source: elementwiseSource,
  async check(device, source) {
    const module = moduleOf(device, source, 'check:elementwise');
    const rng = makeRng(0x5eed05 ^ Date.now());
    const cases = [
      { tokens: 1, seqs: 1, dim: 5 },
      { tokens: 17, seqs: 3, dim: 33 },
      { tokens: 129, seqs: 4, dim: 256 },
    ];
    return runCases(
      cases,
      async ({ tokens, seqs, dim }) => {
        const x = randomFloats(tokens * dim, rng, 1);
        const meta = new Uint32Array(4 * seqs);
        for (let s = 0; s < seqs; s++) meta[4 * s] = Math.floor(rng() * tokens);
        const y = createStorage(device, seqs * dim * 4, 'y');
        poison(device, y);
        const pipeline = computePipeline(device, module, 'gather', { DIM: dim }, 'gather');
        const bufs = [
          createUniform(device, [seqs], 'params'),
          createStorage(device, meta, 'seqs'),
          createStorage(device, x, 'x'),
          y,
        ];
        await dispatch(device, pipeline, bufs, [seqs]);
        const got = await readF32(device, y);
        const want = new Float32Array(seqs * dim);
        for (let s = 0; s < seqs; s++)
          want.set(x.subarray(meta[4 * s] * dim, (meta[4 * s] + 1) * dim), s * dim);
        for (const b of bufs) b.destroy();
        return { got, ref: want };
      },
      0,
      (c) => `tokens=${c.tokens} seqs=${c.seqs} dim=${c.dim}`,
    );
  },
};

export const CORE_KERNELS: readonly KernelSpec[] = [
  rmsnormSpec,
  ropeSpec,
  attentionSpec,
  samplingSpec,
  elementwiseSpec,
];

/** Register this module's kernels (skipping any already registered). */
export function registerCoreKernels(registry: KernelRegistry): void {
  const have = new Set(registry.names());
  for (const spec of CORE_KERNELS) if (!have.has(spec.name)) registry.register(spec);
}
