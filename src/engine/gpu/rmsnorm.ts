/**
 * RMSNorm rows (attn_norm, ffn_norm, output_norm): shaders/rmsnorm.wgsl as a `KernelSpec`, with its
 * self-check against the CPU reference (src/engine/reference/ops.ts) on fresh random inputs of
 * awkward sizes, the output poisoned with NaN first. Binding contract: the .wgsl header and
 * docs/kernels.md.
 */
import rmsnormSource from '../../../shaders/rmsnorm.wgsl?raw';
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
  runCases,
} from './check/testing';
import { cachedPipeline, shaderModule } from './pipelines';

interface RmsnormCase {
  rows: number;
  dim: number;
  /** |x| < scale */
  scale: number;
  /** Default 1e-5. */
  eps?: number;
}

/** Rows 1 … 17, dims odd, one workgroup's worth, and past it. */
export const RMSNORM_CASES: readonly RmsnormCase[] = [
  { rows: 1, dim: 5, scale: 3 },
  { rows: 5, dim: 17, scale: 3 },
  { rows: 3, dim: 129, scale: 3 },
  { rows: 17, dim: 33, scale: 3 },
  { rows: 2, dim: 256, scale: 3 },
  { rows: 4, dim: 600, scale: 3 },
  // Activations so small that eps dominates the mean square: a kernel that drops eps fails.
  { rows: 3, dim: 64, scale: 0.003 },
];

/** One case of the load-time check: several rows of an odd dim (one pipeline). */
export const RMSNORM_QUICK_CASES: readonly RmsnormCase[] = [{ rows: 3, dim: 129, scale: 3 }];

export function checkRmsnormCases(
  device: GPUDevice,
  source: string,
  cases: readonly RmsnormCase[],
  seed: number,
): Promise<CheckResult> {
  const module = shaderModule(device, source, 'check:rmsnorm');
  const rng = makeRng(seed);
  return runCases(
    cases,
    async ({ rows, dim, scale, eps = 1e-5 }) => {
      const x = randomFloats(rows * dim, rng, scale);
      const w = randomFloats(dim, rng, 2);
      const pipeline = cachedPipeline(device, module, 'main', { DIM: dim, EPS: eps }, 'rmsnorm');
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
}

export const rmsnormSpec: KernelSpec = {
  name: 'rmsnorm',
  source: rmsnormSource,
  check: (device, source) => checkRmsnormCases(device, source, RMSNORM_CASES, 0x5eed01 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkRmsnormCases(
      device,
      source,
      shape ? [{ rows: 3, dim: shape.dim, scale: 3, eps: shape.normEps }] : RMSNORM_QUICK_CASES,
      0x5eed01 ^ Date.now(),
    ),
};
