import { describe, expect, it } from 'vitest';
import {
  createStorage,
  createTestContext,
  createUniform,
  dispatch,
  makeRng,
  POISON_NAN_BITS,
  poison,
  randomFloats,
  readF32,
  readU32,
  relError,
  runCases,
  withValidation,
} from './testing';

// A tiny kernel that doubles the first n values (n from a uniform) and leaves the rest untouched.
const DOUBLE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> n: vec4<u32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < n.x) { y[g.x] = 2.0 * x[g.x]; }
}`;

describe('GPU test helpers', () => {
  it('rng is deterministic and random floats stay in range', () => {
    const a = randomFloats(100, makeRng(7), 3);
    const b = randomFloats(100, makeRng(7), 3);
    expect(a).toEqual(b);
    expect(Math.max(...a.map(Math.abs))).toBeLessThan(3);
    expect(new Set(a).size).toBe(100);
  });

  it('relError scales by the largest reference value and flags NaN', () => {
    expect(relError([1, 2.5], [1, 2]).maxRelError).toBeCloseTo(0.25);
    expect(relError([1, Number.NaN], [1, 2])).toEqual({ maxRelError: Number.POSITIVE_INFINITY, index: 1 });
    expect(relError([1], [1, 2]).maxRelError).toBe(Number.POSITIVE_INFINITY);
  });

  it('runCases reports the first failing case with its parameters', async () => {
    const r = await runCases(
      [{ n: 1 }, { n: 2 }, { n: 3 }],
      async (c) => ({ got: [c.n === 2 ? 5 : 1], ref: [1] }),
      1e-4,
    );
    expect(r.ok).toBe(false);
    expect(r.detail).toContain('{"n":2}');
    expect(r.maxRelError).toBeCloseTo(4);
  });

  it('runCases holds a case to its own tolerance when it gives one (the integer mat-vec rounding slack)', async () => {
    const run = async (c: { err: number; tol?: number }) => ({
      got: [1 + c.err],
      ref: [1],
      tolerance: c.tol,
    });
    const loose = await runCases([{ err: 0.01, tol: 0.02 }, { err: 0 }], run, 1e-4);
    expect(loose.ok, loose.detail).toBe(true);
    expect(loose.maxRelError).toBeCloseTo(0.01);
    const tight = await runCases([{ err: 0.01, tol: 0.005 }], run, 1);
    expect(tight.ok).toBe(false);
    expect(tight.detail).toContain('tolerance 5.00e-3');
  });

  it('dispatches, poisons and reads back; unwritten outputs stay NaN', async () => {
    const ctx = await createTestContext();
    const { device } = ctx;
    const x = randomFloats(100, makeRng(1));
    const got = await withValidation(device, async () => {
      const pipeline = device.createComputePipeline({
        layout: 'auto',
        compute: { module: device.createShaderModule({ code: DOUBLE }), entryPoint: 'main' },
      });
      const xb = createStorage(device, x, 'x');
      const yb = createStorage(device, 400, 'y');
      poison(device, yb);
      expect((await readU32(device, yb))[0]).toBe(POISON_NAN_BITS);
      await dispatch(device, pipeline, [xb, yb, createUniform(device, [90], 'n')], [2]);
      return readF32(device, yb);
    });
    for (let i = 0; i < 90; i++) expect(got[i]).toBe(2 * x[i]);
    for (let i = 90; i < 100; i++) expect(got[i]).toBeNaN();
  });

  it('withValidation turns a validation error into an exception', async () => {
    const { device } = await createTestContext();
    await expect(
      withValidation(device, () => {
        device.createBuffer({ size: 4, usage: 0x01 | 0x80 }); // MAP_READ | STORAGE is invalid
      }),
    ).rejects.toThrow(/validation/);
  });
});
