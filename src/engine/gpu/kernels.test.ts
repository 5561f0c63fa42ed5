import { describe, expect, it } from 'vitest';
import { createTestContext, makeRng, withValidation } from './check/testing';
import { attentionSpec } from './attention';
import { elementwiseSpec } from './elementwise';
import { CORE_KERNELS } from './kernels';
import { randomSlots } from './kv-cache';
import { rmsnormSpec } from './rmsnorm';
import { ropeSpec } from './rope';

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
  // The sampler's full check runs in sampling.test.ts (minutes on SwiftShader): not twice.
  for (const spec of CORE_KERNELS.filter((k) => k.name !== 'sampling')) {
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
    [
      'flash prefill not causal',
      attentionSpec,
      (s) => s.replace('let seen = p < n && base + p <= my_pos;', 'let seen = p < n;'),
    ],
    [
      'flash prefill without the online-softmax rescale of the output',
      attentionSpec,
      (s) => s.replace('var a = o[w] * corr;', 'var a = o[w];'),
    ],
    [
      'flash prefill unpacking the f16 halves of K in the wrong order',
      attentionSpec,
      (s) =>
        s.replace(
          'let k = unpack2x16float(fa_kv[(p * FA_MAX_QW + w) * 4u + c]);',
          'let k = unpack2x16float(fa_kv[(p * FA_MAX_QW + w) * 4u + c]).yx;',
        ),
    ],
    [
      'flash prefill streaming one position too few per sequence run',
      attentionSpec,
      (s) => s.replace('fa_run = vec3<u32>(seq, e, last + 1u);', 'fa_run = vec3<u32>(seq, e, last);'),
    ],
    // The sampler's mutants: src/engine/gpu/sampling.test.ts.
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
});
