import { describe, expect, it } from 'vitest';
import { llamaConfigFromGguf } from '../gguf/config';
import { readGguf } from '../gguf/reader';
import { GgmlType } from '../gguf/types';
import { ReferenceModel } from '../reference/model';
import { MemorySource } from '../source';
import { loadCustomOps } from './custom-ops';
import { registerAllKernels } from './kernels';
import { GpuModel } from './model';
import { KernelRegistry } from './check/registry';
import { makeSmallLlama } from './check/test-model';
import { createTestContext, relError } from './check/testing';

// A correct RMSNorm with another loop shape: 64 threads, each summing a contiguous slice, and the
// reduction done by thread 0 alone.
const GOOD_RMSNORM = /* wgsl */ `
override DIM: u32;
override EPS: f32;
struct Params { n_rows: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
var<workgroup> sums: array<f32, 64>;
var<workgroup> scale: f32;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.x;
  if (row >= params.n_rows) { return; }
  let per = (DIM + 63u) / 64u;
  let lo = min(lid * per, DIM);
  let hi = min(lo + per, DIM);
  var s = 0.0;
  for (var i = lo; i < hi; i++) { let v = x[row * DIM + i]; s += v * v; }
  sums[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var total = 0.0;
    for (var k = 0u; k < 64u; k++) { total += sums[k]; }
    scale = inverseSqrt(total / f32(DIM) + EPS);
  }
  workgroupBarrier();
  for (var i = lo; i < hi; i++) { y[row * DIM + i] = x[row * DIM + i] * scale * w[i]; }
}`;

describe('custom kernels (--custom-ops-path)', () => {
  it('a correct rewritten rmsnorm is accepted and the model runs with it', async () => {
    const ctx = await createTestContext();
    const registry = new KernelRegistry();
    const accepted = await loadCustomOps(ctx, registry, new Map([['rmsnorm', GOOD_RMSNORM]]));
    expect(accepted.get('rmsnorm')?.ok).toBe(true);
    expect(registry.source('rmsnorm')).toBe(GOOD_RMSNORM);
    const bytes = makeSmallLlama({
      vocab: 200,
      dim: 64,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 96,
      bodyType: GgmlType.F32,
      headType: GgmlType.F32,
      tied: false,
      ropeFreqs: false,
      seed: 3,
    });
    const source = new MemorySource(bytes);
    const file = await readGguf(source);
    const config = llamaConfigFromGguf(file);
    const gpu = await GpuModel.load(ctx, source, file, config, { maxSeqLen: 16, registry, keepLogits: true });
    const cpu = await ReferenceModel.load(source, file, config, { maxSeqLen: 16 });
    try {
      expect(gpu.customKernels).toEqual(['rmsnorm']);
      const greedy = { temperature: 0, topP: 1, topK: 0, seed: 0 };
      gpu.reset(1, greedy);
      cpu.reset(1, greedy);
      const [g] = await gpu.step([[5, 6, 7]]);
      const [c] = await cpu.step([[5, 6, 7]]);
      expect(g).toBe(c);
      expect(relError(await gpu.lastLogits(0), await cpu.lastLogits(0)).maxRelError).toBeLessThanOrEqual(
        1e-3,
      );
    } finally {
      gpu.dispose();
    }
  });

  it('a kernel that forgets eps is rejected with the mismatch', async () => {
    const ctx = await createTestContext();
    const wrong = GOOD_RMSNORM.replace('f32(DIM) + EPS', 'f32(DIM) + 0.0 * EPS');
    const err = await loadCustomOps(ctx, new KernelRegistry(), new Map([['rmsnorm', wrong]])).catch((e) => e);
    expect(err.code).toBe('kernel-rejected');
    expect(err.message).toMatch(/disagrees with the reference/);
  });

  it('a kernel with a syntax error is rejected with the compiler message', async () => {
    const ctx = await createTestContext();
    const bad = GOOD_RMSNORM.replace('var s = 0.0;', 'var s = 0.0');
    const err = await loadCustomOps(ctx, new KernelRegistry(), new Map([['rmsnorm', bad]])).catch((e) => e);
    expect(err.code).toBe('kernel-rejected');
    expect(err.message).toMatch(/rmsnorm does not compile/);
    expect(err.message).toMatch(/rmsnorm\.wgsl:\d+:\d+: .*expected ';'/);
  });

  it('a kernel that drops the weight binding is rejected as invalid', async () => {
    const ctx = await createTestContext();
    const wrong = GOOD_RMSNORM.replace('* scale * w[i];', '* scale;');
    const err = await loadCustomOps(ctx, new KernelRegistry(), new Map([['rmsnorm', wrong]])).catch((e) => e);
    expect(err.code).toBe('kernel-rejected');
    expect(err.message).toMatch(/rmsnorm is invalid: .*binding index 2/);
  });

  it('a kernel that applies the wrong norm weight is rejected with the mismatch', async () => {
    const ctx = await createTestContext();
    const wrong = GOOD_RMSNORM.replace('* scale * w[i];', '* scale * w[0];');
    const registry = new KernelRegistry();
    const err = await loadCustomOps(ctx, registry, new Map([['rmsnorm', wrong]])).catch((e) => e);
    expect(err.code).toBe('kernel-rejected');
    expect(err.message).toMatch(/disagrees with the reference .*expected/);
    // The built-in stays in use.
    expect(registry.source('rmsnorm')).toBe(registry.spec('rmsnorm').source);
  });

  it('a file named after no kernel is rejected with the list of names', async () => {
    const ctx = await createTestContext();
    const err = await loadCustomOps(ctx, new KernelRegistry(), new Map([['rms_norm', GOOD_RMSNORM]])).catch(
      (e) => e,
    );
    expect(err.code).toBe('kernel-rejected');
    expect(err.message).toMatch(/does not replace any built-in kernel.*rmsnorm/);
  });

  it('every built-in kernel is registered under its documented name', () => {
    const names = registerAllKernels(new KernelRegistry()).names();
    for (const n of [
      'rmsnorm',
      'rope',
      'attention',
      'sampling',
      'elementwise',
      'linear_q4_0',
      'linear_q6_k',
      'embedding_q4_0',
    ]) {
      expect(names).toContain(n);
    }
  });
});
