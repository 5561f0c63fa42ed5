/**
 * The GPU sampler against `sampleToken`: its full self-check, the Llama 3 vocabulary (fast path and
 * the exact fallback), NaN/Inf flags, ties, and mutants the check must catch. Each distinct
 * vocabulary compiles two pipelines (seconds on SwiftShader): the cases reuse few vocabularies.
 */
import { describe, expect, it } from 'vitest';
import {
  checkSamplingCases,
  LAST_DRAW,
  NON_FINITE_TOKEN,
  runSampling,
  SAMPLING_QUICK_CASES,
  type SamplingCase,
  samplingPipelines,
  samplingSpec,
} from './sampling';
import { createTestContext, withValidation } from './check/testing';

const MINUTES = 60_000;
const EDGES = [0, LAST_DRAW];

describe('GPU sampling vs sampleToken (SwiftShader)', () => {
  it(
    'passes its full self-check (vocab 1, 2, 7, 1000, 2100; ties, wide nuclei, NaN/Inf)',
    async () => {
      const { device } = await createTestContext();
      const r = await withValidation(device, () => samplingSpec.check(device, samplingSpec.source));
      expect(r.ok, r.detail).toBe(true);
    },
    10 * MINUTES,
  );

  it(
    'passes its quick (load-time) cases',
    async () => {
      const { device } = await createTestContext();
      const r = await checkSamplingCases(device, samplingSpec.source, SAMPLING_QUICK_CASES, 7);
      expect(r.ok, r.detail).toBe(true);
    },
    10 * MINUTES,
  );

  it(
    'picks what sampleToken picks at the Llama 3 vocabulary (128256), equal logits included',
    async () => {
      const { device } = await createTestContext();
      const vocab = 128256;
      const cases: SamplingCase[] = [
        { vocab, seqs: 2, temperature: 0, topK: 0, topP: 1, scale: 12 },
        // Meta's defaults over logits spread like a model's.
        { vocab, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 12, draws: EDGES },
        { vocab, seqs: 2, temperature: 0.8, topK: 50, topP: 0.95, scale: 12, draws: EDGES },
        // 128256 equal logits: the nucleus holds 115431 tokens, the exact fallback; each draw picks
        // the id floor(u · 115431) exactly, as on the CPU.
        { vocab, seqs: 3, temperature: 0.6, topK: 0, topP: 0.9, scale: 0, draws: [...EDGES, 0.5] },
      ];
      const r = await checkSamplingCases(device, samplingSpec.source, cases, 1234);
      expect(r.ok, r.detail).toBe(true);
    },
    10 * MINUTES,
  );

  it(
    'answers NON_FINITE_TOKEN for a sequence with a NaN or ±Inf logit, and samples the others',
    async () => {
      const { device } = await createTestContext();
      const vocab = 2100; // three workgroups: the bad logit in the first, the last or the middle one
      const module = device.createShaderModule({ code: samplingSpec.source });
      const p = samplingPipelines(device, module, vocab);
      for (const temperature of [0, 0.6]) {
        const logits = new Float32Array(4 * vocab);
        for (let s = 0; s < 4; s++) logits[s * vocab + 10 + s] = 50; // each sequence's clear winner
        logits[vocab + 2099] = Number.NaN; // sequence 1: the last logit
        logits[2 * vocab + 3] = Number.POSITIVE_INFINITY;
        logits[3 * vocab + 1500] = Number.NEGATIVE_INFINITY;
        const got = await runSampling(device, p, logits, [0.5, 0.5, 0.5, 0.5], {
          seqs: 4,
          temperature,
          topK: 0,
          topP: 0.9,
        });
        expect(Array.from(got), `T=${temperature}`).toEqual([
          10,
          NON_FINITE_TOKEN,
          NON_FINITE_TOKEN,
          NON_FINITE_TOKEN,
        ]);
      }
    },
    10 * MINUTES,
  );

  it(
    'ties: greedy takes the first index; sampling walks equal logits in id order',
    async () => {
      const { device } = await createTestContext();
      const vocab = 2100;
      const module = device.createShaderModule({ code: samplingSpec.source });
      const p = samplingPipelines(device, module, vocab);
      const logits = new Float32Array(2 * vocab);
      logits[1700] = 5; // the same maximum in the second and the first workgroup
      logits[300] = 5;
      logits[vocab + 2099] = 2;
      logits[vocab + 2098] = 2;
      const greedy = await runSampling(device, p, logits, [0.5, 0.5], {
        seqs: 2,
        temperature: 0,
        topK: 0,
        topP: 1,
      });
      expect(Array.from(greedy)).toEqual([300, 2098]);
      // Equal logits, top-k 4 (ids 0..3), u = k/4 + ε picks id k; the old kernel always gave 0.
      const flat = new Float32Array(vocab);
      for (const [k, want] of [
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
      ]) {
        const u = k / 4 + 2 ** -32;
        const got = await runSampling(device, p, flat, [u], { seqs: 1, temperature: 1, topK: 4, topP: 1 });
        expect(got[0], `u=${u}`).toBe(want);
      }
    },
    10 * MINUTES,
  );

  // Each mutant is run on cases that reach its code path, at one vocabulary (one compile).
  const fastCases: SamplingCase[] = [
    { vocab: 2100, seqs: 4, temperature: 0.6, topK: 0, topP: 0.9, scale: 12, draws: EDGES },
    { vocab: 2100, seqs: 4, temperature: 1, topK: 10, topP: 0.9, scale: 0, draws: EDGES },
  ];
  const fallbackCases: SamplingCase[] = [
    { vocab: 2100, seqs: 4, temperature: 0.6, topK: 0, topP: 0.9, scale: 0, draws: EDGES },
  ];
  const mutants: [string, (s: string) => string, SamplingCase[]][] = [
    [
      'top-p keeps one token too many',
      (s) => s.replace('      keep = cut;', '      keep = min(cut + 1u, keep_k);'),
      fastCases,
    ],
    [
      'top-p in the exact fallback keeps one token too many',
      (s) =>
        s.replace('    return cm.count >= goal;', '    return cm.count >= goal + select(0u, 1u, t > 0.0);'),
      [{ vocab: 2100, seqs: 4, temperature: 0.6, topK: 300, topP: 1, scale: 0, draws: EDGES }],
    ],
    [
      'the normaliser without the online-softmax rescale',
      (s) => s.replace('return select(f * exp(', 'return select(f * 1.0 + 0.0 * exp('),
      // Σ over all logits is the draw's total when nothing is cut: draws inside the candidates.
      [
        {
          vocab: 2100,
          seqs: 4,
          temperature: 0.6,
          topK: 0,
          topP: 1,
          scale: 12,
          draws: [1 / 64, 1 / 32, 1 / 16, 1 / 8], // small: a too-large Σ stays inside them
        },
      ],
    ],
    [
      'ties by the higher id',
      (s) => s.replace('(ka == kb && ia < ib)', '(ka == kb && ia > ib)'),
      fastCases, // the candidates' order (the exact fallback orders by id in its own predicate)
    ],
    [
      'the exact fallback counts one id short in a run of equal logits',
      (s) => s.replace('if (k > b || (k == b && i <= x)) {', 'if (k > b || (k == b && i < x)) {'),
      fallbackCases,
    ],
    [
      'NaN/Inf logits sampled',
      (s) =>
        s.replace(
          '      if (r.c > 0u) {\n        if (lid == 0u) {\n          tokens[s]',
          '      if (false) {\n        if (lid == 0u) {\n          tokens[s]',
        ),
      [{ vocab: 2100, seqs: 2, temperature: 0.6, topK: 0, topP: 0.9, scale: 4, poison: Number.NaN }],
    ],
  ];
  for (const [what, mutate, cases] of mutants) {
    it(
      `the check catches a mutant: ${what}`,
      async () => {
        const { device } = await createTestContext();
        const src = mutate(samplingSpec.source);
        expect(src).not.toBe(samplingSpec.source);
        const r = await withValidation(device, () => checkSamplingCases(device, src, cases, 5));
        expect(r.ok).toBe(false);
        expect(r.detail).toMatch(/expected/);
      },
      10 * MINUTES,
    );
  }
});
