/**
 * Elementwise kernels (shaders/elementwise.wgsl) as a `KernelSpec`: `gather`, the last row of each
 * sequence. Self-check against a CPU copy on random inputs, the output poisoned with NaN first.
 */
import elementwiseSource from '../../../shaders/elementwise.wgsl?raw';
import type { KernelSpec } from './check/registry';
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
import { computePipeline, shaderModule } from './pipelines';

export const elementwiseSpec: KernelSpec = {
  name: 'elementwise',
  source: elementwiseSource,
  async check(device, source) {
    const module = shaderModule(device, source, 'check:elementwise');
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
