/**
 * One error class for the whole engine, with a discriminated `code` that survives the worker
 * boundary (comlink carries name, message and stack only: hosts rebuild it with `fromSerialized`).
 * Messages say what happened and what to do.
 */
export type EngineErrorCode =
  | 'bad-gguf' // malformed or hostile GGUF bytes
  | 'unsupported-model' // valid GGUF we cannot run (architecture, tensor type, shape)
  | 'bad-tokenizer' // tokenizer metadata / tokenizer.json unusable
  | 'bad-template' // a chat template that fails or exceeds its bounds (steps, time, size)
  | 'bad-argument' // a caller passed a value out of range
  | 'context-overflow' // prompt + generation longer than the context
  | 'no-webgpu' // navigator.gpu / adapter missing
  | 'gpu-limits' // adapter limits too small for this model
  | 'gpu-out-of-memory'
  | 'device-lost' // recoverable by creating a new device and reloading weights
  | 'kernel-rejected' // a custom kernel failed to compile or disagreed with the reference
  | 'network' // fetch failed, bad status, offline
  | 'storage-full' // QuotaExceededError
  | 'storage' // other IndexedDB failure
  | 'interrupted' // cancelled by the caller
  | 'non-finite' // the model produced NaN/Inf logits: corrupt weights; no token is emitted after it
  | 'internal';

/** bad-argument naming the value and the allowed range, unless `v` is an integer in min..max. */
export function checkIntegerInRange(name: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new EngineError('bad-argument', `${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

export class EngineError extends Error {
  override readonly name = 'EngineError';
  constructor(
    readonly code: EngineErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** comlink/structured clone keep only `message`; we prefix it with the code so it survives. */
  static fromSerialized(e: unknown): EngineError {
    if (e instanceof EngineError) return e;
    const message = e instanceof Error ? e.message : String(e);
    const m = /^\[([a-z-]+)\] ([\s\S]*)$/.exec(message);
    if (m) return new EngineError(m[1] as EngineErrorCode, m[2]);
    return new EngineError('internal', message, { cause: e });
  }

  /** The wire form: "[code] message". */
  toWire(): string {
    return `[${this.code}] ${this.message}`;
  }
}
