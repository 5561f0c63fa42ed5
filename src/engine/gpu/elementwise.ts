/**
 * Elementwise kernels (shaders/elementwise.wgsl) as a `KernelSpec`: `gather`, the last row of each
 * sequence. Self-check against a CPU copy on random inputs, the output poisoned with NaN first.
 */
import elementwiseSource from '../../../shaders/elementwise.wgsl?raw';
import type { CheckResult, KernelSpec, ModelShape } from './check/registry';
import {
  createStorage,
  createUniform,
  dispatch,
  makeRng,
  poison,
  randomFloats,
  readF32,
  runCases,
} from './check/testing';
import { cachedPipeline, shaderModule } from './pipelines';

interface GatherCase {
  tokens: number;
  seqs: number;
  dim: number;
}

/** One row, odd sizes, a long row. */
export const GATHER_CASES: readonly GatherCase[] = [
  { tokens: 1, seqs: 1, dim: 5 },
  { tokens: 17, seqs: 3, dim: 33 },
  { tokens: 129, seqs: 4, dim: 256 },
];

/** One case of the load-time check (one pipeline). */
export const GATHER_QUICK_CASES: readonly GatherCase[] = [{ tokens: 17, seqs: 3, dim: 33 }];

export function checkGatherCases(
  device: GPUDevice,
  source: string,
  cases: readonly GatherCase[],
  seed: number,
): Promise<CheckResult> {
  const module = shaderModule(device, source, 'check:elementwise');
  const rng = makeRng(seed);
  return runCases(
    cases,
    async ({ tokens, seqs, dim }) => {
      const x = randomFloats(tokens * dim, rng, 1);
      const meta = new Uint32Array(4 * seqs);
      for (let s = 0; s < seqs; s++) meta[4 * s] = Math.floor(rng() * tokens);
      const y = createStorage(device, seqs * dim * 4, 'y');
      poison(device, y);
      const pipeline = cachedPipeline(device, module, 'gather', { DIM: dim }, 'gather');
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
}

export const elementwiseSpec: KernelSpec = {
  name: 'elementwise',
  source: elementwiseSource,
  check: (device, source) => checkGatherCases(device, source, GATHER_CASES, 0x5eed05 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkGatherCases(
      device,
      source,
      shape ? [{ tokens: 17, seqs: 3, dim: shape.dim }] : GATHER_QUICK_CASES,
      0x5eed05 ^ Date.now(),
    ),
};
