/**
 * The Llama 3 forward pass on WebGPU as a `ModelRunner`: weights uploaded tensor by tensor, one KV
 * cache per sequence, batching of sequences with different lengths, sampling on the GPU.
 *
 * Axis legend: T = token rows of this step (all sequences' new tokens concatenated, ≤ maxTokens),
 * S = sequences sampled this step (≤ maxBatch), D = dim, H = query heads, Hkv = KV heads,
 * Dh = head dim, F = FFN dim, V = vocabulary, L = maxSeqLen (KV positions per sequence).
 *
 * One step = one command buffer: the per-step values (token ids, each row's (seq, pos), each
 * sequence's last row and uniform draw u, the counts) are written into one upload buffer and copied
 * into place at the start of the command buffer; then one compute pass runs the whole forward pass
 * with bind groups built at load; only the sampled token ids (u32 per sequence) are read back.
 */
import { EngineError } from '../errors';
import {
  checkKeepPositions,
  FEEDBACK_TOKEN,
  type ModelRunner,
  type SamplingOptions,
  sequenceSeed,
} from '../generation';
import { checkTokenIds, prefillChunkTokens } from '../limits';
import { estimateGpuBytes, gpuWeightBytes, resolveGpuLimits } from '../memory';
import { type LlamaTensors, validateLlamaTensors } from '../gguf/config';
import { readTensorBytes, readTensorRows } from '../gguf/reader';
import type { GgufFile, LlamaConfig, TensorInfo } from '../gguf/types';
import { dequantize, f32ToF16 } from '../reference/ops';
import { nonFiniteLogitsError, Rng } from '../sampling/sampler';
import type { RandomAccessSource } from '../source';
import type { GpuContext } from './device';
import { type Kernel, type Profiler, passRecorder, type Recorder } from './profiler';

import { attentionConstants, attentionGroupColumns, flashPrefillTokens, partialStride } from './attention';
import { ATTENTION_F16_ENTRY } from './attention_f16';
import { EmbeddingLookup } from './embedding';
import { registerAllKernels } from './kernels';
import { decodeF16Pairs, kvCacheBytes } from './kv-cache';
import { cachedPipeline } from './pipelines';
import { Linear, type MatvecFusion, ropeFusable, usesIntegerDot } from './linear';
import { ropeTable } from './rope';
import { UncapturedErrors, withGpuErrorScopes } from './errors';
import {
  drawBits,
  NON_FINITE_TOKEN,
  samplingGroups,
  samplingKernels,
  samplingPipelines,
  samplingScratchBytes,
} from './sampling';
import { KernelRegistry } from './check/registry';
import {
  destroyWeight,
  type GpuWeight,
  type StreamedMatrix,
  streamConcatenated,
  type WeightEncoding,
} from './weights';

export interface GpuLoadOptions {
  /** Largest number of sequences per step (default 4). */
  maxBatch?: number;
  /** KV cache length per sequence (default: the model's own, capped by the adapter: defaultGpuMaxSeqLen in memory.ts). */
  maxSeqLen?: number;
  /** Token rows per command buffer; longer prefills run in chunks (default: prefillChunkTokens in limits.ts, by FLOPs: 256 on the 8B). */
  maxTokens?: number;
  /** Kernel registry (with any accepted custom kernels); default: built-ins only. */
  registry?: KernelRegistry;
  /** --quantization-encoding, passed to the weight upload. */
  encoding?: WeightEncoding;
  /** Keep each sequence's last logits on the GPU so `lastLogits` can read them (tests). */
  keepLogits?: boolean;
  /**
   * Prefill attention in packed f16 (`attention_f16`, shaders/attention_f16.wgsl) where the flash
   * prefill applies; needs the device's `shader-f16` (else EngineError 'gpu-limits'). Off by
   * default: opt-in until a GPU shows it faster (docs/bench.md).
   */
  f16?: boolean;
  /** Called after each tensor is uploaded. */
  onProgress?: (loadedBytes: number, totalBytes: number) => void;
}

/** Flash-decoding: at most this many KV splits per (token, head), each ≥ MIN_SPLIT positions. */
const MAX_SPLITS = 32;
const MIN_SPLIT = 64;

/**
 * How a decode step splits `kvLen` cached positions across workgroups (flash-decoding): one split per
 * 64 positions up to 32 splits, then longer splits, so a long context (8k, 128k positions) still
 * spreads over 32 workgroups per (token, KV group) instead of one walking the whole cache.
 */
export function decodeSplits(kvLen: number): { nSplits: number; splitLen: number } {
  const nSplits = Math.min(MAX_SPLITS, Math.max(1, Math.ceil(kvLen / MIN_SPLIT)));
  return { nSplits, splitLen: Math.ceil(kvLen / nSplits) };
}

const U = { STORAGE: 0x80, UNIFORM: 0x40, COPY_SRC: 0x04, COPY_DST: 0x08, MAP_READ: 0x01 } as const;

interface Layer {
  attnNorm: Kernel; // xb = rmsnorm(x) · attn_norm
  qkv: Linear; // qkv[T, (H + 2Hkv)·Dh] = [Wq; Wk; Wv] · xb
  rope: Kernel; // rotate q, k; k, v → cache[seq, pos]
  attnPrefill: Kernel; // att[T, H·Dh]; grid (⌈T / flash tokens⌉, Hkv · group chunks) (prefill_flash) or (Hkv · group chunks, T)
  attnSplit: Kernel; // partial[T, H, splits, Dh + 2]; grid (splits, Hkv · group chunks, T)
  attnReduce: Kernel; // att[T, H·Dh]
  wo: Linear; // x += Wo · att
  ffnNorm: Kernel; // xb = rmsnorm(x) · ffn_norm
  gateUp: Linear; // hb[T, F] = silu(Wg · xb) ⊙ (Wu · xb)
  down: Linear; // x += Wdown · hb
  // Integer weights (decode mat-vec and prefill GEMM): one dispatch each instead of three / two.
  qkvFused: Linear | null; // rmsnorm(x) · attn_norm → Wqkv → rotate q, k; q → qkv, k, v → cache[seq, pos]
  gateUpFused: Linear | null; // hb = silu(Wg · n) ⊙ (Wu · n), n = rmsnorm(x) · ffn_norm
  kCache: GPUBuffer; // [maxBatch, L, Hkv·Dh] f16 pairs (shaders/attention.wgsl)
  vCache: GPUBuffer; // [maxBatch, L, Hkv·Dh] f16 pairs
  weights: GpuWeight[];
}

/** Byte offsets inside the per-step upload buffer (each 256-aligned: storage/uniform offsets). */
interface StepLayout {
  tokenParams: number; // { n_tokens, n_splits, split_len, 0 }
  seqParams: number; // { n_seqs, temperature, top_k, top_p }
  tokens: number; // u32 [maxTokens]
  rows: number; // vec2<u32> [maxTokens] (seq, pos)
  seqs: number; // vec4<u32> [maxBatch] (last_row, len, u bits, 0)
  size: number;
}

const align = (n: number, a = 256) => Math.ceil(n / a) * a;

/** One token row of a step: its sequence, position and id (or `from`: a slot of `sampled`). */
interface Row {
  seq: number;
  pos: number;
  token: number;
  from: number;
}

interface Sequence {
  pos: number; // positions filled so far (including steps submitted but not yet read back)
  rng: Rng;
  hasLogits: boolean;
  /** Index in `sampled` of this sequence's last sampled id (what FEEDBACK_TOKEN reads), or −1. */
  slot: number;
}

/** Readback buffers used in turn: one step may be read back while the next one runs. */
const READBACK_RING = 2;

export class GpuModel implements ModelRunner {
  readonly config: LlamaConfig;
  readonly maxBatch: number;
  readonly maxSeqLen: number;
  readonly maxTokens: number;
  /** Which kernels came from a user's custom WGSL (observable for tests and the CLI). */
  readonly customKernels: string[];
  /** Total bytes of weights on the GPU. */
  readonly weightBytes: number;

  private readonly ctx: GpuContext;
  private readonly keepLogits: boolean;
  private readonly layout: StepLayout;
  private readonly buffers: GPUBuffer[];
  private readonly upload: GPUBuffer; // the per-step values, written once per step
  private readonly tokenParams: GPUBuffer; // uniform { n_tokens, n_splits, split_len }
  private readonly seqParams: GPUBuffer; // uniform { n_seqs, temperature, top_k, top_p }
  private readonly tokensBuf: GPUBuffer; // u32 [maxTokens]
  private readonly rowsBuf: GPUBuffer; // vec2<u32> [maxTokens]
  private readonly seqsBuf: GPUBuffer; // vec4<u32> [maxBatch]
  private readonly logits: GPUBuffer; // [maxBatch, V]
  private readonly savedLogits: GPUBuffer | null; // [maxBatch, V] per sequence (keepLogits)
  private readonly sampled: GPUBuffer; // u32 [maxBatch]
  private readonly readbacks: GPUBuffer[]; // MAP_READ u32 [maxBatch], READBACK_RING of them
  private nextReadback = 0;
  private runsInFlight = 0;
  /** Steps called so far: a step stops early only when no later one was queued behind it. */
  private stepsCalled = 0;
  /** The per-step upload bytes, reused (writeBuffer copies them at once). */
  private readonly stepBytes: ArrayBuffer;
  /** Sampled ids stay on the GPU: `step` takes FEEDBACK_TOKEN, and the next step may be queued early. */
  readonly feedsBack = true;
  private readonly embed: EmbeddingLookup;
  private readonly layers: Layer[];
  private readonly gather: Kernel;
  private readonly finalNorm: Kernel;
  private readonly head: Linear;
  private readonly headFused: Linear | null; // logits = Whead · (rmsnorm(last) · output_norm)
  private readonly sample: { partials: Kernel; pick: Kernel };
  private readonly globalWeights: GpuWeight[];
  private seqs: Sequence[] = [];
  private sampling: SamplingOptions = { temperature: 0, topP: 1, topK: 0, seed: 0 };
  private lostReason: string | null = null;
  private uncaptured: UncapturedErrors | null = null;
  /** When set, steps run kernel by kernel and record per-kernel times (bench only). */
  profiler: Profiler | null = null;
  private disposed = false;

  private constructor(
    ctx: GpuContext,
    config: LlamaConfig,
    parts: {
      maxBatch: number;
      maxSeqLen: number;
      maxTokens: number;
      keepLogits: boolean;
      layout: StepLayout;
      buffers: GPUBuffer[];
      upload: GPUBuffer;
      tokenParams: GPUBuffer;
      seqParams: GPUBuffer;
      tokensBuf: GPUBuffer;
      rowsBuf: GPUBuffer;
      seqsBuf: GPUBuffer;
      logits: GPUBuffer;
      savedLogits: GPUBuffer | null;
      sampled: GPUBuffer;
      readbacks: GPUBuffer[];
      embed: EmbeddingLookup;
      layers: Layer[];
      gather: Kernel;
      finalNorm: Kernel;
      head: Linear;
      headFused: Linear | null;
      sample: { partials: Kernel; pick: Kernel };
      globalWeights: GpuWeight[];
      customKernels: string[];
      weightBytes: number;
    },
  ) {
    this.ctx = ctx;
    this.config = config;
    this.buffers = parts.buffers;
    this.maxBatch = parts.maxBatch;
    this.maxSeqLen = parts.maxSeqLen;
    this.maxTokens = parts.maxTokens;
    this.keepLogits = parts.keepLogits;
    this.layout = parts.layout;
    this.upload = parts.upload;
    this.tokenParams = parts.tokenParams;
    this.seqParams = parts.seqParams;
    this.tokensBuf = parts.tokensBuf;
    this.rowsBuf = parts.rowsBuf;
    this.seqsBuf = parts.seqsBuf;
    this.logits = parts.logits;
    this.savedLogits = parts.savedLogits;
    this.sampled = parts.sampled;
    this.readbacks = parts.readbacks;
    this.stepBytes = new ArrayBuffer(parts.layout.size);
    this.embed = parts.embed;
    this.layers = parts.layers;
    this.gather = parts.gather;
    this.finalNorm = parts.finalNorm;
    this.head = parts.head;
    this.headFused = parts.headFused;
    this.sample = parts.sample;
    this.globalWeights = parts.globalWeights;
    this.customKernels = parts.customKernels;
    this.weightBytes = parts.weightBytes;
    ctx.lost.then((info) => {
      if (!this.disposed) this.lostReason = `${info.reason}: ${info.message}`;
    });
  }

  /**
   * Load inside GPU error scopes: running out of GPU memory while allocating weights, KV cache or
   * activations is EngineError('gpu-out-of-memory') naming the bytes needed, never a model that
   * computes on missing buffers; errors after load (no scope) fail the next step.
   */
  static async load(
    ctx: GpuContext,
    source: RandomAccessSource,
    file: GgufFile,
    config: LlamaConfig,
    opts: GpuLoadOptions = {},
  ): Promise<GpuModel> {
    const bytes = estimateGpuBytes(file, config, { ...opts, limits: ctx.limits });
    const model = await withGpuErrorScopes(ctx.device, 'while loading the model', bytes, () =>
      GpuModel.loadUnscoped(ctx, source, file, config, opts),
    );
    model.uncaptured = new UncapturedErrors(ctx.device, 'while running the model', bytes);
    return model;
  }

  private static async loadUnscoped(
    ctx: GpuContext,
    source: RandomAccessSource,
    file: GgufFile,
    config: LlamaConfig,
    opts: GpuLoadOptions,
  ): Promise<GpuModel> {
    const { device, limits } = ctx;
    const { dim, nHeads, nKvHeads, headDim, ffnDim, vocabSize, normEps, ropeTheta } = config;
    const { maxBatch, maxSeqLen } = resolveGpuLimits(file, config, { ...opts, limits });
    const maxTokens =
      opts.maxTokens ??
      prefillChunkTokens(config, {
        maxBatch,
        maxSeqLen,
        weightBytes: gpuWeightBytes(file, opts.encoding),
        limits,
      });
    const maxRows = limits.maxComputeWorkgroupsPerDimension;
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1 && maxTokens <= maxRows)) {
      throw new EngineError('bad-argument', `maxTokens ${maxTokens} must be an integer in [1, ${maxRows}]`);
    }
    if (headDim > 256 || headDim % 2 !== 0) {
      throw new EngineError('unsupported-model', `head_dim ${headDim} is not supported (even, ≤ 256)`);
    }
    if (opts.f16 && !ctx.features.shaderF16) {
      throw new EngineError(
        'gpu-limits',
        `f16 kernels need the adapter's shader-f16 feature, which this GPU (${ctx.adapterInfo.description || ctx.adapterInfo.vendor || 'unnamed adapter'}) does not offer; load without f16`,
      );
    }
    const tensors: LlamaTensors = validateLlamaTensors(file, config);
    const registry = registerAllKernels(opts.registry ?? new KernelRegistry());

    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const qkvDim = qDim + 2 * kvDim;

    // Device-limit checks up front, with what to do.
    const kvBytes = kvCacheBytes(maxBatch, maxSeqLen, kvDim);
    const biggest = Math.max(
      kvBytes,
      maxTokens * Math.max(ffnDim, qkvDim, dim) * 4,
      maxBatch * vocabSize * 4,
    );
    const bindLimit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
    if (biggest > bindLimit) {
      throw new EngineError(
        'gpu-limits',
        `an activation or KV-cache buffer needs ${biggest} bytes but this GPU binds at most ${bindLimit}; lower the batch size, context length or prefill chunk`,
      );
    }

    const buffers: GPUBuffer[] = [];
    const storage = (label: string, bytes: number, extra = 0) => {
      const b = device.createBuffer({
        label,
        size: align(Math.max(bytes, 16), 16),
        usage: U.STORAGE | U.COPY_SRC | U.COPY_DST | extra,
      });
      buffers.push(b);
      return b;
    };
    const uniform = (label: string) => {
      const b = device.createBuffer({ label, size: 16, usage: U.UNIFORM | U.COPY_DST });
      buffers.push(b);
      return b;
    };

    // Per-step values: one upload buffer, copied into these at the start of each command buffer.
    const layout: StepLayout = (() => {
      const tokenParams = 0;
      const seqParams = 256;
      const tokens = 512;
      const rows = align(tokens + 4 * maxTokens);
      const seqs = align(rows + 8 * maxTokens);
      return { tokenParams, seqParams, tokens, rows, seqs, size: align(seqs + 16 * maxBatch) };
    })();
    const upload = device.createBuffer({
      label: 'step-upload',
      size: layout.size,
      usage: U.COPY_SRC | U.COPY_DST,
    });
    buffers.push(upload);
    const tokenParams = uniform('token-params');
    const seqParams = uniform('seq-params');
    const tokensBuf = storage('tokens', 4 * maxTokens); // u32 [T]
    const rowsBuf = storage('rows', 8 * maxTokens); // (seq, pos) [T]
    const seqsBuf = storage('seqs', 16 * maxBatch); // (last_row, len, u, 0) [S]

    // Activations.
    const x = storage('x', maxTokens * dim * 4); // [T, D] residual stream
    const xb = storage('xb', maxTokens * dim * 4); // [T, D] normed
    const qkv = storage('qkv', maxTokens * qkvDim * 4); // [T, (H + 2Hkv)·Dh]
    const att = storage('att', maxTokens * qDim * 4); // [T, H·Dh]
    const hb = storage('hb', maxTokens * ffnDim * 4); // [T, F]
    const partial = storage('partial', maxBatch * nHeads * MAX_SPLITS * partialStride(headDim) * 4);
    const last = storage('last', maxBatch * dim * 4); // [S, D]
    const lastNorm = storage('last-norm', maxBatch * dim * 4); // [S, D]
    const logits = storage('logits', maxBatch * vocabSize * 4); // [S, V]
    const scratch = storage('sampling-scratch', samplingScratchBytes(maxBatch, vocabSize)); // per-workgroup records
    const savedLogits = opts.keepLogits ? storage('saved-logits', maxBatch * vocabSize * 4) : null;
    const sampled = storage('sampled', 4 * maxBatch); // u32 [S]
    const readbacks = Array.from({ length: READBACK_RING }, (_, i) =>
      device.createBuffer({
        label: `readback-${i}`,
        size: align(4 * maxBatch, 16),
        usage: U.MAP_READ | U.COPY_DST,
      }),
    );
    buffers.push(...readbacks);

    // Pipelines: one per (kernel, entry point), shared by all layers.
    const customKernels = registry.names().filter((n) => registry.source(n) !== registry.spec(n).source);
    // Cached (pipelines.ts): the load-time self-check compiled these very pipelines already.
    const pipeline = (name: string, entryPoint: string, constants: Record<string, number>) =>
      cachedPipeline(device, registry.module(device, name), entryPoint, constants, `${name}.${entryPoint}`);
    const attnConsts = attentionConstants(nHeads, nKvHeads, headDim, maxSeqLen);
    const pRmsnorm = pipeline('rmsnorm', 'main', { DIM: dim, EPS: normEps });
    const pRope = pipeline('rope', 'main', {
      N_HEADS: nHeads,
      N_KV_HEADS: nKvHeads,
      HEAD_DIM: headDim,
      MAX_SEQ: maxSeqLen,
    });
    // FlashAttention-2 prefill (a query tile per workgroup) where the head size allows it.
    const flashTokens = flashPrefillTokens(nHeads, nKvHeads, headDim);
    const pPrefill =
      flashTokens === 0
        ? pipeline('attention', 'prefill', attnConsts)
        : opts.f16
          ? pipeline('attention_f16', ATTENTION_F16_ENTRY, attnConsts)
          : pipeline('attention', 'prefill_flash', attnConsts);
    const pSplit = pipeline('attention', 'decode_split', attnConsts);
    const pReduce = pipeline('attention', 'decode_reduce', attnConsts);
    const pGather = pipeline('elementwise', 'gather', { DIM: dim });
    const pSample = samplingPipelines(device, registry.module(device, 'sampling'), vocabSize);
    const kernel = (
      p: GPUComputePipeline,
      resources: (GPUBuffer | GPUBufferBinding)[],
      label: string,
    ): Kernel => ({
      pipeline: p,
      bindGroup: device.createBindGroup({
        label,
        layout: p.getBindGroupLayout(0),
        entries: resources.map((r, binding) => ({ binding, resource: 'buffer' in r ? r : { buffer: r } })),
      }),
    });

    // Weights, one tensor at a time, each read in slices of rows (never a whole tensor in memory).
    let loaded = 0;
    const total = file.tensors.reduce((a, t) => a + t.byteLength, 0);
    const advance = (bytes: number) => {
      loaded += bytes;
      opts.onProgress?.(loaded, total);
    };
    const progress = (t: TensorInfo) => advance(t.byteLength);
    const up = { encoding: opts.encoding };
    const rowsOf = (t: TensorInfo): StreamedMatrix => ({
      type: t.type,
      rows: t.dims[1],
      read: async (row, n) => {
        const bytes = await readTensorRows(source, t, row, n);
        advance(bytes.byteLength);
        return bytes;
      },
    });
    const matrix = (t: TensorInfo) => streamConcatenated(ctx, t.name, [rowsOf(t)], t.dims[0], up);
    const concat = (name: string, ts: TensorInfo[]) =>
      streamConcatenated(ctx, name, ts.map(rowsOf), ts[0].dims[0], up);
    const vector = async (t: TensorInfo) => {
      const v = dequantize(t.type, await readTensorBytes(source, t), t.elements) as Float32Array<ArrayBuffer>; // f32 [n]
      const b = storage(t.name, v.byteLength);
      device.queue.writeBuffer(b, 0, v);
      progress(t);
      return { buffer: b, values: v };
    };

    const tokenEmbd = await matrix(tensors.tokenEmbd); // [V, D]
    const ropeFreqs = tensors.ropeFreqs ? (await vector(tensors.ropeFreqs)).values : undefined; // [Dh/2]
    const table = storage('rope-table', maxSeqLen * headDim * 4); // [L, Dh/2] (cos, sin)
    const tableValues = ropeTable(maxSeqLen, headDim, ropeTheta, ropeFreqs);
    device.queue.writeBuffer(table, 0, tableValues);
    // The integer mat-vec's decode fusions read the rope table and the norm weights from one buffer:
    // [table | attn_norm_0 | ffn_norm_0 | … | output_norm] (f32, each norm 256-byte aligned so that
    // the norm-only fusions bind just their norm).
    const nLayers = tensors.layers.length;
    const normBase = align(tableValues.byteLength);
    const normStride = align(dim * 4);
    const consts = storage('fusion-consts', normBase + (2 * nLayers + 1) * normStride);
    device.queue.writeBuffer(consts, 0, tableValues);
    const normAt = (i: number) => normBase + i * normStride; // bytes
    const putNorm = (i: number, values: Float32Array<ArrayBuffer>) =>
      device.queue.writeBuffer(consts, normAt(i), values);
    // The QKV fusion sees the whole buffer (table and norm); the others only their norm.
    const normInTable = (i: number) => ({ offset: normAt(i) / 4, eps: normEps });
    const normOnly = (i: number) => ({
      consts: { buffer: consts, offset: normAt(i), size: dim * 4 },
      norm: { offset: 0, eps: normEps },
    });
    /** A fused decode Linear where the weight's kernel has the fusions and the layout allows them. */
    const fusedLinear = (
      w: GpuWeight,
      io: ConstructorParameters<typeof Linear>[3],
      o: { epilogue?: 'store' | 'swiglu'; label: string; fusion: MatvecFusion },
    ): Linear | null => {
      if (!usesIntegerDot(w.type)) return null;
      // A mixed-type QKV (q4_K q, k + q6_K v) fuses too: one dispatch per part, each rotating and
      // storing its own rows.
      if (o.fusion.rope && !ropeFusable(w)) return null;
      return new Linear(ctx, registry, w, io, o);
    };

    const tokenIo = { params: tokenParams, maxTokens };
    const layers: Layer[] = [];
    for (const [l, t] of tensors.layers.entries()) {
      const attnNormV = await vector(t.attnNorm);
      const attnNorm = attnNormV.buffer; // [D]
      putNorm(2 * l, attnNormV.values);
      const wqkv = await concat(`blk.${l}.attn_qkv`, [t.wq, t.wk, t.wv]); // [(H + 2Hkv)·Dh, D]
      const wo = await matrix(t.wo); // [D, H·Dh]
      const ffnNormV = await vector(t.ffnNorm);
      const ffnNorm = ffnNormV.buffer; // [D]
      putNorm(2 * l + 1, ffnNormV.values);
      const wgu = await concat(`blk.${l}.ffn_gate_up`, [t.wGate, t.wUp]); // [2F, D]
      const wdown = await matrix(t.wDown); // [D, F]
      const kCache = storage(`blk.${l}.k_cache`, kvBytes);
      const vCache = storage(`blk.${l}.v_cache`, kvBytes);
      const rows = rowsBuf;
      layers.push({
        attnNorm: kernel(pRmsnorm, [tokenParams, x, attnNorm, xb], `blk.${l}.attn_norm`),
        qkv: new Linear(ctx, registry, wqkv, { x: xb, y: qkv, ...tokenIo }, { label: `blk.${l}.qkv` }),
        rope: kernel(pRope, [tokenParams, rows, table, qkv, kCache, vCache], `blk.${l}.rope`),
        attnPrefill: kernel(pPrefill, [tokenParams, rows, qkv, kCache, vCache, att], `blk.${l}.attn`),
        attnSplit: kernel(pSplit, [tokenParams, rows, qkv, kCache, vCache, partial], `blk.${l}.attn_split`),
        attnReduce: kernel(pReduce, [tokenParams, partial, att], `blk.${l}.attn_reduce`),
        wo: new Linear(
          ctx,
          registry,
          wo,
          { x: att, y: x, ...tokenIo },
          { epilogue: 'accumulate', label: `blk.${l}.wo` },
        ),
        ffnNorm: kernel(pRmsnorm, [tokenParams, x, ffnNorm, xb], `blk.${l}.ffn_norm`),
        gateUp: new Linear(
          ctx,
          registry,
          wgu,
          { x: xb, y: hb, ...tokenIo },
          { epilogue: 'swiglu', label: `blk.${l}.gate_up` },
        ),
        down: new Linear(
          ctx,
          registry,
          wdown,
          { x: hb, y: x, ...tokenIo },
          { epilogue: 'accumulate', label: `blk.${l}.down` },
        ),
        qkvFused: fusedLinear(
          wqkv,
          { x, y: qkv, ...tokenIo },
          {
            label: `blk.${l}.qkv_fused`,
            fusion: {
              consts,
              norm: normInTable(2 * l),
              rope: {
                qDim,
                kvDim,
                headDim,
                maxSeq: maxSeqLen,
                tableOffset: 0,
                tokRows: rowsBuf,
                kCache,
                vCache,
              },
            },
          },
        ),
        gateUpFused: fusedLinear(
          wgu,
          { x, y: hb, ...tokenIo },
          { epilogue: 'swiglu', label: `blk.${l}.gate_up_fused`, fusion: normOnly(2 * l + 1) },
        ),
        kCache,
        vCache,
        weights: [wqkv, wo, wgu, wdown],
      });
    }
    const outputNormV = await vector(tensors.outputNorm);
    const outputNorm = outputNormV.buffer; // [D]
    putNorm(2 * nLayers, outputNormV.values);
    const output = tensors.output === tensors.tokenEmbd ? tokenEmbd : await matrix(tensors.output); // [V, D]
    const seqIo = { params: seqParams, maxTokens: maxBatch };
    const embed = new EmbeddingLookup(ctx, registry, tokenEmbd, {
      tokens: tokensBuf,
      out: x,
      params: tokenParams,
      maxTokens,
    });
    const globalWeights = output === tokenEmbd ? [tokenEmbd] : [tokenEmbd, output];
    const weightBytes = [...globalWeights, ...layers.flatMap((l) => l.weights)].reduce(
      (a, w) => a + w.bytes,
      0,
    );
    const model = new GpuModel(ctx, config, {
      maxBatch,
      maxSeqLen,
      maxTokens,
      keepLogits: !!opts.keepLogits,
      layout,
      buffers,
      upload,
      tokenParams,
      seqParams,
      tokensBuf,
      rowsBuf,
      seqsBuf,
      logits,
      savedLogits,
      sampled,
      readbacks,
      embed,
      layers,
      gather: kernel(pGather, [seqParams, seqsBuf, x, last], 'gather'),
      finalNorm: kernel(pRmsnorm, [seqParams, last, outputNorm, lastNorm], 'output_norm'),
      head: new Linear(ctx, registry, output, { x: lastNorm, y: logits, ...seqIo }, { label: 'output' }),
      headFused: fusedLinear(
        output,
        { x: last, y: logits, ...seqIo },
        { label: 'output_fused', fusion: normOnly(2 * nLayers) },
      ),
      sample: samplingKernels(device, pSample, {
        params: seqParams,
        seqs: seqsBuf,
        logits,
        scratch,
        tokens: sampled,
      }),
      globalWeights,
      customKernels,
      weightBytes,
    });
    await device.queue.onSubmittedWorkDone();
    return model;
  }

  reset(batch: number, sampling: SamplingOptions, firstSequence = 0, keepPositions = 0): void {
    if (!(Number.isInteger(batch) && batch >= 1 && batch <= this.maxBatch)) {
      throw new EngineError('bad-argument', `batch ${batch} must be in [1, ${this.maxBatch}]`);
    }
    checkKeepPositions(keepPositions, this.seqs[0]?.pos ?? 0);
    this.sampling = sampling;
    // Sequence s's K/V rows live at cache[s, pos] whatever the batch: keeping sequence 0's first
    // rows is only starting its position there; the rows after are overwritten as it goes.
    this.seqs = Array.from({ length: batch }, (_, s) => ({
      pos: s === 0 ? keepPositions : 0,
      rng: new Rng(sequenceSeed(sampling.seed, firstSequence + s)),
      hasLogits: false,
      slot: -1,
    }));
  }

  /**
   * Start a single sequence (reset(1, sampling)) whose first `positions` cache rows are given:
   * per layer K and V rows [positions, Hkv·Dh] (f32, stored as f16 like every cached row). Steps
   * then continue from that position as after a prefill of that many tokens. For long-context
   * tests: the CPU reference fills a cache of thousands of positions in O(n) for a 1-layer model
   * (ReferenceModel.cachedKv), where a GPU prefill costs O(n²) attention, minutes on SwiftShader.
   */
  restoreKv(
    sampling: SamplingOptions,
    kv: { keys: Float32Array[]; values: Float32Array[] },
    positions: number,
  ): void {
    this.checkAlive();
    const kvDim = this.config.nKvHeads * this.config.headDim;
    if (!(Number.isInteger(positions) && positions >= 1 && positions < this.maxSeqLen)) {
      throw new EngineError(
        'bad-argument',
        `restoreKv: ${positions} positions, 1..${this.maxSeqLen - 1} allowed`,
      );
    }
    if (kv.keys.length !== this.layers.length || kv.values.length !== this.layers.length) {
      throw new EngineError(
        'bad-argument',
        `restoreKv: K/V for ${kv.keys.length} layers, the model has ${this.layers.length}`,
      );
    }
    const half = new Uint16Array(positions * kvDim);
    const put = (buffer: GPUBuffer, rows: Float32Array) => {
      if (rows.length < positions * kvDim) {
        throw new EngineError(
          'bad-argument',
          `restoreKv: ${rows.length} values, ${positions * kvDim} needed`,
        );
      }
      for (let i = 0; i < half.length; i++) half[i] = f32ToF16(rows[i]);
      this.ctx.device.queue.writeBuffer(buffer, 0, half); // sequence 0 starts the cache
    };
    for (const [l, layer] of this.layers.entries()) {
      put(layer.kCache, kv.keys[l]);
      put(layer.vCache, kv.values[l]);
    }
    this.reset(1, sampling);
    this.seqs[0].pos = positions;
  }

  /**
   * Everything up to the first submission happens synchronously in the call (positions, draws,
   * which sampled id a FEEDBACK_TOKEN reads), so a step called before the previous one resolved is
   * queued after it on the GPU and sees its results.
   */
  async step(tokens: number[][], signal?: AbortSignal): Promise<number[]> {
    this.checkAlive();
    const stepId = ++this.stepsCalled;
    if (tokens.length !== this.seqs.length) {
      throw new EngineError(
        'bad-argument',
        `step got ${tokens.length} token lists for ${this.seqs.length} sequences (call reset first)`,
      );
    }
    for (const [s, toks] of tokens.entries()) {
      const seq = this.seqs[s];
      if (seq.pos + toks.length > this.maxSeqLen) {
        throw new EngineError(
          'context-overflow',
          `sequence ${s} would reach ${seq.pos + toks.length} positions but the cache holds ${this.maxSeqLen}`,
        );
      }
      if (toks.includes(FEEDBACK_TOKEN)) {
        if (toks.length !== 1 || seq.slot < 0) {
          throw new EngineError(
            'bad-argument',
            `sequence ${s}: FEEDBACK_TOKEN must be the only token, after a step that sampled for it`,
          );
        }
      } else {
        checkTokenIds(toks, this.config.vocabSize, `sequence ${s}`);
      }
    }
    // One uniform draw per sequence with tokens, as the CPU reference does (greedy included).
    const draws = tokens.map((toks, s) => (toks.length > 0 ? this.seqs[s].rng.next() : 0));
    // All new tokens as rows (seq, pos), sequence after sequence; cut into chunks of maxTokens rows.
    // A fed-back row reads the id from slot `from` of `sampled`, where the previous step left it.
    const rows: Row[] = [];
    for (const [s, toks] of tokens.entries()) {
      const seq = this.seqs[s];
      for (const [i, token] of toks.entries()) {
        rows.push({ seq: s, pos: seq.pos + i, token, from: token === FEEDBACK_TOKEN ? seq.slot : -1 });
      }
    }
    const chunks: { chunk: Row[]; finishing: { seq: number; row: number }[] }[] = [];
    for (let start = 0; start < rows.length; start += this.maxTokens) {
      const chunk = rows.slice(start, start + this.maxTokens);
      // Sequences whose last new row is in this chunk are sampled: (sequence, row in chunk).
      const finishing: { seq: number; row: number }[] = [];
      for (const [i, r] of chunk.entries()) {
        if (r.pos === this.seqs[r.seq].pos + tokens[r.seq].length - 1) finishing.push({ seq: r.seq, row: i });
      }
      chunks.push({ chunk, finishing });
    }
    const startPos = this.seqs.map((seq) => seq.pos);
    this.advance(tokens, startPos, chunks.length, chunks);

    const out = tokens.map(() => -1);
    for (const [k, { chunk, finishing }] of chunks.entries()) {
      // Stop between chunks (each awaited chunk has run on the GPU), unless a later step was
      // queued meanwhile: its rows follow this step's, so this one must finish.
      if (k > 0 && signal?.aborted && this.stepsCalled === stepId) {
        this.advance(tokens, startPos, k, chunks);
        break;
      }
      const ids = await this.run(chunk, finishing, draws);
      for (const [j, f] of finishing.entries()) out[f.seq] = ids[j];
    }
    return out;
  }

  /**
   * Sets each sequence's position, logits flag and `sampled` slot as they stand after the first
   * `ran` chunks of a step that started at `startPos` (all of them: a step submitted in full).
   */
  private advance(
    tokens: number[][],
    startPos: number[],
    ran: number,
    chunks: { chunk: Row[]; finishing: { seq: number; row: number }[] }[],
  ): void {
    const rowsRun = tokens.map(() => 0);
    for (const { chunk } of chunks.slice(0, ran)) for (const r of chunk) rowsRun[r.seq]++;
    for (const [s, toks] of tokens.entries()) {
      if (toks.length === 0) continue;
      const seq = this.seqs[s];
      seq.pos = startPos[s] + rowsRun[s];
      // Sampled (and its logits kept) only when its last row ran.
      seq.hasLogits = rowsRun[s] === toks.length;
    }
    // Each chunk's sampling overwrites `sampled`: only the last chunk run left its ids there.
    for (const seq of this.seqs) seq.slot = -1;
    for (const [j, f] of (chunks[ran - 1]?.finishing ?? []).entries()) this.seqs[f.seq].slot = j;
  }

  positions(s: number): number {
    return this.seqs[s]?.pos ?? 0;
  }

  /** Encode and submit one chunk as one command buffer; returns the sampled ids of `finishing`. */
  private async run(
    chunk: Row[],
    finishing: { seq: number; row: number }[],
    draws: number[],
  ): Promise<number[]> {
    const { device } = this.ctx;
    const n = chunk.length;
    const nSeqs = finishing.length;
    const L = this.layout;
    // Flash-decoding only pays when few rows would leave the GPU idle; prefill uses one pass.
    const useSplit = n <= this.maxBatch;
    const maxLen = Math.max(...chunk.map((r) => r.pos + 1));
    const { nSplits, splitLen } = useSplit ? decodeSplits(maxLen) : { nSplits: 1, splitLen: maxLen };

    const bytes = this.stepBytes;
    const u32 = new Uint32Array(bytes);
    const f32 = new Float32Array(bytes);
    u32.set([n, nSplits, splitLen, 0], L.tokenParams / 4);
    u32[L.seqParams / 4] = nSeqs;
    f32[L.seqParams / 4 + 1] = this.sampling.temperature;
    u32[L.seqParams / 4 + 2] = this.sampling.topK;
    f32[L.seqParams / 4 + 3] = this.sampling.topP;
    for (const [i, r] of chunk.entries()) {
      u32[L.tokens / 4 + i] = r.from >= 0 ? 0 : r.token; // a fed-back id is copied in on the GPU
      u32[L.rows / 4 + 2 * i] = r.seq;
      u32[L.rows / 4 + 2 * i + 1] = r.pos;
    }
    for (const [j, f] of finishing.entries()) {
      u32[L.seqs / 4 + 4 * j] = f.row;
      u32[L.seqs / 4 + 4 * j + 1] = chunk[f.row].pos + 1;
      u32[L.seqs / 4 + 4 * j + 2] = drawBits(draws[f.seq]); // u = bits / 2^32, exactly the CPU's u
    }
    if (this.runsInFlight >= READBACK_RING) {
      throw new EngineError('internal', `at most ${READBACK_RING} steps may wait for their readback at once`);
    }
    // Only the bytes this step uses (a decode step: 60 bytes), region by region.
    const regions: [number, number][] = [
      [L.tokenParams, 16],
      [L.seqParams, 16],
      [L.tokens, 4 * n],
      [L.rows, 8 * n],
      [L.seqs, 16 * nSeqs],
    ];
    for (const [offset, size] of regions) {
      if (size > 0) device.queue.writeBuffer(this.upload, offset, bytes, offset, size);
    }

    let enc = device.createCommandEncoder({ label: 'step' });
    enc.copyBufferToBuffer(this.upload, L.tokenParams, this.tokenParams, 0, 16);
    enc.copyBufferToBuffer(this.upload, L.seqParams, this.seqParams, 0, 16);
    enc.copyBufferToBuffer(this.upload, L.tokens, this.tokensBuf, 0, align(4 * n, 4));
    enc.copyBufferToBuffer(this.upload, L.rows, this.rowsBuf, 0, 8 * n);
    if (nSeqs > 0) enc.copyBufferToBuffer(this.upload, L.seqs, this.seqsBuf, 0, 16 * nSeqs);
    // Fed-back ids: the previous step's sampled ids, still on the GPU (it ran before this one).
    for (const [i, r] of chunk.entries()) {
      if (r.from >= 0) enc.copyBufferToBuffer(this.sampled, 4 * r.from, this.tokensBuf, 4 * i, 4);
    }
    if (this.profiler) {
      // Profiling: the uploads go first, then each dispatch in its own timed submission.
      device.queue.submit([enc.finish()]);
      await this.profiler.forward((rec) => this.encodeForward(rec, n, nSeqs, useSplit, nSplits));
      enc = device.createCommandEncoder({ label: 'step-tail' });
    } else {
      const pass = enc.beginComputePass({ label: 'forward' });
      this.encodeForward(passRecorder(pass), n, nSeqs, useSplit, nSplits);
      pass.end();
    }
    const readback = this.readbacks[this.nextReadback];
    if (nSeqs > 0) {
      this.nextReadback = (this.nextReadback + 1) % READBACK_RING;
      enc.copyBufferToBuffer(this.sampled, 0, readback, 0, 4 * nSeqs);
      if (this.savedLogits) {
        const rowBytes = this.config.vocabSize * 4;
        for (const [j, f] of finishing.entries()) {
          enc.copyBufferToBuffer(this.logits, j * rowBytes, this.savedLogits, f.seq * rowBytes, rowBytes);
        }
      }
    }
    device.queue.submit([enc.finish()]);
    if (nSeqs === 0) return [];
    let ids: number[];
    this.runsInFlight++;
    try {
      await readback.mapAsync(0x0001);
      ids = Array.from(new Uint32Array(readback.getMappedRange(0, 4 * nSeqs)));
      readback.unmap();
    } catch (e) {
      this.checkAlive();
      throw new EngineError('internal', `reading the sampled tokens back failed: ${(e as Error).message}`, {
        cause: e,
      });
    } finally {
      this.runsInFlight--;
    }
    this.checkAlive();
    const poisoned = ids.indexOf(NON_FINITE_TOKEN); // the sampler's flag: never pass it on as a token
    if (poisoned >= 0) {
      throw nonFiniteLogitsError(`the logits of sequence ${finishing[poisoned].seq} hold NaN or ±Inf`);
    }
    return ids;
  }

  /**
   * The forward pass for `n` token rows, then the LM head and sampling for `nSeqs` last rows.
   * `rec` records each dispatch: into the one compute pass of a step, or (profiling) one by one.
   */
  private encodeForward(rec: Recorder, n: number, nSeqs: number, useSplit: boolean, nSplits: number) {
    const { nHeads, nKvHeads, headDim } = this.config;
    const [H, T, S] = [nHeads, n, nSeqs];
    const groups = attentionGroupColumns(nHeads, nKvHeads, headDim); // KV heads × query-head chunks
    rec.op('embedding', (p) => this.embed.encode(p, T)); // x[T, D] = token_embd[tokens]
    // Integer weights fuse RMSNorm, RoPE and the KV write into their mat-vec (decode) or GEMM
    // (prefill): 5 dispatches per layer.
    for (const l of this.layers) {
      if (l.qkvFused) {
        const qkvFused = l.qkvFused;
        rec.op('qkv', (p) => qkvFused.encode(p, T)); // the three below in one mat-vec / GEMM
      } else {
        rec.kernel('attn_norm', l.attnNorm, T); // xb[T, D] = rmsnorm(x) · attn_norm
        rec.op('qkv', (p) => l.qkv.encode(p, T)); // qkv[T, (H + 2Hkv)·Dh] = Wqkv · xb
        rec.kernel('rope', l.rope, T); // rotate q, k (NORM pairs); k, v → cache[seq, pos]
      }
      if (useSplit) {
        rec.kernel('attention_split', l.attnSplit, nSplits, groups, T); // partial[T, H, splits]: online softmax per KV split, a GQA group per workgroup
        rec.kernel('attention_reduce', l.attnReduce, H, T); // att[T, H·Dh] = merge of the splits
      } else {
        // att[T, H·Dh] = softmax(q·Kᵀ/√Dh)·V over 0..pos: query tiles × columns (flash), else columns × rows
        const flash = flashPrefillTokens(nHeads, nKvHeads, headDim);
        if (flash > 0) rec.kernel('attention_prefill', l.attnPrefill, Math.ceil(T / flash), groups);
        else rec.kernel('attention_prefill', l.attnPrefill, groups, T);
      }
      rec.op('wo', (p) => l.wo.encode(p, T)); // x += Wo · att
      if (l.gateUpFused) {
        const gateUpFused = l.gateUpFused;
        rec.op('gate_up', (p) => gateUpFused.encode(p, T)); // ffn_norm fused in
      } else {
        rec.kernel('ffn_norm', l.ffnNorm, T); // xb = rmsnorm(x) · ffn_norm
        rec.op('gate_up', (p) => l.gateUp.encode(p, T)); // hb[T, F] = silu(Wg · xb) ⊙ (Wu · xb)
      }
      rec.op('down', (p) => l.down.encode(p, T)); // x += Wdown · hb
    }
    if (S === 0) return;
    rec.kernel('gather', this.gather, S); // last[S, D] = x[last row of each sequence]
    const headFused = this.headFused;
    if (headFused) {
      rec.op('output', (p) => headFused.encode(p, S)); // output_norm fused in
    } else {
      rec.kernel('output_norm', this.finalNorm, S); // lastNorm[S, D] = rmsnorm(last) · output_norm
      rec.op('output', (p) => this.head.encode(p, S)); // logits[S, V] = Whead · lastNorm
    }
    // Sampling: per-slice max, Σexp and candidates (one read of the logits), then one workgroup
    // per sequence: sampled[S] = sample(logits, T, top-k, top-p, u).
    rec.kernel('sampling_partials', this.sample.partials, samplingGroups(this.config.vocabSize), S);
    rec.kernel('sampling', this.sample.pick, S);
  }

  async lastLogits(s: number): Promise<Float32Array> {
    this.checkAlive();
    if (!this.savedLogits) {
      throw new EngineError('bad-argument', 'lastLogits needs the model loaded with keepLogits: true');
    }
    if (!this.seqs[s]?.hasLogits) throw new EngineError('bad-argument', `sequence ${s} has no logits yet`);
    const { device } = this.ctx;
    const bytes = this.config.vocabSize * 4;
    const staging = device.createBuffer({
      label: 'logits-readback',
      size: bytes,
      usage: U.MAP_READ | U.COPY_DST,
    });
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(this.savedLogits, s * bytes, staging, 0, bytes);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(0x0001);
    const out = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return out;
  }

  /**
   * Sequence s's cached K and V rows, per layer [positions, Hkv·Dh] decoded from the f16 cache, and
   * how many positions are filled (as ReferenceModel.cachedKv): tests compare the two caches.
   */
  async cachedKv(s: number): Promise<{ keys: Float32Array[]; values: Float32Array[]; positions: number }> {
    this.checkAlive();
    const seq = this.seqs[s];
    if (!seq) throw new EngineError('bad-argument', `no sequence ${s} to read the KV cache of`);
    const { device } = this.ctx;
    const rowBytes = this.config.nKvHeads * this.config.headDim * 2; // f16
    const bytes = seq.pos * rowBytes;
    const offset = s * this.maxSeqLen * rowBytes;
    const enc = device.createCommandEncoder();
    const staged = this.layers.flatMap((l) =>
      [l.kCache, l.vCache].map((cache) => {
        const b = device.createBuffer({
          label: 'kv-readback',
          size: Math.max(4, bytes),
          usage: U.MAP_READ | U.COPY_DST,
        });
        if (bytes > 0) enc.copyBufferToBuffer(cache, offset, b, 0, bytes);
        return b;
      }),
    );
    device.queue.submit([enc.finish()]);
    const rows: Float32Array[] = [];
    for (const b of staged) {
      await b.mapAsync(0x0001);
      rows.push(decodeF16Pairs(new Uint32Array(b.getMappedRange().slice(0, bytes))));
      b.destroy();
    }
    return {
      keys: rows.filter((_, i) => i % 2 === 0),
      values: rows.filter((_, i) => i % 2 === 1),
      positions: seq.pos,
    };
  }

  private checkAlive(): void {
    if (this.disposed) throw new EngineError('bad-argument', 'the GPU model was disposed; load it again');
    this.uncaptured?.check();
    if (this.lostReason !== null) {
      throw new EngineError(
        'device-lost',
        `the GPU device was lost (${this.lostReason}); create a new device and load the model again`,
      );
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.uncaptured?.dispose();
    for (const b of this.buffers) b.destroy();
    // Each Linear and the embedding lookup own their per-part Meta uniforms.
    this.embed.destroy();
    for (const l of this.layers) {
      for (const lin of [l.qkv, l.wo, l.gateUp, l.down, l.qkvFused, l.gateUpFused]) lin?.destroy();
      for (const w of l.weights) destroyWeight(w);
    }
    this.head.destroy();
    this.headFused?.destroy();
    for (const w of this.globalWeights) destroyWeight(w);
  }
}

/** GPU bytes of a load (memory.ts; kept here for callers that import it from the GPU backend). */
export { estimateGpuBytes } from '../memory';
