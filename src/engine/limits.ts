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

/** The matrix shapes that size a prefill chunk (LlamaConfig's, or a preset's). */
export type ChunkShape = Pick<LlamaConfig, 'dim' | 'nLayers' | 'nHeads' | 'nKvHeads' | 'headDim' | 'ffnDim'>;

/**
 * FLOPs (2 per multiply-add) of the linear layers for one token row: Wq, Wk, Wv, Wo, gate, up and
 * down in every layer. The LM head is left out (only a sequence's last row runs it), and so is
 * attention (it grows with the position, and is small beside these below a few thousand tokens).
 */
export function linearFlopsPerToken(c: ChunkShape): number {
  const qDim = c.nHeads * c.headDim;
  const kvDim = c.nKvHeads * c.headDim;
  return 2 * c.nLayers * (c.dim * (qDim + 2 * kvDim) + qDim * c.dim + 3 * c.dim * c.ffnDim);
}

/** Llama 3 8B: the shape whose prefill chunk is PREFILL_CHUNK_8B rows. */
const LLAMA3_8B: ChunkShape = {
  dim: 4096,
  nLayers: 32,
  nHeads: 32,
  nKvHeads: 8,
  headDim: 128,
  ffnDim: 14336,
};
/** Rows of an 8B prefill chunk (issue 9: one submit short enough for a GPU watchdog, and for Stop). */
export const PREFILL_CHUNK_8B = 256;
/** The linear-layer FLOPs of one prefill chunk on any shape: the 8B's 256 rows (≈ 3.6 TFLOP). */
export const PREFILL_CHUNK_FLOPS = PREFILL_CHUNK_8B * linearFlopsPerToken(LLAMA3_8B);
/** Rows per chunk never exceed this (a tiny model's activations stay a few MB). */
export const MAX_PREFILL_CHUNK = 2048;
/** Chunks of 64 rows or more are cut at a multiple of 64 (the GEMM's token tile). */
const CHUNK_ROUNDING = 64;
/** Bytes of a prefill chunk's activation buffers per row: x, xb [D], qkv [(H + 2Hkv)·Dh], att [H·Dh], hb [F], f32. */
export function activationBytesPerRow(c: ChunkShape): number {
  return 4 * (2 * c.dim + (2 * c.nHeads + 2 * c.nKvHeads) * c.headDim + c.ffnDim);
}

/**
 * A chunk's activations take at most this share of the weights' bytes (issue 9's memory goal: GPU
 * memory ≤ weights + KV cache + 5%; scratch takes most of the other 1%) …
 */
export const ACTIVATION_SHARE = 0.04;
/** … or, where that is more, the 8B chunk's own activations (33.6 MB): small models are not held below it. */
export const ACTIVATION_FLOOR = PREFILL_CHUNK_8B * activationBytesPerRow(LLAMA3_8B);

/**
 * Rows per prefill chunk on the GPU (`GpuLoadOptions.maxTokens`' default, and so the activation
 * buffers memory.ts counts): as many rows as make the 8B's 256-row chunk of linear-layer FLOPs
 * (3B ≈ 630, 1B ≈ 1,800), with activations within max(ACTIVATION_SHARE of `weightBytes`,
 * ACTIVATION_FLOOR) (1B q4_0: 448 rows; 3B keeps 576), multiples of 64, at most MAX_PREFILL_CHUNK
 * and maxBatch × maxSeqLen (no step has more rows), and small enough that the largest activation
 * buffer ([rows, max(F, qkv, D)] f32) binds. Each chunk is one command buffer; Stop is honoured
 * between chunks.
 */
export function prefillChunkTokens(
  c: ChunkShape,
  opts: {
    maxBatch: number;
    maxSeqLen: number;
    /** The weights' GPU bytes (memory.ts gpuWeightBytes); without it no memory cap. */
    weightBytes?: number;
    limits?: { maxBufferSize: number; maxStorageBufferBindingSize: number };
  },
): number {
  // The tiny epsilon: 256 · f / f may land a hair under 256.
  let rows = Math.floor(PREFILL_CHUNK_FLOPS / linearFlopsPerToken(c) + 1e-9);
  if (opts.weightBytes !== undefined) {
    const budget = Math.max(ACTIVATION_SHARE * opts.weightBytes, ACTIVATION_FLOOR);
    rows = Math.min(rows, Math.floor(budget / activationBytesPerRow(c)));
  }
  rows = Math.min(rows, MAX_PREFILL_CHUNK, opts.maxBatch * opts.maxSeqLen);
  if (opts.limits) {
    const widest = 4 * Math.max(c.ffnDim, (c.nHeads + 2 * c.nKvHeads) * c.headDim, c.dim);
    const bind = Math.min(opts.limits.maxBufferSize, opts.limits.maxStorageBufferBindingSize);
    rows = Math.min(rows, Math.floor(bind / widest));
  }
  if (rows >= CHUNK_ROUNDING) rows -= rows % CHUNK_ROUNDING;
  return Math.max(1, rows);
}

/**
 * The CPU reference's linear-layer FLOPs between two yields to the event loop. Its mat-vecs run at
 * ~0.2–0.5 GFLOP/s here (f64 sums), so this is ~20–50 ms: Stop, a worker message or a timer waits
 * no longer (the demo model, 8.5 MFLOP per token: one token per chunk).
 */
export const CPU_CHUNK_FLOPS = 1e7;

/** Tokens the CPU reference prefills between two yields (at least one). */
export function cpuPrefillChunkTokens(c: ChunkShape): number {
  return Math.max(1, Math.floor(CPU_CHUNK_FLOPS / linearFlopsPerToken(c)));
}
