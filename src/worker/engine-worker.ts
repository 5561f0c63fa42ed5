/// <reference lib="webworker" />
/**
 * The engine host in a dedicated worker: the UI thread stays responsive while weights upload and
 * tokens are produced. Exposes EngineHost through comlink; rejections carry "[code] message".
 */
import * as Comlink from 'comlink';
import { LoadedModel } from '../engine/engine';
import { EngineError } from '../engine/errors';
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
    return LoadedModel.load(source, { device: 'gpu', gpu, onProgress: opts.onProgress, signal: opts.signal });
  },
});

Comlink.expose(withWireErrors(host));
