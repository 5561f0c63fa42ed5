import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { LoadedModel } from '../../engine';
import { EngineError } from '../../errors';
import { readGguf } from '../../gguf';
import { GgmlType } from '../../gguf/types';
import { MemorySource } from '../../source';
import { elementwiseSpec } from '../elementwise';
import { modelKernelNames, registerAllKernels } from '../kernels';
import { type KernelSpec, KernelRegistry } from './registry';
import { SelfCheckCache, selfCheckKernels, selfCheckModel } from './self-check';
import { makeSmallLlama } from './test-model';
import { createTestContext } from './testing';

/** The gather kernel (small, fast to compile), counting how often its check runs. */
function counted(source = elementwiseSpec.source): { spec: KernelSpec; runs: () => number } {
  let runs = 0;
  return {
    spec: {
      name: elementwiseSpec.name,
      source,
      check: (device, src) => {
        runs++;
        return elementwiseSpec.check(device, src);
      },
    },
    runs: () => runs,
  };
}

describe('load-time kernel self-checks (SwiftShader)', () => {
  it('run once per adapter and app version, then come from the cache (and its persistence hook)', async () => {
    const ctx = await createTestContext();
    const { spec, runs } = counted();
    const registry = new KernelRegistry();
    registry.register(spec);
    let saved: readonly string[] = [];
    const persist = {
      load: async () => saved,
      save: async (keys: readonly string[]) => {
        saved = keys;
      },
    };
    const store = new SelfCheckCache(persist);
    const first = await selfCheckKernels(ctx, registry, ['elementwise'], { appVersion: '1.0.0', store });
    expect(first).toEqual({ ran: ['elementwise'], cached: [] });
    const again = await selfCheckKernels(ctx, registry, ['elementwise'], { appVersion: '1.0.0', store });
    expect(again).toEqual({ ran: [], cached: ['elementwise'] });
    expect(runs()).toBe(1);
    // A new session with the persisted keys: still cached.
    const reloaded = new SelfCheckCache(persist);
    await selfCheckKernels(ctx, registry, ['elementwise'], { appVersion: '1.0.0', store: reloaded });
    expect(runs()).toBe(1);
    // Another app version checks again.
    await selfCheckKernels(ctx, registry, ['elementwise'], { appVersion: '1.0.1', store });
    expect(runs()).toBe(2);
  });

  it('a kernel that is wrong on this adapter rejects the load, naming kernel and adapter, and is not cached', async () => {
    const ctx = await createTestContext();
    const broken = elementwiseSpec.source.replace('seqs[s].x * DIM', '(seqs[s].x + 1u) * DIM');
    expect(broken).not.toBe(elementwiseSpec.source);
    const { spec, runs } = counted(broken);
    const registry = new KernelRegistry();
    registry.register(spec);
    const store = new SelfCheckCache();
    for (let attempt = 1; attempt <= 2; attempt++) {
      const err = await selfCheckKernels(ctx, registry, ['elementwise'], { appVersion: '1', store }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('kernel-rejected');
      expect((err as EngineError).message).toMatch(
        /kernel elementwise gives wrong results on this GPU \(.+\)/,
      );
      expect(runs()).toBe(attempt);
    }
  });
});

const MINUTES = 60_000;

describe('the load-time self-check of a model (SwiftShader)', () => {
  it(
    'checks the kernels the model uses once, then takes them from the cache',
    async () => {
      const ctx = await createTestContext();
      const bytes = makeSmallLlama({
        vocab: 200,
        dim: 64,
        nLayers: 1,
        nHeads: 4,
        nKvHeads: 2,
        ffnDim: 96,
        bodyType: GgmlType.Q4_0,
        headType: GgmlType.Q8_0,
        tied: false,
        ropeFreqs: false,
        seed: 5,
      });
      const file = await readGguf(new MemorySource(bytes));
      const expected = [
        'rmsnorm',
        'rope',
        'attention',
        'sampling',
        'elementwise',
        'embedding_q4_0',
        'linear_q4_0',
        'linear_q8_0',
      ];
      expect(modelKernelNames(file).sort()).toEqual([...expected].sort());
      // Under --quantization-encoding float32 every matrix is f32.
      expect(modelKernelNames(file, 'float32')).toEqual(
        expect.arrayContaining(['embedding_f32', 'linear_f32']),
      );
      expect(modelKernelNames(file, 'float32')).not.toContain('linear_q4_0');
      const registry = registerAllKernels(new KernelRegistry());
      const store = new SelfCheckCache();
      // At the model's shapes, as LoadedModel.load runs it (small pipelines: quick to compile).
      const shape = {
        dim: 64,
        nHeads: 4,
        nKvHeads: 2,
        headDim: 16,
        normEps: 1e-5,
        vocabSize: 200,
        maxSeqLen: 80,
      };
      const first = await selfCheckModel(ctx, registry, file, { store, shape });
      expect(first.ran.sort()).toEqual([...expected].sort());
      expect(first.cached).toEqual([]);
      const second = await selfCheckModel(ctx, registry, file, { store, shape });
      expect(second.ran).toEqual([]);
      expect(second.cached.sort()).toEqual([...expected].sort());
    },
    10 * MINUTES,
  );

  it(
    'a kernel this GPU computes wrongly fails LoadedModel.load before any weight is read',
    async () => {
      const ctx = await createTestContext();
      // A "driver" that miscompiles RMSNorm (the mean square halved): the shader text the GPU gets differs from
      // the registry's, as a compiler bug would make it behave.
      const real = ctx.device;
      const miscompiling = new Proxy(real, {
        get(target, prop) {
          if (prop === 'createShaderModule') {
            return (d: GPUShaderModuleDescriptor) =>
              target.createShaderModule({
                ...d,
                code: d.code.replace('f32(DIM) + EPS', '2.0 * f32(DIM) + EPS'),
              });
          }
          const v = Reflect.get(target, prop, target);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      const fixture = readFileSync(join(__dirname, '../../../../fixtures/tiny-q4_0.gguf'));
      const phases = new Set<string>();
      const err = await LoadedModel.load(new MemorySource(fixture, 'tiny-q4_0.gguf'), {
        device: 'gpu',
        gpuContext: { ...ctx, device: miscompiling },
        kernelSelfCheck: new SelfCheckCache(),
        onProgress: (p) => phases.add(p.phase),
      }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EngineError);
      expect((err as EngineError).code).toBe('kernel-rejected');
      expect((err as EngineError).message).toMatch(/kernel rmsnorm gives wrong results on this GPU \(.+\)/);
      expect((err as EngineError).message).toMatch(/--device cpu/);
      expect(phases.has('weights')).toBe(false);
    },
    10 * MINUTES,
  );
});
