/**
 * Turning whatever was thrown into an EngineError with a code the UI can act on, and back and
 * forth across the worker boundary (comlink keeps only an Error's message).
 */
import { EngineError } from '../engine/errors';

export function toEngineError(e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  const name = (e as { name?: string } | null)?.name ?? '';
  const message = e instanceof Error ? e.message : String(e);
  if (/^\[[a-z-]+\] /.test(message)) return EngineError.fromSerialized(e);
  if (name === 'QuotaExceededError') {
    return new EngineError(
      'storage-full',
      'The browser refused to store more data (quota exceeded). Delete cached models or free disk space.',
      { cause: e },
    );
  }
  if (name === 'AbortError') return new EngineError('interrupted', 'Stopped.', { cause: e });
  if (name === 'GPUOutOfMemoryError' || /out of memory|allocation failed/i.test(message)) {
    return new EngineError(
      'gpu-out-of-memory',
      `Not enough memory for this model (${message}). Try a smaller model, close other tabs, or lower the context length.`,
      { cause: e },
    );
  }
  if (/device (was |is )?lost/i.test(message)) {
    return new EngineError(
      'device-lost',
      `The GPU device was lost (${message}). Reload the model to continue.`,
      { cause: e },
    );
  }
  if (e instanceof TypeError && /fetch|network/i.test(message)) {
    return new EngineError('network', `Network error (${message}). Check your connection and try again.`, {
      cause: e,
    });
  }
  return new EngineError('internal', message || name || 'unknown error', { cause: e });
}

/** What a worker throws so the code survives structured cloning. */
export function toWireError(e: unknown): Error {
  return new Error(toEngineError(e).toWire());
}

/** Wrap every method of `api` so its rejections carry "[code] message". */
export function withWireErrors<T extends object>(api: T): T {
  const out = {} as Record<string, unknown>;
  let proto: object | null = api;
  const names = new Set<string>();
  while (proto && proto !== Object.prototype) {
    for (const k of Object.getOwnPropertyNames(proto)) if (k !== 'constructor') names.add(k);
    proto = Object.getPrototypeOf(proto);
  }
  for (const k of names) {
    const v = (api as Record<string, unknown>)[k];
    if (typeof v !== 'function') continue;
    out[k] = async (...args: unknown[]) => {
      try {
        return await (v as (...a: unknown[]) => unknown).apply(api, args);
      } catch (e) {
        throw toWireError(e);
      }
    };
  }
  return out as T;
}
