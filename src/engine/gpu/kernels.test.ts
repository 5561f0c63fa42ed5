import { describe, expect, it } from 'vitest';
import {
  attentionSpec,
  CORE_KERNELS,
  checkSamplingCases,
  computePipeline,
  elementwiseSpec,
  NON_FINITE_TOKEN,
  randomSlots,
  rmsnormSpec,
  ropeSpec,
  runSampling,
  samplingSpec,
} from './kernels';
import { createTestContext, makeRng, withValidation } from './testing';

describe('random KV slots for the self-checks', () => {
  it('are distinct, with token 0 at the last position when asked (RoPE once flaked on a clash)', () => {
    for (let seed = 0; seed < 2000; seed++) {
      const rows = randomSlots(5, 2, 33, makeRng(seed), true);
      const slots = Array.from({ length: 5 }, (_, t) => rows[2 * t] * 33 + rows[2 * t + 1]);
      expect(new Set(slots).size, `seed ${seed}`).toBe(5);
      expect(rows[1]).toBe(32);
    }
  });
});

describe('core kernels vs the CPU reference (SwiftShader)', () => {
  for (const spec of CORE_KERNELS) {
    it(`${spec.name}: built-in source passes its self-check`, async () => {
      const { device } = await createTestContext();
      const r = await withValidation(device, () => spec.check(device, spec.source));
      expect(r.ok, r.detail).toBe(true);
      expect(r.maxRelError).toBeLessThanOrEqual(1e-4);
    });
  }

  // The checks must catch real mistakes, or a custom kernel could slip through.
  const broken: [string, typeof rmsnormSpec, (s: string) => string][] = [
    ['rmsnorm without eps', rmsnormSpec, (s) => s.replace('f32(DIM) + EPS', 'f32(DIM)')],
    [
      'rope with a wrong rotation',
      ropeSpec,
      (s) => s.replace('let x1 = qkv[k + 1u];', 'let x1 = qkv[k + 1u] * 0.5;'),
    ],
    [
      'rope without the V copy',
      ropeSpec,
      (s) => s.replace('v_cache[at] = pack2x16float(', 'v_cache[at] = 0u * pack2x16float('),
    ],
    [
      'rope storing the K halves swapped',
      ropeSpec,
      (s) =>
        s.replace(
          'pack2x16float(vec2<f32>(k0 * cs.x - k1 * cs.y, k0 * cs.y + k1 * cs.x))',
          'pack2x16float(vec2<f32>(k0 * cs.y + k1 * cs.x, k0 * cs.x - k1 * cs.y))',
        ),
    ],
    [
      'attention prefill not causal',
      attentionSpec,
      (s) => s.replace('attend(t, gr, 0u, rows[t].y + 1u, tid)', 'attend(t, gr, 0u, MAX_SEQ, tid)'),
    ],
    [
      'attention decode reading one position past the causal bound',
      attentionSpec,
      (s) => s.replace('let len = rows[t].y + 1u;', 'let len = min(rows[t].y + 2u, MAX_SEQ);'),
    ],
    [
      'attention reading the neighbouring KV head (wrong GQA mapping)',
      attentionSpec,
      (s) =>
        s.replace('let kv_col = gr.kvh * HEAD_DIM;', 'let kv_col = ((gr.kvh + 1u) % N_KV_HEADS) * HEAD_DIM;'),
    ],
    [
      'attention without the online-softmax rescale of the output',
      attentionSpec,
      (s) => s.replace('var a = acc[j] * corr_sh[og];', 'var a = acc[j];'),
    ],
    [
      'attention without the online-softmax rescale of the sum',
      attentionSpec,
      (s) => s.replace('l = l * corr + sum;', 'l = l + sum;'),
    ],
    [
      'attention unpacking the f16 halves of K in the wrong order',
      attentionSpec,
      (s) =>
        s.replace(
          'let k = unpack2x16float(kv_sh[p * row_stride + w]);',
          'let k = unpack2x16float(kv_sh[p * row_stride + w]).yx;',
        ),
    ],
    [
      'attention reduce ignores m',
      attentionSpec,
      (s) => s.replace('big_l += exp(partial[o + HEAD_DIM] - big_m) *', 'big_l += '),
    ],
    ['sampling ignores top-p', samplingSpec, (s) => s.replace('if (params.top_p < 1.0) {', 'if (false) {')],
    [
      'sampling picks a token from NaN/Inf logits',
      samplingSpec,
      (s) => s.replace('if (count_all(lid, bad) > 0u) {', 'if (false) {'),
    ],
    ['gather off by one', elementwiseSpec, (s) => s.replace('seqs[s].x * DIM', '(seqs[s].x + 1u) * DIM')],
  ];
  for (const [what, spec, mutate] of broken) {
    it(`the ${spec.name} check rejects a kernel with a bug: ${what}`, async () => {
      const { device } = await createTestContext();
      const src = mutate(spec.source);
      expect(src).not.toBe(spec.source);
      const r = await withValidation(device, () => spec.check(device, src));
      expect(r.ok).toBe(false);
      expect(r.detail).toMatch(/expected/);
    });
  }

  it('sampling agrees with sampleToken over many random logit vectors at the Llama 3 vocab size', async () => {
    const { device } = await createTestContext();
    const vocab = 128256;
    const settings = [
      { temperature: 0, topK: 0, topP: 1 },
      { temperature: 0.6, topK: 0, topP: 0.9 },
      { temperature: 0.8, topK: 50, topP: 0.95 },
    ];
    for (const s of settings) {
      // Logit spreads like a real model's: a few strong candidates over a flat tail.
      const r = await checkSamplingCases(
        device,
        samplingSpec.source,
        [{ vocab, seqs: 2, scale: 12, ...s }],
        1234 + s.topK,
      );
      expect(r.ok, r.detail).toBe(true);
    }
    const many = Array.from({ length: 12 }, (_, i) => ({
      vocab: 2000 + 37 * i,
      seqs: 4,
      temperature: [0.3, 0.6, 1, 1.5][i % 4],
      topK: [0, 10, 100][i % 3],
      topP: [1, 0.9, 0.5, 0.99][(i >> 1) % 4],
      scale: [2, 6, 10][i % 3],
    }));
    const r = await checkSamplingCases(device, samplingSpec.source, many, 99);
    expect(r.ok, r.detail).toBe(true);
  });

  it('answers NON_FINITE_TOKEN for a sequence with a NaN or ±Inf logit, and samples the others', async () => {
    const { device } = await createTestContext();
    const module = device.createShaderModule({ code: samplingSpec.source });
    const vocab = 1000;
    const pipeline = computePipeline(device, module, 'main', { VOCAB: vocab }, 'sampling');
    for (const temperature of [0, 0.6]) {
      const logits = new Float32Array(4 * vocab);
      for (let s = 0; s < 4; s++) logits[s * vocab + 10 + s] = 50; // each sequence's clear winner
      logits[vocab + 999] = Number.NaN; // sequence 1: the last logit (another thread's slice)
      logits[2 * vocab + 3] = Number.POSITIVE_INFINITY; // sequence 2
      logits[3 * vocab + 500] = Number.NEGATIVE_INFINITY; // sequence 3
      const got = await runSampling(device, pipeline, logits, new Float32Array([0.5, 0.5, 0.5, 0.5]), {
        vocab,
        seqs: 4,
        temperature,
        topK: 0,
        topP: 0.9,
        scale: 1,
      });
      expect(Array.from(got), `T=${temperature}`).toEqual([
        10,
        NON_FINITE_TOKEN,
        NON_FINITE_TOKEN,
        NON_FINITE_TOKEN,
      ]);
    }
  });

  it('greedy sampling picks the first index among equal maxima', async () => {
    const { device } = await createTestContext();
    const module = device.createShaderModule({ code: samplingSpec.source });
    const pipeline = computePipeline(device, module, 'main', { VOCAB: 1000 }, 'sampling');
    const logits = new Float32Array(2000);
    logits[700] = 5;
    logits[300] = 5;
    logits[1000 + 999] = 2;
    logits[1000 + 998] = 2;
    const got = await runSampling(device, pipeline, logits, new Float32Array([0.5, 0.5]), {
      vocab: 1000,
      seqs: 2,
      temperature: 0,
      topK: 0,
      topP: 1,
      scale: 1,
    });
    expect(Array.from(got)).toEqual([300, 998]);
  });
});
