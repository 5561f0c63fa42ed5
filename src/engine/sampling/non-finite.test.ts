/**
 * Corrupt weights: a tiny Llama (dim 64, one layer, 128 tokens) with a NaN or an Inf written into one
 * weight. Both runners must stop with EngineError('non-finite') instead of emitting a token: before
 * the check, greedy decoding wrote token 0 forever, the CPU draw returned `undefined` and the GPU
 * returned 4294967295.
 */
import { describe, expect, it } from 'vitest';
import type { ModelRunner, SamplingOptions } from '../generation';
import { llamaConfigFromGguf } from '../gguf/config';
import { readGguf } from '../gguf/reader';
import { engineError, tinyLlama } from '../gguf/test-helpers';
import { GgmlType } from '../gguf/types';
import { GpuModel } from '../gpu/model';
import { createTestContext } from '../gpu/check/testing';
import { ReferenceModel } from '../reference/model';
import { MemorySource } from '../source';

/** The tiny model with `value` at element `index` of F32 tensor `name`. */
async function poisoned(name: string, index: number, value: number) {
  const bytes = tinyLlama({
    dim: 64,
    nLayers: 1,
    vocabSize: 128,
    type: GgmlType.F32,
    editTensors: (ts) =>
      ts.map((t) => {
        if (t.name !== name) return t;
        const data = t.data.slice();
        new Float32Array(data.buffer)[index] = value;
        return { ...t, data };
      }),
  });
  const source = new MemorySource(bytes, `${name}-${value}.gguf`);
  const file = await readGguf(source);
  return { source, file, config: llamaConfigFromGguf(file) };
}

const CASES: [string, string, number, number][] = [
  ['a NaN in output_norm.weight (every logit NaN)', 'output_norm.weight', 5, Number.NaN],
  ['an Inf in output.weight (one logit ±Inf)', 'output.weight', 64 * 17 + 3, Number.POSITIVE_INFINITY],
  [
    'an Inf in blk.0.attn_norm.weight (NaN spreads through the layer)',
    'blk.0.attn_norm.weight',
    0,
    Number.POSITIVE_INFINITY,
  ],
];
const sampling = (temperature: number): SamplingOptions => ({ temperature, topP: 0.9, topK: 0, seed: 3 });

/** Prefill a prompt, then decode: the first step must already fail, and so must any later one. */
async function expectNonFinite(runner: ModelRunner, temperature: number) {
  runner.reset(2, sampling(temperature));
  const e = await engineError(() => runner.step([[1, 2, 3], [4]]));
  expect(e.code).toBe('non-finite');
  expect(e.message).toMatch(
    /^the model produced NaN\/Inf values \(.*\): the file's weights are probably corrupt/,
  );
}

describe('NaN/Inf weights stop generation with EngineError("non-finite")', () => {
  describe('CPU reference', () => {
    for (const [label, name, index, value] of CASES) {
      for (const temperature of [0, 0.6]) {
        it(`${label}, T=${temperature}`, async () => {
          const { source, file, config } = await poisoned(name, index, value);
          const model = await ReferenceModel.load(source, file, config, { maxBatch: 2, maxSeqLen: 16 });
          await expectNonFinite(model, temperature);
        });
      }
    }
  });

  describe('GPU (Dawn on SwiftShader)', () => {
    for (const [label, name, index, value] of CASES) {
      it(`${label}, T=0 and T=0.6`, async () => {
        const ctx = await createTestContext();
        const { source, file, config } = await poisoned(name, index, value);
        const model = await GpuModel.load(ctx, source, file, config, { maxBatch: 2, maxSeqLen: 16 });
        try {
          for (const temperature of [0, 0.6]) await expectNonFinite(model, temperature);
        } finally {
          model.dispose();
        }
      });
    }
  });

  it('the same file without the poison samples normally on both (the test model is sound)', async () => {
    const { source, file, config } = await poisoned('output_norm.weight', 5, 1);
    const cpu = await ReferenceModel.load(source, file, config, { maxBatch: 2, maxSeqLen: 16 });
    const gpu = await GpuModel.load(await createTestContext(), source, file, config, {
      maxBatch: 2,
      maxSeqLen: 16,
    });
    try {
      for (const m of [cpu, gpu]) m.reset(2, sampling(0));
      const want = await cpu.step([[1, 2, 3], [4]]);
      expect(want.every((t) => Number.isInteger(t) && t >= 0 && t < 128)).toBe(true);
      expect(await gpu.step([[1, 2, 3], [4]])).toEqual(want);
    } finally {
      gpu.dispose();
    }
  });
});
