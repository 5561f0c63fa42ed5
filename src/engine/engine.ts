/**
 * The engine facade: the ONE entry point the three hosts (browser worker, Node CLI, tests) call.
 *
 *   LoadedModel.load(source, opts)  GGUF header → config + tensor checks → tokenizer → runner
 *                                   (CPU reference or WebGPU), with load progress and cancellation
 *   model.complete(req)             text → tokens (BOS + prompt, or the chat template) → generate()
 *                                   in batches of the runner's size → streamed text → result + stats
 *
 * Engine code: no Node built-ins, no DOM-only APIs (the host passes `GPU` and the byte source).
 */
import { type ChatMessage, encodeChat } from './chat';
import { EngineError } from './errors';
import {
  type GenerateResult,
  type GenerationStats,
  generate,
  META_DEFAULTS,
  type ModelRunner,
  type SamplingOptions,
} from './generation';
import { llamaConfigFromGguf, readGguf, validateLlamaTensors } from './gguf';
import type { GgufFile, LlamaConfig } from './gguf/types';
import { createGpuContext, type GpuContext } from './gpu/device';
import { ReferenceModel } from './reference/model';
import type { RandomAccessSource } from './source';
import { Llama3Tokenizer } from './tokenizer';

export type Device = 'cpu' | 'gpu';
export type QuantizationEncoding = 'q4_0' | 'float32';

export interface LoadProgress {
  phase: 'header' | 'weights';
  loadedBytes: number;
  totalBytes: number;
}

export interface LoadModelOptions {
  device: Device;
  /** navigator.gpu or Dawn's create([]); required for 'gpu' unless gpuContext is given. */
  gpu?: GPU;
  /** An existing device (the caller keeps ownership; dispose() does not destroy it). */
  gpuContext?: GpuContext;
  /**
   * 'q4_0': matrices as q4_0 blocks (f16/f32 matrices are quantized at load); 'float32': the
   * file's values in f32. Default: the backend's own (the CPU reference keeps the file's values).
   */
  quantizationEncoding?: QuantizationEncoding;
  /** Default: the tokenizer in the GGUF. */
  tokenizer?: Llama3Tokenizer;
  /** Kernel name → WGSL replacing the built-in kernel (GPU only; checked by the kernel registry). */
  customKernels?: Map<string, string>;
  /** Sequences per batch; default META_DEFAULTS.maxBatchSize (4). */
  maxBatch?: number;
  /** Positions per sequence (KV cache length); default min(context length, 2048). */
  maxSeqLen?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

export type FinishReason = GenerateResult['finishReasons'][number];

export interface CompletionRequest {
  /**
   * Any number of prompts; more than the batch size run in successive batches. A string is text
   * (encoded per `mode`); an array is token ids fed exactly as given (no BOS added, no template).
   */
  prompts: (string | readonly number[])[];
  /** New tokens per prompt (default 64). */
  maxTokens?: number;
  sampling?: Partial<SamplingOptions>;
  /** 'completion' (default): BOS + prompt. 'chat': the prompt as one user message in the chat template. */
  mode?: 'completion' | 'chat';
  signal?: AbortSignal;
  /**
   * Streamed text: called for every generated token except a stop token, with the text it
   * completes (possibly '' while a UTF-8 character is split across tokens). After a sequence ends,
   * any held-back bytes are flushed with token -1.
   */
  onText?: (seq: number, delta: string, token: number) => void;
  /** A sequence ended (its last onText has been sent). */
  onFinish?: (seq: number, reason: FinishReason) => void;
}

export interface CompletionStats extends GenerationStats {
  loadMs: number;
  /** Number of generate() batches the prompts were split into. */
  batches: number;
  device: Device;
}

export interface CompletionResult {
  /** Generated text per prompt (stop tokens not included). */
  text: string[];
  /** Generated ids per prompt (a stop token, when hit, is the last element). */
  tokens: number[][];
  /** Prompt ids per prompt as fed to the model (BOS included). */
  promptTokens: number[][];
  finishReasons: FinishReason[];
  stats: CompletionStats;
}

const QUANT_ENCODINGS: readonly QuantizationEncoding[] = ['q4_0', 'float32'];

function badArg(message: string): EngineError {
  return new EngineError('bad-argument', message);
}

function checkInt(name: string, v: number | undefined, min: number, max: number): void {
  if (v === undefined) return;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw badArg(`${name} must be an integer in ${min}..${max}, got ${v}`);
  }
}

function interrupted(what: string): EngineError {
  return new EngineError('interrupted', `${what} was cancelled`);
}

/**
 * Counts the bytes the runner reads while it loads weights (progress for any backend) and stops
 * the load at the next read once the signal fires.
 */
class LoadTracker implements RandomAccessSource {
  private loaded = 0;
  constructor(
    private readonly inner: RandomAccessSource,
    private readonly totalBytes: number,
    private readonly onProgress?: (p: LoadProgress) => void,
    private readonly signal?: AbortSignal,
  ) {}
  get size(): number {
    return this.inner.size;
  }
  get name(): string {
    return this.inner.name;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.signal?.aborted) throw interrupted(`loading ${this.inner.name}`);
    const bytes = await this.inner.read(offset, length);
    this.loaded = Math.min(this.totalBytes, this.loaded + length);
    this.onProgress?.({ phase: 'weights', loadedBytes: this.loaded, totalBytes: this.totalBytes });
    return bytes;
  }
}

/**
 * The CPU reference computes a whole step synchronously, so without a pause between steps the host
 * never gets to run its event handlers (a Stop button, Ctrl-C, a worker message) until generation
 * ends. A macrotask pause before each step lets them in; the GPU path already waits on the GPU.
 */
class YieldingRunner implements ModelRunner {
  constructor(private readonly inner: ModelRunner) {}
  get config() {
    return this.inner.config;
  }
  get maxBatch() {
    return this.inner.maxBatch;
  }
  get maxSeqLen() {
    return this.inner.maxSeqLen;
  }
  reset(batch: number, sampling: SamplingOptions): void {
    this.inner.reset(batch, sampling);
  }
  async step(tokens: number[][]): Promise<number[]> {
    await new Promise((r) => setTimeout(r, 0));
    return this.inner.step(tokens);
  }
  lastLogits(s: number): Promise<Float32Array> {
    if (!this.inner.lastLogits) throw new EngineError('internal', 'this backend keeps no logits');
    return this.inner.lastLogits(s);
  }
  dispose(): void {
    this.inner.dispose();
  }
}

/** Validated sampling options: Meta's defaults, overridden field by field. */
export function resolveSampling(s: Partial<SamplingOptions> = {}): SamplingOptions {
  const out: SamplingOptions = {
    temperature: s.temperature ?? META_DEFAULTS.temperature,
    topP: s.topP ?? META_DEFAULTS.topP,
    topK: s.topK ?? META_DEFAULTS.topK,
    seed: s.seed ?? META_DEFAULTS.seed,
  };
  if (!Number.isFinite(out.temperature) || out.temperature < 0) {
    throw badArg(`temperature must be a number ≥ 0 (0 = greedy), got ${out.temperature}`);
  }
  if (!Number.isFinite(out.topP) || out.topP <= 0 || out.topP > 1) {
    throw badArg(`top-p must be in (0, 1], got ${out.topP}`);
  }
  checkInt('top-k', out.topK, 0, Number.MAX_SAFE_INTEGER);
  checkInt('seed', out.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  return out;
}

interface GpuBackend {
  GpuModel: typeof import('./gpu/model').GpuModel;
  /** The kernel registry with every built-in kernel and the caller's checked replacements. */
  registryWith(
    device: GPUDevice,
    custom: Map<string, string>,
  ): Promise<import('./gpu/registry').KernelRegistry>;
}

/** The GPU backend is loaded on demand so CPU-only hosts never pull in the WebGPU code. */
async function importGpuBackend(): Promise<GpuBackend> {
  const [{ GpuModel }, { registryWithCustomOps }] = await Promise.all([
    import('./gpu/model'),
    import('./gpu/custom-ops'),
  ]);
  // Each custom kernel compiles and passes the built-in's self-check against the CPU reference on
  // random inputs; an unknown name or a wrong kernel is EngineError('kernel-rejected').
  return { GpuModel, registryWith: (device, custom) => registryWithCustomOps({ device }, custom) };
}

export class LoadedModel {
  private busy = false;
  private disposed = false;

  private constructor(
    readonly file: GgufFile,
    readonly config: LlamaConfig,
    readonly tokenizer: Llama3Tokenizer,
    readonly runner: ModelRunner,
    readonly loadMs: number,
    readonly device: Device,
    /** Set when load() created the GPU device itself (dispose() then destroys it). */
    private readonly ownedGpu: GpuContext | undefined,
    /** The context in use on 'gpu' (owned or the caller's). */
    readonly gpuContext: GpuContext | undefined,
  ) {}

  static async load(source: RandomAccessSource, opts: LoadModelOptions): Promise<LoadedModel> {
    const t0 = performance.now();
    if (opts.device !== 'cpu' && opts.device !== 'gpu') {
      throw badArg(`device must be "cpu" or "gpu", got ${JSON.stringify(opts.device)}`);
    }
    const quantizationEncoding = opts.quantizationEncoding;
    if (quantizationEncoding !== undefined && !QUANT_ENCODINGS.includes(quantizationEncoding)) {
      throw badArg(
        `quantization encoding must be q4_0 or float32, got ${JSON.stringify(quantizationEncoding)}`,
      );
    }
    if (opts.device === 'gpu' && !opts.gpu && !opts.gpuContext) {
      throw badArg('device "gpu" needs a GPU object (navigator.gpu, or create([]) from the webgpu package)');
    }
    if (opts.device === 'cpu' && opts.customKernels && opts.customKernels.size > 0) {
      throw badArg('custom kernels replace GPU kernels; they need device "gpu"');
    }
    checkInt('batch size', opts.maxBatch, 1, 256);
    if (opts.signal?.aborted) throw interrupted(`loading ${source.name}`);

    // 1. Header: metadata and tensor table (a few MB even for 8B; weights are not read yet).
    const file = await readGguf(source);
    opts.onProgress?.({ phase: 'header', loadedBytes: file.dataOffset, totalBytes: file.dataOffset });
    const config = llamaConfigFromGguf(file);
    validateLlamaTensors(file, config);
    const tokenizer = opts.tokenizer ?? Llama3Tokenizer.fromGguf(file.metadata);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new EngineError(
        'bad-tokenizer',
        `the tokenizer has ${tokenizer.vocabSize} tokens but the model only ${config.vocabSize}; use the model's own tokenizer`,
      );
    }
    const maxBatch = opts.maxBatch ?? META_DEFAULTS.maxBatchSize;
    const maxSeqLen = opts.maxSeqLen ?? Math.min(config.contextLength, 2048);
    checkInt('max sequence length', maxSeqLen, 2, config.contextLength);

    // 2. Weights, through a counting source so every backend reports progress the same way.
    const totalBytes = file.tensors.reduce((a, t) => a + t.byteLength, 0);
    const tracked = new LoadTracker(source, totalBytes, opts.onProgress, opts.signal);
    let runner: ModelRunner;
    let ownedGpu: GpuContext | undefined;
    let gpuContext: GpuContext | undefined;
    if (opts.device === 'cpu') {
      runner = new YieldingRunner(
        await ReferenceModel.load(tracked, file, config, { maxBatch, maxSeqLen, quantizationEncoding }),
      );
    } else {
      const backend = await importGpuBackend();
      gpuContext = opts.gpuContext;
      if (!gpuContext) {
        ownedGpu = await createGpuContext(opts.gpu);
        gpuContext = ownedGpu;
      }
      try {
        const registry = opts.customKernels?.size
          ? await backend.registryWith(gpuContext.device, opts.customKernels)
          : undefined;
        runner = await backend.GpuModel.load(gpuContext, tracked, file, config, {
          maxBatch,
          maxSeqLen,
          encoding: quantizationEncoding,
          registry,
        });
      } catch (e) {
        ownedGpu?.device.destroy();
        throw e;
      }
    }
    if (opts.signal?.aborted) {
      runner.dispose();
      ownedGpu?.device.destroy();
      throw interrupted(`loading ${source.name}`);
    }
    const loadMs = performance.now() - t0;
    return new LoadedModel(file, config, tokenizer, runner, loadMs, opts.device, ownedGpu, gpuContext);
  }

  /** Prompt ids as the model will see them: BOS + text, or the rendered chat (which has its own BOS). */
  encodePrompt(prompt: string, mode: 'completion' | 'chat' = 'completion'): number[] {
    if (mode === 'chat') {
      const messages: ChatMessage[] = [{ role: 'user', content: prompt }];
      return encodeChat(this.tokenizer, messages, { addGenerationPrompt: true });
    }
    // User text never turns into control tokens (Meta's encode: allowed_special = none).
    return this.tokenizer.encode(prompt, { bos: true, allowSpecial: false });
  }

  async complete(req: CompletionRequest): Promise<CompletionResult> {
    if (this.disposed) throw badArg('this model was disposed; load it again');
    if (this.busy) throw badArg('a completion is already running on this model; wait for it or cancel it');
    if (!Array.isArray(req.prompts) || req.prompts.length === 0) throw badArg('no prompts given');
    const vocab = Math.min(this.config.vocabSize, this.tokenizer.vocabSize);
    for (const [i, p] of req.prompts.entries()) {
      if (typeof p === 'string') continue;
      if (!Array.isArray(p) || p.length === 0) throw badArg(`prompt ${i + 1} is neither text nor token ids`);
      for (const t of p) {
        if (!Number.isInteger(t) || t < 0 || t >= vocab) {
          throw badArg(`prompt ${i + 1} has token id ${t}, outside the vocabulary (0..${vocab - 1})`);
        }
      }
    }
    const mode = req.mode ?? 'completion';
    if (mode !== 'completion' && mode !== 'chat')
      throw badArg(`mode must be "completion" or "chat", got ${mode}`);
    const maxTokens = req.maxTokens ?? META_DEFAULTS.maxTokens;
    checkInt('max tokens', maxTokens, 1, Number.MAX_SAFE_INTEGER);
    const sampling = resolveSampling(req.sampling);
    const maxSeqLen = this.runner.maxSeqLen;

    const promptTokens = req.prompts.map((p) =>
      typeof p === 'string' ? this.encodePrompt(p, mode) : [...p],
    );
    for (const [i, ids] of promptTokens.entries()) {
      // generate() needs room for at least one new token.
      if (ids.length >= maxSeqLen) {
        throw new EngineError(
          'context-overflow',
          `prompt ${i + 1} is ${ids.length} tokens but the context holds ${maxSeqLen} positions (prompt + new tokens); shorten the prompt or raise the context length`,
        );
      }
    }

    const n = req.prompts.length;
    const text = req.prompts.map(() => '');
    const tokens: number[][] = req.prompts.map(() => []);
    const finishReasons: FinishReason[] = req.prompts.map(() => 'interrupted');
    const announced = req.prompts.map(() => false);
    const batchSize = this.runner.maxBatch;
    const totals = {
      prefillMs: 0,
      decodeMs: 0,
      ttft: Number.NaN,
      prompt: 0,
      generated: 0,
      decodeSteps: 0,
      batches: 0,
    };
    const stopIds = this.tokenizer.stopIds;

    this.busy = true;
    try {
      for (let b0 = 0; b0 < n; b0 += batchSize) {
        if (req.signal?.aborted) break;
        const idx = Array.from({ length: Math.min(batchSize, n - b0) }, (_, k) => b0 + k);
        const decoders = idx.map(() => this.tokenizer.streamDecoder());
        const counts = idx.map(() => 0);
        const ended = idx.map(() => false);
        const end = (s: number, reason: FinishReason) => {
          if (ended[s]) return;
          ended[s] = true;
          const g = idx[s];
          const rest = decoders[s].flush();
          if (rest) {
            text[g] += rest;
            req.onText?.(g, rest, -1);
          }
          finishReasons[g] = reason;
          announced[g] = true;
          req.onFinish?.(g, reason);
        };
        const r = await generate(this.runner, {
          prompts: idx.map((g) => promptTokens[g]),
          maxTokens,
          // Sequence g always draws from stream seed + g, whatever the batch size.
          sampling: { ...sampling, seed: sampling.seed + b0 },
          stopTokens: stopIds,
          signal: req.signal,
          onToken: (s, t) => {
            const g = idx[s];
            counts[s]++;
            if (stopIds.has(t)) {
              end(s, 'stop');
              return;
            }
            const delta = decoders[s].push(t);
            text[g] += delta;
            req.onText?.(g, delta, t);
            // The same limits generate() applies, so the host hears of the end without waiting.
            if (counts[s] >= maxTokens || promptTokens[g].length + counts[s] >= maxSeqLen) end(s, 'length');
          },
        });
        for (const [s, g] of idx.entries()) {
          tokens[g] = r.tokens[s];
          end(s, r.finishReasons[s]);
        }
        if (totals.batches === 0) totals.ttft = r.stats.timeToFirstTokenMs;
        totals.batches++;
        totals.prefillMs += r.stats.prefillMs;
        totals.decodeMs += r.stats.decodeMs;
        totals.prompt += r.stats.promptTokens;
        totals.generated += r.stats.generatedTokens;
        totals.decodeSteps += r.stats.generatedTokens - idx.length;
      }
    } finally {
      this.busy = false;
    }
    // Prompts whose batch never ran (cancelled first).
    for (let g = 0; g < n; g++) if (!announced[g]) req.onFinish?.(g, 'interrupted');

    return {
      text,
      tokens,
      promptTokens,
      finishReasons,
      stats: {
        promptTokens: totals.prompt,
        generatedTokens: totals.generated,
        timeToFirstTokenMs: totals.ttft,
        prefillMs: totals.prefillMs,
        decodeMs: totals.decodeMs,
        prefillTokensPerSecond: totals.prefillMs > 0 ? (totals.prompt / totals.prefillMs) * 1000 : 0,
        decodeTokensPerSecond: totals.decodeMs > 0 ? (totals.decodeSteps / totals.decodeMs) * 1000 : 0,
        loadMs: this.loadMs,
        batches: totals.batches,
        device: this.device,
      },
    };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.runner.dispose();
    this.ownedGpu?.device.destroy();
  }
}
