/// <reference lib="webworker" />
/**
 * The engine host in a dedicated worker: the UI thread stays responsive while weights upload and
 * tokens are produced. Exposes EngineHost through comlink; rejections carry "[code] message".
 */
import * as Comlink from 'comlink';
import { createStore, get, set } from 'idb-keyval';
import { LoadedModel } from '../engine/engine';
import { EngineError } from '../engine/errors';
import type { SelfCheckStore } from '../engine/gpu/check/self-check';
import { EngineHost } from './engine-host';
import { withWireErrors } from './errors';

/** Settings from the page (client.ts puts them in the worker's name). */
function settings(): { chunkSize?: number } {
  try {
    return JSON.parse((self as unknown as { name: string }).name || '{}');
  } catch {
    return {};
  }
}
// Tests use small chunks to exercise chunk boundaries and resume with a tiny model.
const chunkSize = Number(settings().chunkSize) || undefined;
const gpu = (self.navigator as Navigator & { gpu?: GPU }).gpu;

/**
 * Passed kernel self-checks (one key per adapter, check version and kernel source), kept in an
 * IndexedDB database of their own so a reload does not check again; memory when IndexedDB fails.
 */
function idbSelfCheckStore(): SelfCheckStore {
  const passed = new Set<string>();
  const db = typeof indexedDB === 'undefined' ? undefined : createStore('llama3-webgpu-self-check', 'passed');
  return {
    async has(key) {
      if (passed.has(key)) return true;
      const stored = db ? await get<boolean>(key, db).catch(() => undefined) : undefined;
      if (stored === true) passed.add(key);
      return stored === true;
    },
    async add(key) {
      passed.add(key);
      if (db) await set(key, true, db).catch(() => {});
    },
  };
}
const kernelSelfCheck = idbSelfCheckStore();

const host = new EngineHost({
  gpu,
  requireWebGpu: true,
  chunkSize,
  loader: async (source, opts) => {
    if (!gpu) {
      throw new EngineError(
        'no-webgpu',
        'This browser has no WebGPU. Use a recent Chrome or Edge (113+) on a desktop, over https or localhost; in Firefox or Safari enable WebGPU first.',
      );
    }
    return LoadedModel.load(source, {
      device: 'gpu',
      gpu,
      kernelSelfCheck,
      onProgress: opts.onProgress,
      signal: opts.signal,
    });
  },
});

Comlink.expose(withWireErrors(host));
