/**
 * WebGPU in Node: Dawn through the npm `webgpu` package. On machines without a GPU driver, Dawn
 * finds SwiftShader when VK_ICD_FILENAMES points at its ICD (see vitest.config.ts).
 */
import { EngineError } from '../engine/errors';

/** Dawn's `GPU` object, with WebGPU's globals (GPUBufferUsage, …) installed on globalThis. */
export async function nodeGpu(): Promise<GPU> {
  let mod: { create: (opts: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as typeof mod;
  } catch (e) {
    throw new EngineError(
      'no-webgpu',
      `the npm package "webgpu" (Dawn) could not be loaded (${(e as Error).message}); run npm ci, or use --device cpu`,
      { cause: e },
    );
  }
  Object.assign(globalThis, mod.globals);
  // Dawn aborts the process if this object is garbage-collected while a device is alive: keep it.
  dawnInstance ??= mod.create([]);
  return dawnInstance;
}

let dawnInstance: GPU | undefined;
