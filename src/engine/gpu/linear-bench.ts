/**
 * Linear-kernel benchmark: wall time of many dispatches of one Linear in one compute pass, and the
 * weight bandwidth that implies. For the GPU machine (e.g. Llama-3-8B shapes: 4096 × 4096,
 * 28672 × 4096 gate+up, 4096 × 14336 down, 128256 × 4096 head); on SwiftShader the numbers say
 * nothing about speed. The weights are random bytes (speed does not depend on the values), so
 * building an 8B-sized tensor costs no quantizer time.
 */
import type { GgmlType } from '../gguf/types';
import { tensorBytes } from '../gguf/types';
import type { GpuContext } from './device';
import { type Epilogue, Linear, type LinearPath, type ModuleProvider } from './linear';
import type { KernelRegistry } from './check/registry';
import { createStorage, createUniform, makeRng } from './check/testing';
import { destroyWeight, uploadWeight } from './weights';

export interface LinearBenchResult {
  path: LinearPath;
  /** Wall milliseconds per dispatch of the whole weight (all parts), submit cost amortized. */
  msPerCall: number;
  /** GPU bytes of the weight read per call / time. */
  weightGBps: number;
  weightBytes: number;
}

export async function benchLinear(
  ctx: Pick<GpuContext, 'device' | 'limits'> & { features?: GpuContext['features'] },
  registry: ModuleProvider | KernelRegistry,
  opts: {
    type: GgmlType;
    rows: number;
    cols: number;
    tokens: number;
    iterations?: number;
    path?: LinearPath;
    epilogue?: Epilogue;
  },
): Promise<LinearBenchResult> {
  const { device } = ctx;
  const iterations = opts.iterations ?? 100;
  const bytes = new Uint8Array(tensorBytes(opts.type, opts.rows * opts.cols));
  // Random bytes, 4 at a time: any bit pattern is a valid block for timing purposes.
  const words = new Uint32Array(bytes.buffer, 0, bytes.length >> 2);
  const rng = makeRng(1);
  for (let i = 0; i < words.length; i++) words[i] = (rng() * 4294967296) >>> 0;
  const weight = uploadWeight(ctx, 'bench.W', opts.type, bytes, opts.rows, opts.cols);
  const outCols = opts.epilogue === 'swiglu' ? opts.rows / 2 : opts.rows;
  const x = createStorage(device, opts.tokens * opts.cols * 4, 'bench.x');
  const y = createStorage(device, opts.tokens * outCols * 4, 'bench.y');
  const params = createUniform(device, [opts.tokens], 'bench.params');
  const linear = new Linear(ctx, registry, weight, { x, y, params, maxTokens: opts.tokens }, opts);
  const path = opts.path ?? linear.defaultPath(opts.tokens);
  const run = async (n: number) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < n; i++) linear.encode(pass, opts.tokens, path);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await run(3); // pipelines compiled, caches warm
  const t0 = performance.now();
  await run(iterations);
  const ms = (performance.now() - t0) / iterations;
  linear.destroy();
  destroyWeight(weight);
  for (const b of [x, y, params]) b.destroy();
  return { path, msPerCall: ms, weightGBps: weight.bytes / (ms * 1e6), weightBytes: weight.bytes };
}
