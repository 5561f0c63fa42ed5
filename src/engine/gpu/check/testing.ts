/**
 * Shared helpers for GPU kernel checks and tests (Dawn on SwiftShader in Node, any WebGPU device in
 * the browser). Used by every `KernelSpec.check` (so `--custom-ops-path` can verify a user's WGSL in
 * the browser too) and by the Vitest kernel tests. API, stable — other engineers build on it:
 *
 *   createTestContext(): Promise<GpuContext>
 *       Node only: a Dawn device (SwiftShader here) with the adapter's real limits, created once
 *       per process and cached. `webgpu` is imported dynamically so engine bundles never see it.
 *   makeRng(seed): () => number                     uniform [0, 1), deterministic (mulberry32)
 *   randomFloats(n, rng, scale = 1): Float32Array   uniform in [−scale, scale)
 *   randomInts(n, rng, max): Uint32Array            uniform integers in [0, max)
 *   createStorage(device, data | byteSize, label, usage?): GPUBuffer
 *       STORAGE | COPY_SRC | COPY_DST buffer, filled with `data` (any typed array) or zeroed.
 *   createUniform(device, u32s, label): GPUBuffer   UNIFORM | COPY_DST, ≥ 16 bytes
 *   poison(device, buffer, value = 'nan'): void     fill the whole buffer with the quiet-NaN bit
 *       pattern 0x7fc00000 ('nan') or an f32 value (e.g. 1e30) so unwritten outputs can't pass
 *   readF32 / readU32(device, buffer, byteOffset = 0, count?): Promise<Float32Array | Uint32Array>
 *   F32_TOLERANCE = 1e-4                            an f32 kernel vs the f64-accumulating reference
 *   relError(got, ref): { maxRelError, index }
 *       max_i |got_i − ref_i| / max(max_j |ref_j|, 1e-30); NaN/∞ in `got` give Infinity.
 *   runCases(cases, run, tolerance, label?): Promise<CheckResult>
 *       run(case) → { got, ref, tolerance? }; stops at the first case over `tolerance` (the
 *       case's own when it gives one) and reports its parameters (label(case), else JSON) and the
 *       worst element in `detail`.
 *   withValidation(device, fn): Promise<T>
 *       runs fn inside pushErrorScope('validation') + ('out-of-memory'); throws on any error.
 *   dispatch(device, pipeline, bindings, workgroups): Promise<void>
 *       one-shot: bind group 0 from `bindings` (binding i = buffers[i]), one pass, submit, wait.
 */
import type { GpuContext } from '../device';
import { createGpuContext } from '../device';
import type { CheckResult } from './registry';
import { mulberry32 } from '../../random';

// ---------------------------------------------------------------------------------------------
// Device
// ---------------------------------------------------------------------------------------------

let cached: Promise<GpuContext> | undefined;
/**
 * The Dawn instance must outlive its devices: if it is garbage-collected while a device is alive,
 * the process aborts at exit ("The futex facility returned an unexpected error code").
 */
let keepInstance: GPU | undefined;

/** A Dawn device in Node, shared by all tests of one process (creating one costs ~0.5 s). */
export function createTestContext(): Promise<GpuContext> {
  cached ??= (async () => {
    // A variable specifier keeps Vite/esbuild from bundling the Node-only package into engine code.
    const specifier = 'webgpu';
    const mod = (await import(/* @vite-ignore */ specifier)) as {
      create: (opts: string[]) => GPU;
      globals: Record<string, unknown>;
    };
    Object.assign(globalThis, mod.globals);
    keepInstance = mod.create([]);
    return createGpuContext(keepInstance);
  })();
  return cached;
}

// ---------------------------------------------------------------------------------------------
// Random inputs
// ---------------------------------------------------------------------------------------------

/** Deterministic uniform [0, 1) generator (mulberry32): a failing case can be replayed by seed. */
export const makeRng: (seed: number) => () => number = mulberry32;

export function randomFloats(n: number, rng: () => number, scale = 1): Float32Array<ArrayBuffer> {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * rng() - 1) * scale;
  return out;
}

export function randomInts(n: number, rng: () => number, max: number): Uint32Array<ArrayBuffer> {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(max - 1, Math.floor(rng() * max));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST (GPUBufferUsage may not be global yet)

export function createStorage(
  device: GPUDevice,
  data: ArrayBufferView | number,
  label: string,
  usage = STORAGE_USAGE,
): GPUBuffer {
  const byteLength = typeof data === 'number' ? data : data.byteLength;
  const size = Math.max(16, Math.ceil(byteLength / 4) * 4);
  const buffer = device.createBuffer({ size, usage, label, mappedAtCreation: typeof data !== 'number' });
  if (typeof data !== 'number') {
    new Uint8Array(buffer.getMappedRange()).set(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
    buffer.unmap();
  }
  return buffer;
}

export function createUniform(device: GPUDevice, u32s: ArrayLike<number>, label: string): GPUBuffer {
  const words = new Uint32Array(Math.max(4, Math.ceil(u32s.length / 4) * 4));
  words.set(Array.from(u32s));
  return createStorage(device, words, label, 0x40 | 0x08); // UNIFORM | COPY_DST
}

export const POISON_NAN_BITS = 0x7fc00000;

/** Overwrite every byte of `buffer` (it needs COPY_DST) with NaN or the given f32 value. */
export function poison(device: GPUDevice, buffer: GPUBuffer, value: 'nan' | number = 'nan'): void {
  const words = new Uint32Array(buffer.size / 4);
  if (value === 'nan') words.fill(POISON_NAN_BITS);
  else new Float32Array(words.buffer).fill(value);
  device.queue.writeBuffer(buffer, 0, words);
}

async function readBytes(device: GPUDevice, buffer: GPUBuffer, byteOffset: number, byteLength: number) {
  const staging = device.createBuffer({ size: byteLength, usage: 0x01 | 0x08, label: 'readback' }); // MAP_READ | COPY_DST
  const enc = device.createCommandEncoder({ label: 'readback' });
  enc.copyBufferToBuffer(buffer, byteOffset, staging, 0, byteLength);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(1); // GPUMapMode.READ
  const copy = new Uint8Array(staging.getMappedRange()).slice();
  staging.unmap();
  staging.destroy();
  return copy.buffer;
}

export async function readF32(
  device: GPUDevice,
  buffer: GPUBuffer,
  byteOffset = 0,
  count = (buffer.size - byteOffset) / 4,
): Promise<Float32Array> {
  return new Float32Array(await readBytes(device, buffer, byteOffset, count * 4));
}

export async function readU32(
  device: GPUDevice,
  buffer: GPUBuffer,
  byteOffset = 0,
  count = (buffer.size - byteOffset) / 4,
): Promise<Uint32Array> {
  return new Uint32Array(await readBytes(device, buffer, byteOffset, count * 4));
}

// ---------------------------------------------------------------------------------------------
// Comparison and case tables
// ---------------------------------------------------------------------------------------------

/** f32 kernels vs the f64-accumulating reference: a few ulps of the largest value. */
export const F32_TOLERANCE = 1e-4;

/** Largest error relative to the reference's largest magnitude; NaN/∞ anywhere count as Infinity. */
export function relError(
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
): { maxRelError: number; index: number } {
  if (got.length !== ref.length) return { maxRelError: Number.POSITIVE_INFINITY, index: -1 };
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  scale = Math.max(scale, 1e-30);
  let worst = 0;
  let index = got.length > 0 ? 0 : -1;
  for (let i = 0; i < got.length; i++) {
    const e = Number.isFinite(got[i]) ? Math.abs(got[i] - ref[i]) / scale : Number.POSITIVE_INFINITY;
    if (!(e <= worst)) {
      worst = e;
      index = i;
    }
  }
  return { maxRelError: worst, index };
}

/**
 * Run a table of cases; the result is the first failing case (with its parameters) or the overall
 * worst error. `run` must poison its outputs before dispatching.
 */
export async function runCases<C>(
  cases: readonly C[],
  run: (c: C) => Promise<{ got: ArrayLike<number>; ref: ArrayLike<number>; tolerance?: number }>,
  tolerance: number,
  label: (c: C) => string = (c) => JSON.stringify(c),
): Promise<CheckResult> {
  let worst = 0;
  let worstDetail = 'no cases';
  for (const c of cases) {
    const { got, ref, tolerance: own } = await run(c);
    const limit = own ?? tolerance;
    const { maxRelError, index } = relError(got, ref);
    const detail =
      index < 0 && got.length !== ref.length
        ? `${label(c)}: got ${got.length} values, expected ${ref.length}`
        : `${label(c)}: out[${index}] = ${got[index]}, expected ${ref[index]} (rel. error ${maxRelError.toExponential(2)})`;
    if (!(maxRelError <= limit)) {
      return {
        ok: false,
        maxRelError,
        detail: own === undefined ? detail : `${detail}, tolerance ${limit.toExponential(2)}`,
      };
    }
    if (maxRelError >= worst) {
      worst = maxRelError;
      worstDetail = `worst case ${detail}`;
    }
  }
  return { ok: true, maxRelError: worst, detail: worstDetail };
}

/** Run `fn` with validation and out-of-memory error scopes; any error becomes an exception. */
export async function withValidation<T>(device: GPUDevice, fn: () => Promise<T> | T): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = await fn();
  } catch (e) {
    thrown = e;
  }
  // Pop both scopes whatever happened, so a failed test leaves the device's scope stack balanced.
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  if (validation) throw new Error(`WebGPU validation error: ${validation.message}`);
  if (oom) throw new Error(`WebGPU out-of-memory error: ${oom.message}`);
  if (thrown !== undefined) throw thrown;
  return result as T;
}

/** One-shot dispatch for checks: bind group 0 binding i = buffers[i], submit, wait until done. */
export async function dispatch(
  device: GPUDevice,
  pipeline: GPUComputePipeline,
  buffers: readonly GPUBuffer[],
  workgroups: readonly [number, number?, number?],
): Promise<void> {
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  pass.end();
  device.queue.submit([enc.finish()]);
  await device.queue.onSubmittedWorkDone();
}
