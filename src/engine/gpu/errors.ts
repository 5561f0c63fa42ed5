/**
 * WebGPU reports a failed allocation or an invalid call asynchronously, through error scopes or
 * the device's `uncapturederror` event, and otherwise carries on: a buffer that could not be
 * allocated reads as zeros and the model would print garbage. Allocations (weights, KV cache,
 * activations) run inside error scopes, and a model watches uncaptured errors between steps, so
 * that such a failure is an EngineError instead ('gpu-out-of-memory' with the size needed).
 */
import { EngineError } from '../errors';

const MiB = 1024 * 1024;

function formatSize(bytes: number): string {
  return bytes >= 1024 * MiB ? `${(bytes / (1024 * MiB)).toFixed(2)} GiB` : `${(bytes / MiB).toFixed(1)} MiB`;
}

/** The out-of-memory error for `what`, which needed `bytes` of GPU memory. */
export function gpuOutOfMemoryError(what: string, bytes: number, detail = ''): EngineError {
  return new EngineError(
    'gpu-out-of-memory',
    `the GPU ran out of memory ${what} (${formatSize(bytes)} of GPU memory needed${detail ? `; ${detail}` : ''}): ` +
      'use a smaller model or quantization, a shorter context (max sequence length) or a smaller batch, ' +
      'or close other tabs and programs that use the GPU',
  );
}

/**
 * Runs `fn` (allocations, uploads) inside 'out-of-memory', 'validation' and 'internal' error scopes
 * and throws the first error they caught as an EngineError: out of memory → 'gpu-out-of-memory'
 * naming `bytes`, anything else → 'internal'. An exception from `fn` wins if no scope caught one.
 * Scopes are per device: nothing else may push or pop on this device while `fn` runs.
 */
export async function withGpuErrorScopes<T>(
  device: GPUDevice,
  what: string,
  bytes: number,
  fn: () => T | Promise<T>,
): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  const outcome = await Promise.resolve()
    .then(fn)
    .then(
      (value) => ({ value }),
      (error: unknown) => ({ error }),
    );
  const internal = await device.popErrorScope();
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  if (oom) throw gpuOutOfMemoryError(what, bytes, oom.message);
  if (validation) {
    throw new EngineError('internal', `WebGPU rejected a call ${what}: ${validation.message}`);
  }
  if (internal) throw new EngineError('internal', `the GPU failed ${what}: ${internal.message}`);
  if ('error' in outcome) throw outcome.error;
  return outcome.value;
}

/**
 * Records the first error no scope caught (a step's dispatch, a late allocation), so the next
 * step throws it instead of returning tokens computed from a missing buffer. `bytes` names the
 * model's GPU memory in the out-of-memory message.
 */
export class UncapturedErrors {
  private first: EngineError | null = null;
  private readonly listener = (e: Event) => {
    if (this.first) return;
    const error = (e as GPUUncapturedErrorEvent).error;
    const name = error?.constructor?.name ?? '';
    const message = error?.message ?? String(error);
    this.first =
      name === 'GPUOutOfMemoryError' || /out of memory/i.test(message)
        ? gpuOutOfMemoryError(this.what, this.bytes, message)
        : new EngineError('internal', `the GPU reported an error ${this.what}: ${message}`);
  };

  constructor(
    private readonly device: GPUDevice,
    private readonly what: string,
    private readonly bytes: number,
  ) {
    device.addEventListener('uncapturederror', this.listener);
  }

  /** Throws the first recorded error, if any (and keeps throwing it: the model is unusable). */
  check(): void {
    if (this.first) throw this.first;
  }

  dispose(): void {
    this.device.removeEventListener('uncapturederror', this.listener);
  }
}
