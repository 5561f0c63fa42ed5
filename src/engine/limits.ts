/**
 * The engine's limits, in one place: every backend and the facade resolve them through these
 * functions, so the CLI, the worker and the tests can never disagree on a range or a default.
 */
import { checkIntegerInRange, EngineError } from './errors';
import { META_DEFAULTS } from './generation';
import type { LlamaConfig } from './gguf/types';

/** Sequences per step: the GPU's per-step sequence table and sampler dispatch are sized for this. */
export const MAX_BATCH = 64;
/**
 * Default positions per sequence of the CPU reference (the model's own if smaller): its f32 cache
 * is allocated per sequence. The GPU's default is the model's own context, capped by the adapter
 * (defaultGpuMaxSeqLen in memory.ts).
 */
export const CPU_DEFAULT_MAX_SEQ_LEN = 4096;

export interface RunnerLimits {
  /** Sequences per step, 1..MAX_BATCH. */
  maxBatch: number;
  /** KV cache positions per sequence, 2..the model's context length. */
  maxSeqLen: number;
}

/**
 * Fills in the defaults and checks the ranges (bad-argument naming the value and the range).
 * `defaultMaxSeqLen(maxBatch)` gives the context when the caller chose none (the backend's rule;
 * default: the CPU reference's, min(context length, CPU_DEFAULT_MAX_SEQ_LEN)).
 */
export function resolveRunnerLimits(
  config: Pick<LlamaConfig, 'contextLength'>,
  opts: { maxBatch?: number; maxSeqLen?: number } = {},
  defaultMaxSeqLen: (maxBatch: number) => number = () =>
    Math.min(config.contextLength, CPU_DEFAULT_MAX_SEQ_LEN),
): RunnerLimits {
  const maxBatch = opts.maxBatch ?? META_DEFAULTS.maxBatchSize;
  checkIntegerInRange('batch size', maxBatch, 1, MAX_BATCH);
  const maxSeqLen = opts.maxSeqLen ?? defaultMaxSeqLen(maxBatch);
  // A prompt needs one position and generation at least one more.
  checkIntegerInRange('max sequence length', maxSeqLen, 2, Math.max(2, config.contextLength));
  return { maxBatch, maxSeqLen };
}

/** Every id must name a row of the embedding (bad-argument naming the first that does not). */
export function checkTokenIds(ids: readonly number[], vocabSize: number, what: string): void {
  for (const t of ids) {
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw new EngineError(
        'bad-argument',
        `${what} has token id ${t}, outside the vocabulary (0..${vocabSize - 1})`,
      );
    }
  }
}
