/**
 * Causal GQA attention over the f16 KV cache: shaders/attention.wgsl as a `KernelSpec` — `prefill`
 * (the whole range per query) and flash-decoding `decode_split` + `decode_reduce` — with its launch
 * geometry and its self-check against the CPU reference on fresh random inputs of awkward sizes,
 * outputs poisoned with NaN first. Binding contract: the .wgsl header and docs/kernels.md.
 */
import attentionSource from '../../../shaders/attention.wgsl?raw';
import * as ref from '../reference/ops';
import type { CheckResult, KernelSpec, ModelShape } from './check/registry';
import {
  createStorage,
  createUniform,
  dispatch,
  F32_TOLERANCE,
  makeRng,
  POISON_NAN_BITS,
  poison,
  randomFloats,
  readF32,
  readU32,
  runCases,
} from './check/testing';
import { encodeF16Pairs, randomSlots } from './kv-cache';
import { cachedPipeline, shaderModule } from './pipelines';

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

/**
 * Token rows per `prefill_flash` workgroup (its FA_TOKENS: 32 query rows ÷ the group chunk's
 * heads), or 0 where the FlashAttention-2 prefill does not apply (head_dim > 128 or not a multiple
 * of 8: a thread holds a quarter of a head in registers) and `prefill` serves instead.
 */
export function flashPrefillTokens(nHeads: number, nKvHeads: number, headDim: number): number {
  if (headDim > 128 || headDim % 8 !== 0) return 0;
  return Math.floor(32 / attentionGroupHeads(nHeads, nKvHeads, headDim));
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
   * Prompt-like rows instead (`n` must be their total): sequence i's rows are positions
   * from, from + 1, …, from + count − 1, sequence after sequence, as a prefill chunk has them.
   */
  runs?: readonly { from: number; count: number }[];
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

/**
 * Which entry points a check runs: all of attention.wgsl's (`prefill` and, where it applies, the
 * flash prefill named here, or the decode pair), or (`flashOnly`) just that flash prefill, the
 * f16 variant's check (attention_f16.ts).
 */
export interface AttentionEntries {
  flash: string;
  flashOnly: boolean;
}

/** Run the attention kernel(s) of `module` on fresh random inputs and the reference; one case. */
export async function runAttentionCase(
  device: GPUDevice,
  module: GPUShaderModule,
  c: AttentionCase,
  rng: () => number,
  entries: AttentionEntries = { flash: 'prefill_flash', flashOnly: false },
) {
  const { n, H, Hkv, Dh, maxSeq, batch, splitLen } = c;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const stride = qDim + 2 * kvDim;
  const qkv = randomFloats(n * stride, rng, c.qScale);
  // The cache holds f16 values: the reference reads exactly what the kernel unpacks.
  const kCache = ref.roundToF16InPlace(randomFloats(batch * maxSeq * kvDim, rng, 1));
  const vCache = ref.roundToF16InPlace(randomFloats(batch * maxSeq * kvDim, rng, 1));
  const rows = c.runs
    ? Uint32Array.from(
        c.runs.flatMap((r, s) => Array.from({ length: r.count }, (_, i) => [s, r.from + i]).flat()),
      )
    : c.lens
      ? Uint32Array.from(c.lens.flatMap((len, t) => [t, len - 1]))
      : randomSlots(n, batch, maxSeq, rng, true); // token 0 sees the whole cache
  if (rows.length !== 2 * n) throw new Error(`case has ${rows.length / 2} rows, n = ${n}`);
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
  // Prefill cases run `prefill` and, where it applies, `prefill_flash` (a second poisoned output):
  // both must match the reference.
  const flashTokens = splitLen === 0 ? flashPrefillTokens(H, Hkv, Dh) : 0;
  const flashBuf = createStorage(device, (n + 1) * qDim * 4, 'out-flash');
  poison(device, flashBuf);
  made.push(flashBuf);
  if (entries.flashOnly && flashTokens === 0) throw new Error(`${entries.flash} does not apply to this case`);
  if (splitLen === 0) {
    if (!entries.flashOnly) {
      const pipeline = cachedPipeline(device, module, 'prefill', constants, 'attention.prefill');
      await dispatch(device, pipeline, [...inputs, outBuf], [columns, n + 1]);
    }
    if (flashTokens > 0) {
      const flash = cachedPipeline(device, module, entries.flash, constants, `attention.${entries.flash}`);
      // One more query tile than n_tokens needs: it must write nothing.
      await dispatch(device, flash, [...inputs, flashBuf], [Math.ceil(n / flashTokens) + 1, columns]);
    }
  } else {
    const partial = createStorage(device, (n + 1) * H * nSplits * partialStride(Dh) * 4, 'partial');
    poison(device, partial);
    made.push(partial);
    const split = cachedPipeline(device, module, 'decode_split', constants, 'attention.split');
    const reduce = cachedPipeline(device, module, 'decode_reduce', constants, 'attention.reduce');
    await dispatch(device, split, [...inputs, partial], [nSplits, columns, n + 1]);
    await dispatch(device, reduce, [params, partial, outBuf], [H, n + 1]);
  }
  const outputs = entries.flashOnly ? [flashBuf] : flashTokens > 0 ? [outBuf, flashBuf] : [outBuf];
  const got = new Float32Array(outputs.length * (n * qDim + 1));
  for (const [i, b] of outputs.entries()) {
    const out = await readF32(device, b);
    const slack = await readU32(device, b, n * qDim * 4, qDim);
    got.set(out.subarray(0, n * qDim), i * (n * qDim + 1));
    // Last element: 0 when the slack row is still all poison, else NaN (fails the comparison).
    got[(i + 1) * (n * qDim + 1) - 1] = slack.every((w) => w === POISON_NAN_BITS) ? 0 : Number.NaN;
  }
  const want = new Float32Array(n * qDim + 1);
  for (let t = 0; t < n; t++) {
    const [seq, pos] = [rows[2 * t], rows[2 * t + 1]];
    const cache = (x: Float32Array) => x.subarray(seq * maxSeq * kvDim, (seq + 1) * maxSeq * kvDim);
    const q = qkv.subarray(t * stride, t * stride + qDim);
    want.set(ref.attention(q, cache(kCache), cache(vCache), pos + 1, H, Hkv, Dh), t * qDim);
  }
  for (const b of made) b.destroy();
  const refAll = new Float32Array(got.length);
  for (let i = 0; i < outputs.length; i++) refAll.set(want, i * want.length);
  return { got, ref: refAll };
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

/** `runs` cases: prefill rows of `runs.length` sequences (see AttentionCase.runs). */
function runsCase(
  runs: { from: number; count: number }[],
  c: Omit<AttentionCase, 'n' | 'runs' | 'batch' | 'maxSeq' | 'splitLen'>,
  maxSeq = Math.max(...runs.map((r) => r.from + r.count)),
): AttentionCase {
  const n = runs.reduce((a, r) => a + r.count, 0);
  return {
    ...c,
    n,
    runs,
    batch: runs.length,
    maxSeq,
    splitLen: 0,
  };
}

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
  // Prompt chunks for prefill_flash: query tiles of 8 (G 4), 10 (G 3: 30 of 32 rows) and 4 (G 8)
  // tokens, partial last tiles, tiles spanning two sequences, chunks after a cached prefix.
  runsCase([{ from: 0, count: 21 }], { H: 4, Hkv: 1, Dh: 64, qScale: 3 }),
  runsCase(
    [
      { from: 5, count: 7 },
      { from: 0, count: 9 },
      { from: 20, count: 3 },
    ],
    { H: 6, Hkv: 2, Dh: 128, qScale: 3 },
  ),
  runsCase([{ from: 3, count: 6 }], { H: 8, Hkv: 1, Dh: 16, qScale: 4 }),
  // The Q4_K_S parity model's group shape (G 2, head_dim 128: full 32-row tiles of 16 tokens, a
  // quarter of 16 words per thread), with 2 KV heads and max_seq 63 so it reuses the first case's
  // pipelines: a 19-row prompt from position 0, then a chunk of 19 after 13 cached positions, the
  // middle tile holding the end of one and the start of the other.
  runsCase(
    [
      { from: 0, count: 19 },
      { from: 13, count: 19 },
    ],
    { H: 4, Hkv: 2, Dh: 128, qScale: 3 },
    63,
  ),
];

/**
 * The load-time check: the first case above (prefill, GQA 2, three tiles, the Llama 3 head dim) and
 * one decode (GQA 8, five splits and a one-position sequence): the three entry points, 3 pipelines.
 */
export const ATTENTION_QUICK_CASES: readonly AttentionCase[] = [
  ATTENTION_CASES[0],
  lensCase([65, 1], { H: 8, Hkv: 1, Dh: 128, splitLen: 17, qScale: 3 }),
];

/**
 * The load-time cases at a model's shapes (its pipelines): a prefill over two tiles and a decode
 * over several splits, each beside a one-position sequence.
 */
export function attentionQuickCasesFor(shape: ModelShape): AttentionCase[] {
  const at = (len: number) => Math.min(len, shape.maxSeqLen);
  const common = { H: shape.nHeads, Hkv: shape.nKvHeads, Dh: shape.headDim, maxSeq: shape.maxSeqLen };
  return [
    { ...common, n: 2, lens: [at(70), 1], batch: 2, splitLen: 0, qScale: 3 },
    { ...common, n: 2, lens: [at(65), 1], batch: 2, splitLen: 17, qScale: 3 },
  ];
}

export function checkAttentionCases(
  device: GPUDevice,
  source: string,
  cases: readonly AttentionCase[],
  seed: number,
  entries?: AttentionEntries,
  tolerance = F32_TOLERANCE,
): Promise<CheckResult> {
  const module = shaderModule(device, source, 'check:attention');
  const rng = makeRng(seed);
  return runCases(
    cases,
    (c) => runAttentionCase(device, module, c, rng, entries),
    tolerance,
    (c) =>
      `tokens=${c.n}${c.lens ? ` context=${c.lens.join('/')}` : ''}${c.runs ? ` runs=${c.runs.map((r) => `${r.from}+${r.count}`).join('/')}` : ''} heads=${c.H}/${c.Hkv} head_dim=${c.Dh} max_seq=${c.maxSeq} ${c.splitLen ? `decode split_len=${c.splitLen}` : 'prefill'}`,
  );
}

export const attentionSpec: KernelSpec = {
  name: 'attention',
  source: attentionSource,
  check: (device, source) => checkAttentionCases(device, source, ATTENTION_CASES, 0x5eed03 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkAttentionCases(
      device,
      source,
      shape ? attentionQuickCasesFor(shape) : ATTENTION_QUICK_CASES,
      0x5eed03 ^ Date.now(),
    ),
};

/**
 * K and V bytes one layer's prefill attention reads from the f16 cache for a chunk of token `rows`
 * (sequence after sequence), following the kernels' loops (the cost report's `kvReadBytesPerLayer`;
 * the API counter only sees whole caches bound). Per workgroup column (a KV head × a chunk of its
 * group), `prefill` reads positions 0..pos once per token row; `prefill_flash` reads 0..(last pos of
 * the run) once per run of one sequence within each query tile of `flashPrefillTokens` rows.
 */
export function prefillKvBytesRead(
  rows: readonly { seq: number; pos: number }[],
  nHeads: number,
  nKvHeads: number,
  headDim: number,
): { perRow: number; flash: number } {
  const perPosition = attentionGroupColumns(nHeads, nKvHeads, headDim) * 2 * headDim * 2; // K + V, f16
  let perRow = 0;
  for (const r of rows) perRow += (r.pos + 1) * perPosition;
  const tile = flashPrefillTokens(nHeads, nKvHeads, headDim);
  if (tile === 0) return { perRow, flash: perRow };
  let flash = 0;
  for (let t0 = 0; t0 < rows.length; t0 += tile) {
    let run = t0;
    const end = Math.min(t0 + tile, rows.length);
    while (run < end) {
      let e = run;
      let last = 0;
      while (e < end && rows[e].seq === rows[run].seq) last = Math.max(last, rows[e++].pos);
      flash += (last + 1) * perPosition;
      run = e;
    }
  }
  return { perRow, flash };
}
