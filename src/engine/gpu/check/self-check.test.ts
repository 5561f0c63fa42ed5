import { describe, expect, it } from 'vitest';
import { EngineError } from '../../errors';
import { elementwiseSpec } from '../elementwise';
import { type KernelSpec, KernelRegistry } from './registry';
import { SelfCheckCache, selfCheckKernels } from './self-check';
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
