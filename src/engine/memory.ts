/**
 * GPU memory of a model, from its GGUF header alone (no GPU, no weights read): what the WebGPU
 * backend will allocate for a context length, and the context length it picks by default. The page
 * shows it before a download, `inspect` prints it, GpuModel.load names it when an allocation fails,
 * and `npm run bench` compares it with the buffers it actually counted (docs/bench.md).
 *
 * Pure arithmetic, importable anywhere (no shader sources, no WebGPU globals).
 */
import { prefillChunkTokens, type RunnerLimits, resolveRunnerLimits } from './limits';
import { type GgufFile, type LlamaConfig, SUPPORTED_TYPES } from './gguf/types';
import { auxRowBytes, GPU_LAYOUTS, gpuTypeFor, UNIT, type WeightEncoding } from './gpu/weights';

/** The default context never goes below this when its KV cache fits the adapter's buffer limits. */
export const MIN_DEFAULT_SEQ_LEN = 4096;

/**
 * The budget heuristic (WebGPU has no free-memory query): the KV cache of the default context may
 * take as many bytes as the weights, and at least KV_BUDGET_FLOOR. An 8B q4_0 (4.7 GB) thus gets
 * its full 8,192 positions for 4 sequences (4.3 GB of f16 KV), a 1B (0.8 GB) about 8,192 for one
 * sequence. `--max-seq-len` / the `maxSeqLen` load option override it (up to the model's own).
 */
export const KV_BUDGET_FLOOR = 1 << 30;

/** The buffer limits that bound one KV buffer (GPUSupportedLimits, or the adapter's). */
export interface BufferLimits {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
}

export interface GpuMemoryOptions {
  /** Sequences per step (default 4). */
  maxBatch?: number;
  /** KV positions per sequence (default: defaultGpuMaxSeqLen). */
  maxSeqLen?: number;
  /** Token rows per prefill chunk (default: prefillChunkTokens in limits.ts, by FLOPs). */
  maxTokens?: number;
  /** --quantization-encoding. */
  encoding?: WeightEncoding;
  /** The tests' saved-logits buffer. */
  keepLogits?: boolean;
  /** The device's (or adapter's) limits; without them only the budget heuristic bounds the default context. */
  limits?: BufferLimits;
}

/** Bytes by part; `total` is their sum. Every number is an allocation the GPU backend makes. */
export interface GpuMemoryEstimate {
  maxBatch: number;
  maxSeqLen: number;
  /** Matrices in their GPU layouts (≈ the file's bytes) and the norms as f32. */
  weights: number;
  /** K and V caches: 2 × layers × maxBatch × maxSeqLen × Hkv·Dh × 2 bytes (f16). */
  kvCache: number;
  /** Per-token and per-sequence buffers of a prefill chunk and a sampled step. */
  activations: number;
  /** The RoPE table (twice: attention and the decode fusions), the step upload, readbacks, sampler records. */
  scratch: number;
  total: number;
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** f16 bytes of the K (or V) cache of one layer. */
const kvLayerBytes = (batch: number, seqLen: number, kvDim: number) => batch * seqLen * kvDim * 2;

/**
 * The context a GPU load picks when the caller does not: the model's own, capped by one layer's K
 * buffer fitting the buffer limits and by the budget heuristic (KV ≤ max(weights, 1 GiB)), but never
 * below 4,096 (MIN_DEFAULT_SEQ_LEN) when that fits the limits. Capped values are multiples of 256.
 */
export function defaultGpuMaxSeqLen(
  file: Pick<GgufFile, 'tensors'>,
  config: LlamaConfig,
  opts: { maxBatch: number; encoding?: WeightEncoding; limits?: BufferLimits },
): number {
  const own = config.contextLength;
  const kvDim = config.nKvHeads * config.headDim;
  const perPosition = kvLayerBytes(opts.maxBatch, 1, kvDim); // one layer's K (or V), one position
  const bind = opts.limits
    ? Math.min(opts.limits.maxBufferSize, opts.limits.maxStorageBufferBindingSize)
    : Number.POSITIVE_INFINITY;
  const fitsLimits = Math.floor(bind / perPosition);
  const budget = Math.max(gpuWeightBytes(file, opts.encoding), KV_BUDGET_FLOOR);
  const fitsBudget = Math.floor(budget / (2 * config.nLayers * perPosition));
  const floor = Math.min(MIN_DEFAULT_SEQ_LEN, fitsLimits);
  const cap = Math.min(fitsLimits, Math.max(fitsBudget, floor));
  if (own <= cap) return own;
  return Math.max(2, cap >= 256 ? cap - (cap % 256) : cap);
}

/** resolveRunnerLimits with the GPU's default context (what GpuModel.load uses). */
export function resolveGpuLimits(
  file: Pick<GgufFile, 'tensors'>,
  config: LlamaConfig,
  opts: Pick<GpuMemoryOptions, 'maxBatch' | 'maxSeqLen' | 'encoding' | 'limits'>,
): RunnerLimits {
  return resolveRunnerLimits(config, opts, (maxBatch) =>
    defaultGpuMaxSeqLen(file, config, { maxBatch, encoding: opts.encoding, limits: opts.limits }),
  );
}

/** GPU bytes of the weights: each matrix in its GPU layout, each vector (norms, rope_freqs) as f32. */
export function gpuWeightBytes(file: Pick<GgufFile, 'tensors'>, encoding?: WeightEncoding): number {
  let bytes = 0;
  for (const t of file.tensors) {
    if (t.dims.length < 2 || t.dims[1] === 1) {
      bytes += align(Math.max(t.elements * 4, 16), 16);
      continue;
    }
    if (!SUPPORTED_TYPES.has(t.type) || !GPU_LAYOUTS.has(t.type)) {
      bytes += t.byteLength; // the load refuses it; count it as the file does
      continue;
    }
    const type = gpuTypeFor(t.type, encoding);
    const layout = GPU_LAYOUTS.get(type)!;
    const cols = t.dims[0];
    const rows = t.elements / cols;
    const units = cols / UNIT;
    const quants = rows * units * layout.qv * 16;
    const aux = rows * auxRowBytes(layout.aux, units).reduce((a, b) => a + b, 0);
    // Parts split at the binding limit add < 300 bytes each: not counted.
    bytes += align(quants, 256) + Math.max(16, aux);
  }
  return bytes;
}

/**
 * GPU bytes the WebGPU backend allocates for this model at a context (GpuModel.load's buffers, by
 * part). `maxSeqLen` defaults as the load does (defaultGpuMaxSeqLen); `maxBatch` and `maxSeqLen`
 * are checked as the load checks them (EngineError 'bad-argument').
 */
export function estimateGpuMemory(
  file: Pick<GgufFile, 'tensors'>,
  config: LlamaConfig,
  opts: GpuMemoryOptions = {},
): GpuMemoryEstimate {
  const { dim, nHeads, nKvHeads, headDim, ffnDim, vocabSize, nLayers } = config;
  const { maxBatch, maxSeqLen } = resolveGpuLimits(file, config, opts);
  const weights = gpuWeightBytes(file, opts.encoding);
  const T =
    opts.maxTokens ??
    prefillChunkTokens(config, { maxBatch, maxSeqLen, weightBytes: weights, limits: opts.limits });
  const S = maxBatch;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const buf = (bytes: number) => align(Math.max(bytes, 16), 16);
  const kvCache = 2 * nLayers * buf(kvLayerBytes(maxBatch, maxSeqLen, kvDim));
  // x, xb [T, D]; qkv [T, (H + 2Hkv)·Dh]; att [T, H·Dh]; hb [T, F]; flash-decoding partials
  // [S, H, 32 splits, Dh + 2]; last, last-norm [S, D]; logits (and saved logits) [S, V].
  const activations =
    2 * buf(T * dim * 4) +
    buf(T * (qDim + 2 * kvDim) * 4) +
    buf(T * qDim * 4) +
    buf(T * ffnDim * 4) +
    buf(S * nHeads * 32 * (headDim + 2) * 4) +
    2 * buf(S * dim * 4) +
    (opts.keepLogits ? 2 : 1) * buf(S * vocabSize * 4);
  // RoPE table [L, Dh/2] (cos, sin) in its own buffer and again at the head of the fusion constants
  // (with 2·layers + 1 norms); the step upload and its copies; 2 readbacks; sampler records
  // (per sequence, per 1,024 logits: 528 bytes, sampling.ts); uniforms: the step's two, and about
  // 64 bytes per mat-vec (6 per layer with the decode fusions, 2 for the head) and the embedding's,
  // plus the mat-vecs' 1 KiB of fusion placeholders (linear.ts) — small, and approximate.
  const table = maxSeqLen * headDim * 4;
  const steps = align(512 + align(4 * T, 256) + align(8 * T, 256) + 16 * S, 256);
  const scratch =
    buf(table) +
    buf(align(table, 256) + (2 * nLayers + 1) * align(dim * 4, 256)) +
    steps +
    buf(4 * T) +
    buf(8 * T) +
    buf(16 * S) +
    3 * buf(4 * S) +
    buf(S * Math.ceil(vocabSize / 1024) * 528) +
    2 * 16 +
    64 * (6 * nLayers + 3) +
    1024;
  return {
    maxBatch,
    maxSeqLen,
    weights,
    kvCache,
    activations,
    scratch,
    total: weights + kvCache + activations + scratch,
  };
}

/** `estimateGpuMemory(...).total`: the bytes GpuModel.load names when an allocation fails. */
export function estimateGpuBytes(
  file: Pick<GgufFile, 'tensors'>,
  config: LlamaConfig,
  opts: GpuMemoryOptions = {},
): number {
  return estimateGpuMemory(file, config, opts).total;
}

/** GPUBufferUsage.UNIFORM (a literal: no WebGPU globals here). */
const UNIFORM_USAGE = 0x40;

/** Activation buffers of GpuModel.load, by label (the estimate's `activations`). */
const ACTIVATION_LABELS = new Set([
  'x',
  'xb',
  'qkv',
  'att',
  'hb',
  'partial',
  'last',
  'last-norm',
  'logits',
  'saved-logits',
]);

/**
 * Which part of GpuMemoryEstimate a buffer of GpuModel.load belongs to, by its label: the bench and
 * the tests sum the buffers they counted at the API this way and set them beside the estimate.
 */
export function memoryPart(label: string, usage = 0): 'weights' | 'kvCache' | 'activations' | 'scratch' {
  if (usage & UNIFORM_USAGE) return 'scratch'; // kernel parameters, even when labelled by their layer
  if (/^blk\.\d+\.[kv]_cache$/.test(label)) return 'kvCache';
  if (/^(blk\.\d+\.|token_embd\b|output\b|output_norm\b|rope_freqs\b)/.test(label)) return 'weights';
  if (ACTIVATION_LABELS.has(label)) return 'activations';
  return 'scratch';
}
