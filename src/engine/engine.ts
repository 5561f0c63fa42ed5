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
import { type ChatMessage, encodeChatPrompt } from './chat';
import { checkIntegerInRange, EngineError } from './errors';
import {
  type FinishReason,
  type GenerationStats,
  generate,
  type KvCacheRecord,
  META_DEFAULTS,
  type ModelRunner,
  type SamplingOptions,
  type TokenEvent,
} from './generation';
import { llamaConfigFromGguf, readGguf } from './gguf';
import type { GgufFile, LlamaConfig } from './gguf/types';
import { createGpuContext, type GpuContext } from './gpu/device';
import { checkTokenIds, resolveRunnerLimits } from './limits';
import { ReferenceModel } from './reference/model';
import type { RandomAccessSource } from './source';
import { Llama3Tokenizer } from './tokenizer';

export type { ChatMessage } from './chat';
export type { FinishReason, TokenEvent } from './generation';

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
  /**
   * GPU: before the weights upload, the quick self-checks of the kernels this model uses run on
   * the adapter against the CPU reference (gpu/check/self-check.ts); a wrong kernel fails the load
   * with EngineError('kernel-rejected'). Passes are remembered per adapter and kernel source in
   * this store (default: this process's memory; the worker keeps them in IndexedDB, the CLI in a
   * file). `false` skips the checks (tests that check the kernels themselves).
   */
  kernelSelfCheck?: import('./gpu/check/self-check').SelfCheckStore | false;
  /**
   * GPU: prefill attention in packed f16 where the adapter offers `shader-f16` (GpuLoadOptions.f16;
   * without the feature the load fails with EngineError 'gpu-limits'). Default off.
   */
  f16?: boolean;
  /** Sequences per batch, 1..64; default META_DEFAULTS.maxBatchSize (4). */
  maxBatch?: number;
  /**
   * Positions per sequence (KV cache length); default on the GPU the model's own context capped by
   * the adapter (defaultGpuMaxSeqLen in memory.ts), on the CPU min(context length, 4096) (limits.ts).
   */
  maxSeqLen?: number;
  onProgress?: (p: LoadProgress) => void;
  signal?: AbortSignal;
}

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
  /** Stop strings: a prompt's text ends before the first one it produces (finish reason 'stop'). */
  stop?: readonly string[];
  /**
   * One prompt reuses the KV cache rows of its longest common prefix with what the model last
   * processed (`stats.reusedTokens`). Default true; false prefills everything (tests compare).
   */
  reuseCache?: boolean;
  signal?: AbortSignal;
  /**
   * The token stream (see `TokenEvent`): one event per generated token, then one closing event per
   * prompt with its finish reason and any held-back text.
   */
  onToken?: (ev: TokenEvent) => void;
}

/** One chat turn: the whole conversation so far, rendered with the model's chat template. */
export interface ChatRequest {
  /** system / user / assistant messages, oldest first; the model answers the last one. */
  messages: readonly ChatMessage[];
  /** New tokens at most (default 64). */
  maxTokens?: number;
  /** The seed, when absent, is a fresh random one (reported in `stats.seed`). */
  sampling?: Partial<SamplingOptions>;
  stop?: readonly string[];
  /** See CompletionRequest.reuseCache. */
  reuseCache?: boolean;
  signal?: AbortSignal;
  /** The answer's token stream (seq is always 0). */
  onToken?: (ev: TokenEvent) => void;
}

export interface ChatResult {
  /** The assistant's answer (the end-of-turn token not included). */
  text: string;
  /** Its ids (the end-of-turn token, when hit, is the last element). */
  tokens: number[];
  /** The rendered conversation's ids as fed to the model. */
  promptTokens: number[];
  finishReason: FinishReason;
  /**
   * Messages left out of this turn from the front (after the system prompt) because the
   * conversation no longer fit the context; 0 normally. A warning says so too.
   */
  droppedMessages: number;
  /** Positions of the context in use after this turn (prompt + answer), of `contextLength`. */
  contextTokens: number;
  contextLength: number;
  /** Things the user should know (a template fallback, dropped messages). */
  warnings: string[];
  stats: CompletionStats;
}

export interface CompletionStats extends GenerationStats {
  loadMs: number;
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
  /** Things the user should know about this run (e.g. the model's chat template failed and Meta's was used). */
  warnings: string[];
  stats: CompletionStats;
}

const QUANT_ENCODINGS: readonly QuantizationEncoding[] = ['q4_0', 'float32'];

function badArg(message: string): EngineError {
  return new EngineError('bad-argument', message);
}

/** Stop strings: an array of non-empty strings (at most 16, as many APIs allow 4). */
function checkStops(stop: readonly string[] | undefined): readonly string[] {
  if (stop === undefined) return [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string' || s.length === 0) || stop.length > 16) {
    throw badArg('stop must be a list of at most 16 non-empty strings');
  }
  return stop;
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

/** A fresh random seed in [0, 2^53): every run samples differently unless the caller fixes one. */
export function freshSeed(): number {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return (hi & 0x1fffff) * 2 ** 32 + lo;
}

/**
 * Validated sampling options: Meta's defaults, overridden field by field; without a seed, a fresh
 * random one (the result's `stats.seed` tells it, to reproduce the run).
 */
export function resolveSampling(s: Partial<SamplingOptions> = {}): SamplingOptions {
  const out: SamplingOptions = {
    temperature: s.temperature ?? META_DEFAULTS.temperature,
    topP: s.topP ?? META_DEFAULTS.topP,
    topK: s.topK ?? META_DEFAULTS.topK,
    seed: s.seed ?? freshSeed(),
  };
  if (!Number.isFinite(out.temperature) || out.temperature < 0) {
    throw badArg(`temperature must be a number ≥ 0 (0 = greedy), got ${out.temperature}`);
  }
  if (!Number.isFinite(out.topP) || out.topP <= 0 || out.topP > 1) {
    throw badArg(`top-p must be in (0, 1], got ${out.topP}`);
  }
  checkIntegerInRange('top-k', out.topK, 0, Number.MAX_SAFE_INTEGER);
  checkIntegerInRange('seed', out.seed, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  return out;
}

interface GpuBackend {
  GpuModel: typeof import('./gpu/model').GpuModel;
  /** The kernel registry with every built-in kernel and the caller's checked replacements. */
  registryWith(
    device: GPUDevice,
    custom: Map<string, string>,
  ): Promise<import('./gpu/check/registry').KernelRegistry>;
  selfCheckModel: typeof import('./gpu/check/self-check').selfCheckModel;
}

/** The GPU backend is loaded on demand so CPU-only hosts never pull in the WebGPU code. */
async function importGpuBackend(): Promise<GpuBackend> {
  const [{ GpuModel }, { registryWithCustomOps }, { selfCheckModel }] = await Promise.all([
    import('./gpu/model'),
    import('./gpu/custom-ops'),
    import('./gpu/check/self-check'),
  ]);
  // Each custom kernel compiles and passes the built-in's self-check against the CPU reference on
  // random inputs; an unknown name or a wrong kernel is EngineError('kernel-rejected').
  return {
    GpuModel,
    registryWith: (device, custom) => registryWithCustomOps({ device }, custom),
    selfCheckModel,
  };
}

export class LoadedModel {
  private busy = false;
  private disposed = false;
  /** Stops the running completion (set while one runs). */
  private stopRunning?: () => void;
  /** What the runner's sequence 0 holds in its KV cache (the conversation so far). */
  private readonly kvCache: KvCacheRecord = { tokens: [] };

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
    if (opts.device === 'cpu' && opts.f16) throw badArg('f16 selects GPU kernels; it needs device "gpu"');
    if (opts.signal?.aborted) throw interrupted(`loading ${source.name}`);

    // 1. Header: metadata and tensor table (a few MB even for 8B; weights are not read yet).
    const file = await readGguf(source);
    opts.onProgress?.({ phase: 'header', loadedBytes: file.dataOffset, totalBytes: file.dataOffset });
    // Validates the tensors too (once): the config only exists for a file we can run.
    const config = llamaConfigFromGguf(file);
    const tokenizer = opts.tokenizer ?? Llama3Tokenizer.fromGguf(file.metadata);
    // The file's own tokenizer always matches (llamaConfigFromGguf checks it); another one must have
    // exactly one token per embedding row, or a sampled id could have no text.
    if (tokenizer.vocabSize !== config.vocabSize) {
      throw new EngineError(
        'bad-tokenizer',
        `the tokenizer has ${tokenizer.vocabSize} tokens but the model ${config.vocabSize}; use the model's own tokenizer`,
      );
    }
    // Checked here (before any byte is read); the GPU picks its default context with the adapter's limits.
    const { maxBatch, maxSeqLen } = resolveRunnerLimits(config, opts);

    // 2. Weights, through a counting source so every backend reports progress the same way.
    const totalBytes = file.tensors.reduce((a, t) => a + t.byteLength, 0);
    const tracked = new LoadTracker(source, totalBytes, opts.onProgress, opts.signal);
    let runner: ModelRunner;
    let ownedGpu: GpuContext | undefined;
    let gpuContext: GpuContext | undefined;
    if (opts.device === 'cpu') {
      runner = await ReferenceModel.load(tracked, file, config, {
        maxBatch,
        maxSeqLen,
        quantizationEncoding,
      });
    } else {
      const backend = await importGpuBackend();
      gpuContext = opts.gpuContext;
      if (!gpuContext) {
        ownedGpu = await createGpuContext(opts.gpu);
        gpuContext = ownedGpu;
      }
      try {
        const registry = await backend.registryWith(gpuContext.device, opts.customKernels ?? new Map());
        if (opts.kernelSelfCheck !== false) {
          await backend.selfCheckModel(gpuContext, registry, file, {
            encoding: quantizationEncoding,
            store: opts.kernelSelfCheck,
            shape: { ...config, maxSeqLen },
            f16: opts.f16,
          });
        }
        runner = await backend.GpuModel.load(gpuContext, tracked, file, config, {
          maxBatch,
          maxSeqLen: opts.maxSeqLen,
          encoding: quantizationEncoding,
          registry,
          f16: opts.f16,
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
    return this.encodePromptWithWarning(prompt, mode).ids;
  }

  /**
   * The same, with the warning the chat encoder gives when the model's own template failed (a
   * runaway or broken template) and Meta's Llama 3 template was used instead: hosts show it.
   */
  private encodePromptWithWarning(
    prompt: string,
    mode: 'completion' | 'chat',
  ): { ids: number[]; warning?: string } {
    if (mode === 'chat') {
      const messages: ChatMessage[] = [{ role: 'user', content: prompt }];
      return encodeChatPrompt(this.tokenizer, messages, { addGenerationPrompt: true });
    }
    // User text never turns into control tokens (Meta's encode: allowed_special = none).
    return { ids: this.tokenizer.encode(prompt, { bos: true, allowSpecial: false }) };
  }

  async complete(req: CompletionRequest): Promise<CompletionResult> {
    this.checkUsable();
    if (!Array.isArray(req.prompts) || req.prompts.length === 0) throw badArg('no prompts given');
    const vocab = this.config.vocabSize;
    for (const [i, p] of req.prompts.entries()) {
      if (typeof p === 'string') continue;
      if (!Array.isArray(p) || p.length === 0) throw badArg(`prompt ${i + 1} is neither text nor token ids`);
      checkTokenIds(p, vocab, `prompt ${i + 1}`);
    }
    const mode = req.mode ?? 'completion';
    if (mode !== 'completion' && mode !== 'chat')
      throw badArg(`mode must be "completion" or "chat", got ${mode}`);
    const maxTokens = req.maxTokens ?? META_DEFAULTS.maxTokens;
    checkIntegerInRange('max tokens', maxTokens, 1, Number.MAX_SAFE_INTEGER);
    const sampling = resolveSampling(req.sampling);
    const stop = checkStops(req.stop);
    const warnings = new Set<string>();
    const promptTokens = req.prompts.map((p) => {
      if (typeof p !== 'string') return [...p];
      const { ids, warning } = this.encodePromptWithWarning(p, mode);
      if (warning) warnings.add(warning);
      return ids;
    });
    const r = await this.run(req, promptTokens, maxTokens, sampling, stop);
    return {
      text: r.text,
      tokens: r.tokens,
      promptTokens,
      finishReasons: r.finishReasons,
      warnings: [...warnings],
      stats: r.stats,
    };
  }

  /**
   * One turn of a conversation. The prompt is exactly the chat template's rendering of all
   * `messages` (what `generate --messages` feeds); only the tokens after what the KV cache already
   * holds are prefilled. When the conversation would not leave room for the answer (min(maxTokens,
   * half the context)), the oldest messages after the system prompt are left out, with a warning.
   */
  async chat(req: ChatRequest): Promise<ChatResult> {
    this.checkUsable();
    const maxTokens = req.maxTokens ?? META_DEFAULTS.maxTokens;
    checkIntegerInRange('max tokens', maxTokens, 1, Number.MAX_SAFE_INTEGER);
    const sampling = resolveSampling(req.sampling);
    const stop = checkStops(req.stop);
    const fit = this.fitConversation(req.messages, maxTokens);
    const r = await this.run(req, [fit.ids], maxTokens, sampling, stop);
    return {
      text: r.text[0],
      tokens: r.tokens[0],
      promptTokens: fit.ids,
      finishReason: r.finishReasons[0],
      droppedMessages: fit.dropped,
      contextTokens: Math.min(this.runner.maxSeqLen, fit.ids.length + r.tokens[0].length),
      contextLength: this.runner.maxSeqLen,
      warnings: fit.warnings,
      stats: r.stats,
    };
  }

  /** The conversation's ids, leaving out its oldest messages (never the system prompt) to fit. */
  private fitConversation(
    messages: readonly ChatMessage[],
    maxTokens: number,
  ): { ids: number[]; dropped: number; warnings: string[] } {
    const encode = (ms: readonly ChatMessage[]) =>
      encodeChatPrompt(this.tokenizer, ms, { addGenerationPrompt: true });
    let prompt = encode(messages); // checks the messages
    const contextLength = this.runner.maxSeqLen;
    const budget = contextLength - Math.min(maxTokens, Math.floor(contextLength / 2));
    const lead = messages[0].role === 'system' ? 1 : 0;
    let dropped = 0;
    while (prompt.ids.length > budget && lead + dropped < messages.length - 1) {
      dropped++;
      // A conversation does not resume with an answer: drop the answer of a dropped question too.
      while (lead + dropped < messages.length - 1 && messages[lead + dropped].role === 'assistant') dropped++;
      prompt = encode([...messages.slice(0, lead), ...messages.slice(lead + dropped)]);
    }
    const warnings = prompt.warning ? [prompt.warning] : [];
    if (dropped > 0) {
      warnings.push(
        `The conversation no longer fits the context (${contextLength} tokens): the ${dropped} oldest ` +
          `message${dropped === 1 ? ' was' : 's were'} left out of this turn${lead ? ' (the system prompt was kept)' : ''}.`,
      );
    }
    return { ids: prompt.ids, dropped, warnings };
  }

  private checkUsable(): void {
    if (this.disposed) throw badArg('this model was disposed; load it again');
    if (this.busy) throw badArg('a completion is already running on this model; wait for it or cancel it');
  }

  /** generate() with the model's tokenizer, KV cache record and cancellation (caller's signal or dispose()). */
  private async run(
    req: { signal?: AbortSignal; onToken?: (ev: TokenEvent) => void; reuseCache?: boolean },
    prompts: number[][],
    maxTokens: number,
    sampling: SamplingOptions,
    stop: readonly string[],
  ): Promise<{ text: string[]; tokens: number[][]; finishReasons: FinishReason[]; stats: CompletionStats }> {
    // dispose() during a completion stops it at the next step and frees the runner afterwards.
    const ac = new AbortController();
    this.stopRunning = () => ac.abort();
    const onCallerAbort = () => ac.abort();
    req.signal?.addEventListener('abort', onCallerAbort);
    if (req.signal?.aborted) ac.abort();
    if (req.reuseCache === false) this.kvCache.tokens = [];
    this.busy = true;
    try {
      const r = await generate(this.runner, {
        prompts,
        maxTokens,
        sampling,
        stopTokens: this.tokenizer.stopIds,
        stop,
        cache: this.kvCache,
        signal: ac.signal,
        detokenizer: () => this.tokenizer.streamDecoder(),
        onToken: req.onToken,
      });
      return { ...r, stats: { ...r.stats, loadMs: this.loadMs, device: this.device } };
    } finally {
      req.signal?.removeEventListener('abort', onCallerAbort);
      this.busy = false;
      this.stopRunning = undefined;
      if (this.disposed) this.release();
    }
  }

  /**
   * Frees the runner and the device the model created. While a completion runs, it is stopped at
   * its next step (it ends as 'interrupted' with its partial text) and freed when that step is over:
   * a step never runs on freed buffers.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.busy) this.stopRunning?.();
    else this.release();
  }

  private release(): void {
    this.runner.dispose();
    this.ownedGpu?.device.destroy();
  }
}
