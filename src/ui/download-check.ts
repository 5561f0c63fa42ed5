/**
 * What the download dialog says about GPU memory: the estimate from the file's header (weights +
 * KV cache at the context a load here picks) against what the adapter tells. WebGPU tells no
 * memory size, only per-buffer limits (which the loader meets by splitting large matrices), so the
 * warning rests on what is known: the file cannot run in this version, or its estimate exceeds
 * the memory the device reports (navigator.deviceMemory, GB of RAM, which an integrated GPU shares
 * and a discrete one seldom exceeds).
 */
import type { BufferLimits, ModelInspection } from '../worker/api';
import { formatBytes } from './format';

export interface GpuFit {
  /** "about 5.6 GB: weights 4.7 GB + KV cache 0.9 GB at 8,192 positions × 4 sequences". */
  estimate?: string;
  /** Why it will (likely) not run here; undefined when nothing known says so. */
  warning?: string;
}

export const limitsInWords = (limits: BufferLimits) =>
  `one buffer up to ${formatBytes(limits.maxBufferSize)}, one binding up to ${formatBytes(limits.maxStorageBufferBindingSize)} ` +
  '(large matrices are split to fit); WebGPU does not tell how much memory the GPU has';

export function gpuFit(inspection: ModelInspection, deviceMemoryGB: number | undefined): GpuFit {
  const gpu = inspection.gpu;
  const estimate =
    gpu &&
    `about ${formatBytes(gpu.bytes)}: weights ${formatBytes(gpu.weightBytes)} + KV cache ${formatBytes(gpu.kvBytes)} ` +
      `at ${gpu.maxSeqLen.toLocaleString('en-US')} positions × ${gpu.maxBatch} sequence${gpu.maxBatch === 1 ? '' : 's'}`;
  let warning: string | undefined;
  if (!inspection.runnable) {
    warning = `This version cannot run this file: ${inspection.problems[0] ?? 'unknown reason'}`;
  } else if (gpu && deviceMemoryGB !== undefined && gpu.bytes > deviceMemoryGB * 1e9) {
    warning =
      `This device reports about ${deviceMemoryGB} GB of memory and the model needs ${formatBytes(gpu.bytes)} ` +
      'of GPU memory: it will likely not fit, and the load would fail with "Out of GPU memory".';
  }
  return { estimate, warning };
}
