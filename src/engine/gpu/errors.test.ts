import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import { UncapturedErrors, withGpuErrorScopes } from './errors';
import { createTestContext } from './check/testing';

// SwiftShader's maxBufferSize is 1 GiB, and a buffer of exactly that size fails to allocate:
// a deterministic out-of-memory error that passes validation.
const GiB = 2 ** 30;

describe('GPU errors become EngineErrors (SwiftShader)', () => {
  it('an allocation that runs out of memory is gpu-out-of-memory naming the size needed', async () => {
    const { device, limits } = await createTestContext();
    expect(limits.maxBufferSize).toBeGreaterThanOrEqual(GiB);
    const err = await withGpuErrorScopes(device, 'while loading the model', 3 * GiB, () => {
      device.createBuffer({ size: GiB, usage: GPUBufferUsage.STORAGE }).destroy();
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('gpu-out-of-memory');
    expect((err as EngineError).message).toMatch(/3\.00 GiB of GPU memory needed/);
    expect((err as EngineError).message).toMatch(/smaller model|shorter context/);
  });

  it('a validation error is internal, and a clean run returns its value', async () => {
    const { device } = await createTestContext();
    await expect(
      withGpuErrorScopes(device, 'in a test', 0, () => {
        device.createBuffer({ size: 6, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.STORAGE });
      }),
    ).rejects.toMatchObject({ code: 'internal' });
    expect(await withGpuErrorScopes(device, 'in a test', 0, () => 42)).toBe(42);
  });

  it('an out-of-memory error outside any scope fails the next check', async () => {
    const { device } = await createTestContext();
    const watch = new UncapturedErrors(device, 'while running the model', 2 * GiB);
    try {
      expect(() => watch.check()).not.toThrow();
      device.createBuffer({ size: GiB, usage: GPUBufferUsage.STORAGE }).destroy();
      await device.queue.onSubmittedWorkDone();
      for (let i = 0; i < 50; i++) {
        try {
          watch.check();
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(() => watch.check()).toThrow(expect.objectContaining({ code: 'gpu-out-of-memory' }));
      expect(() => watch.check()).toThrow(/2\.00 GiB/);
    } finally {
      watch.dispose();
    }
  });
});
