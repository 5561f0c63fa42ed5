import { describe, expect, it } from 'vitest';
import type { ModelInspection } from '../worker/api';
import { gpuFit, limitsInWords } from './download-check';

const inspection = (gpu: ModelInspection['gpu'], problems: string[] = []) =>
  ({ gpu, runnable: problems.length === 0, problems }) as ModelInspection;
/** An 8B q4_0 at the context a load picks: 4.7 GB of weights, 0.9 GB of KV cache. */
const big = { bytes: 5.8e9, weightBytes: 4.66e9, kvBytes: 0.94e9, maxSeqLen: 8192, maxBatch: 4 };

describe('the download dialog on GPU memory', () => {
  it('states the estimate: weights + KV cache at the context and batch a load picks', () => {
    expect(gpuFit(inspection(big), 16).estimate).toBe(
      'about 5.8 GB: weights 4.7 GB + KV cache 940 MB at 8,192 positions × 4 sequences',
    );
    expect(gpuFit(inspection({ ...big, maxBatch: 1 }), 16).estimate).toMatch(/× 1 sequence$/);
  });

  it('warns when the device reports less memory than the estimate, or the file cannot run', () => {
    expect(gpuFit(inspection(big), 16).warning).toBeUndefined();
    expect(gpuFit(inspection(big), undefined).warning).toBeUndefined(); // nothing known says so
    expect(gpuFit(inspection(big), 4).warning).toMatch(
      /reports about 4 GB of memory .* needs 5\.8 GB .* will likely not fit/,
    );
    expect(gpuFit(inspection(big, ['unsupported tensor type IQ2_XXS']), 16).warning).toBe(
      'This version cannot run this file: unsupported tensor type IQ2_XXS',
    );
    expect(gpuFit(inspection(undefined), 16)).toEqual({ estimate: undefined, warning: undefined });
  });

  it('names the adapter limits, and that WebGPU tells no memory size', () => {
    expect(limitsInWords({ maxBufferSize: 4_294_967_296, maxStorageBufferBindingSize: 2_147_483_648 })).toBe(
      'one buffer up to 4.3 GB, one binding up to 2.1 GB (large matrices are split to fit); WebGPU does not tell how much memory the GPU has',
    );
  });
});
