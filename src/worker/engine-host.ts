/**
 * EngineHost: the EngineApi implementation. Runs in the worker (engine-worker.ts) and in-process
 * (tests, other hosts). It owns the model cache, downloads, the loaded model and cancellation.
 *
 * A first load from a URL does not wait for the whole file: the download writes chunks to the
 * cache while the loader reads the same bytes through a ChunkedSource that waits for them.
 */
import { parseChatMessages } from '../engine/chat';
import { EngineError } from '../engine/errors';
import {
  type FinishReason,
  type GenerationStats,
  type SamplingOptions,
  type TokenEvent,
  yieldToEventLoop,
} from '../engine/generation';
import { readGguf } from '../engine/gguf/reader';
import { HttpRangeSource } from '../engine/http-source';
import { inspectModel, type ModelInspection } from '../engine/inspect';
import type { BufferLimits } from '../engine/memory';
import type { GgufFile, LlamaConfig } from '../engine/gguf/types';
import type { RandomAccessSource } from '../engine/source';
import { acquireModel, checkForUpdate } from '../storage/acquire';
import { probeRemote } from '../storage/downloader';
import { type KeyValueStore, openKeyValueStore } from '../storage/kv';
import { contiguousBytes } from '../storage/manifest';
import { ModelStore } from '../storage/model-store';
import type {
  CachedModelInfo,
  ChatMessage,
  ChatOutcome,
  ChatParams,
  EngineApi,
  Environment,
  GenerateOutcome,
  GenerateParams,
  LoadProgress,
  ModelInfo,
  ModelSourceSpec,
  RemoteChange,
  StorageInfo,
} from './api';
import { toEngineError } from './errors';

/** What the host needs from a loaded model (the engine facade's LoadedModel has this shape). */
export interface LoadedModelLike {
  /** 'gpu' or 'cpu' (the reference backend, when a build has no WebGPU backend). */
  device?: string;
  file: GgufFile;
  config: LlamaConfig;
  runner: { maxBatch: number; maxSeqLen: number };
  /** The WebGPU device's context on 'gpu' (its `lost` promise tells a lost device). */
  gpuContext?: { lost: Promise<GPUDeviceLostInfo> };
  complete(req: {
    prompts: string[];
    maxTokens?: number;
    sampling?: Partial<SamplingOptions>;
    mode?: 'completion' | 'chat';
    stop?: string[];
    signal?: AbortSignal;
    onToken?: (ev: TokenEvent) => void;
  }): Promise<{
    text: string[];
    tokens: number[][];
    finishReasons: FinishReason[];
    warnings?: string[];
    stats: GenerationStats;
  }>;
  chat(req: {
    messages: ChatMessage[];
    maxTokens?: number;
    sampling?: Partial<SamplingOptions>;
    stop?: string[];
    signal?: AbortSignal;
    onToken?: (ev: TokenEvent) => void;
  }): Promise<{
    text: string;
    tokens: number[];
    promptTokens: number[];
    finishReason: FinishReason;
    droppedMessages: number;
    contextTokens: number;
    contextLength: number;
    warnings: string[];
    stats: GenerationStats;
  }>;
  /** Stops a running completion at its next step (it ends 'interrupted'), then frees the model. */
  dispose(): void;
}

export type ModelLoader = (
  source: RandomAccessSource,
  opts: {
    onProgress?: (p: { phase: string; loadedBytes: number; totalBytes: number }) => void;
    signal?: AbortSignal;
  },
) => Promise<LoadedModelLike>;

export interface EngineHostOptions {
  loader: ModelLoader;
  /** navigator.gpu in a browser; undefined where WebGPU is missing. */
  gpu?: GPU;
  /**
   * The loader needs WebGPU: without a usable adapter, load() says so before it downloads or reads
   * a byte (a multi-GB download the machine cannot run is only a waste of the user's disk).
   */
  requireWebGpu?: boolean;
  /** Cache chunk size, 64 KiB … 256 MiB (tests use small chunks). */
  chunkSize?: number;
  /** Tests only: chunk sizes down to 1 KiB. */
  allowSmallChunks?: boolean;
  /** Download timeouts: headers, and at least 16 KiB of body, within this long (default 30 s each). */
  answerTimeoutMs?: number;
  stallTimeoutMs?: number;
  /** How long checkForUpdate waits for its HEAD (default 5 s). */
  updateCheckTimeoutMs?: number;
  fetch?: typeof fetch;
  /** Storage; IndexedDB (falling back to memory) by default. */
  kv?: KeyValueStore;
  retryDelayMs?: (attempt: number) => number;
}

const bufferLimits = (adapter: GPUAdapter): BufferLimits => ({
  maxBufferSize: adapter.limits.maxBufferSize,
  maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
});

export class EngineHost implements EngineApi {
  private storePromise?: Promise<ModelStore>;
  private model?: LoadedModelLike;
  /** Where the loaded model came from (a URL's download is in the cache by then), to load it again. */
  private loadedSpec?: ModelSourceSpec;
  private loadAbort?: AbortController;
  private genAbort?: AbortController;
  private generating = false;
  /** Settles when the running generation (if any) has returned. */
  private running: Promise<void> = Promise.resolve();
  /** Set when the loaded model's GPU device was lost: generation needs a reload. */
  private deviceLost?: string;

  constructor(private readonly opts: EngineHostOptions) {}

  private store(): Promise<ModelStore> {
    this.storePromise ??= (this.opts.kv ? Promise.resolve(this.opts.kv) : openKeyValueStore()).then(
      (kv) => new ModelStore(kv),
    );
    return this.storePromise;
  }

  async environment(): Promise<Environment> {
    const gpu = this.opts.gpu;
    if (!gpu) {
      return {
        webgpu: false,
        problem:
          'This browser has no WebGPU. Use a recent Chrome or Edge (113+) on a desktop, over https or localhost; in Firefox or Safari enable WebGPU first.',
      };
    }
    try {
      const adapter = await gpu.requestAdapter();
      if (!adapter) {
        return {
          webgpu: false,
          problem:
            'WebGPU is present but no GPU adapter was found: the GPU may be blocklisted or its driver missing. Check chrome://gpu or update the driver.',
        };
      }
      const i = adapter.info;
      const adapterName =
        [i?.vendor, i?.architecture, i?.description].filter(Boolean).join(' ') || 'WebGPU adapter';
      return { webgpu: true, adapter: adapterName, limits: bufferLimits(adapter) };
    } catch (e) {
      return { webgpu: false, problem: `WebGPU failed to start: ${e instanceof Error ? e.message : e}` };
    }
  }

  async probe(url: string): Promise<{ size?: number; cachedBytes: number; complete: boolean }> {
    const store = await this.store();
    const m = await store.getManifest(url);
    if (m && ModelStore.usable(m)) return { size: m.size, cachedBytes: m.size, complete: true };
    const p = await probeRemote(url, { fetch: this.opts.fetch });
    return { size: p.size, cachedBytes: m ? contiguousBytes(m) : 0, complete: false };
  }

  async inspect(url: string, opts: { maxSeqLen?: number } = {}): Promise<ModelInspection> {
    try {
      // The GPU estimate is for the context a load on this adapter would pick.
      const adapter = opts.maxSeqLen === undefined ? await this.opts.gpu?.requestAdapter() : undefined;
      const source = await HttpRangeSource.open(url, {}, { fetch: this.opts.fetch });
      return await inspectModel(source, {
        maxSeqLen: opts.maxSeqLen,
        limits: adapter ? bufferLimits(adapter) : undefined,
      });
    } catch (e) {
      throw toEngineError(e);
    }
  }

  /**
   * Loads a model. The model loaded so far stays loaded, and usable, until the new one is ready:
   * a load that fails or is stopped leaves it in place. When the GPU cannot hold both, the old one
   * is freed and the new load tried again; if that fails too, the old one is loaded again (from the
   * cache, or its file) and the error says so.
   */
  async load(spec: ModelSourceSpec, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo> {
    this.loadAbort?.abort();
    this.genAbort?.abort();
    // Registered before the first await, so that a newer load stops this one wherever it is.
    const ac = new AbortController();
    this.loadAbort = ac;
    try {
      if (this.opts.requireWebGpu) {
        const env = await this.environment();
        if (!env.webgpu) throw new EngineError('no-webgpu', env.problem ?? 'WebGPU is not available.');
      }
      const t0 = performance.now();
      const report = (p: LoadProgress) => {
        try {
          onProgress?.(p);
        } catch {
          // a broken progress callback must not break the load
        }
      };
      let loaded: Awaited<ReturnType<EngineHost['acquireAndLoad']>>;
      try {
        loaded = await this.acquireAndLoad(spec, ac, report);
      } catch (e) {
        const err = toEngineError(e);
        const previous = this.loadedSpec;
        if (err.code !== 'gpu-out-of-memory' || !this.model || !previous || ac.signal.aborted) throw err;
        // The GPU cannot hold both models: free the old one and try once more.
        await this.unload();
        try {
          loaded = await this.acquireAndLoad(spec, ac, report);
        } catch (again) {
          throw await this.restorePrevious(previous, toEngineError(again), ac);
        }
      }
      const { model, source, fromCache, id } = loaded;
      await this.replaceModel(model, spec);
      const c = model.config;
      report({ phase: 'ready', loadedBytes: source.size, totalBytes: source.size });
      return {
        id,
        name: source.name,
        sizeBytes: source.size,
        fromCache,
        cached: id !== undefined,
        loadMs: performance.now() - t0,
        config: {
          name: c.name,
          dim: c.dim,
          nLayers: c.nLayers,
          nHeads: c.nHeads,
          nKvHeads: c.nKvHeads,
          vocabSize: c.vocabSize,
          contextLength: c.contextLength,
        },
        maxBatch: model.runner.maxBatch,
        maxSeqLen: model.runner.maxSeqLen,
        device: model.device ?? 'gpu',
      };
    } finally {
      if (this.loadAbort === ac) this.loadAbort = undefined;
    }
  }

  /** The file (from the network, the cache or a local file) and its model, not yet in place. */
  private async acquireAndLoad(
    spec: ModelSourceSpec,
    outer: AbortController,
    report: (p: LoadProgress) => void,
  ) {
    // This attempt's own signal: a failed attempt stops its download without stopping the load,
    // which may try again; the caller's stop (`outer`) stops the attempt.
    const ac = new AbortController();
    const stop = () => ac.abort();
    if (outer.signal.aborted) ac.abort();
    outer.signal.addEventListener('abort', stop, { once: true });
    try {
      return await this.acquireAndLoadAttempt(spec, ac, outer.signal, report);
    } finally {
      outer.signal.removeEventListener('abort', stop);
    }
  }

  private async acquireAndLoadAttempt(
    spec: ModelSourceSpec,
    ac: AbortController,
    callerSignal: AbortSignal,
    report: (p: LoadProgress) => void,
  ) {
    const acquired = await acquireModel(spec, {
      store: () => this.store(),
      signal: ac.signal,
      fetch: this.opts.fetch,
      chunkSize: this.opts.chunkSize,
      allowSmallChunks: this.opts.allowSmallChunks,
      retryDelayMs: this.opts.retryDelayMs,
      answerTimeoutMs: this.opts.answerTimeoutMs,
      stallTimeoutMs: this.opts.stallTimeoutMs,
      onProgress: report,
      // Never mark a file complete whose header does not fit its size (a truncated upload).
      validate: async (source) => {
        await readGguf(source);
      },
    });
    const { source, fromCache, id } = acquired;

    let model: LoadedModelLike;
    try {
      model = await this.opts.loader(source, {
        signal: ac.signal,
        onProgress: (p) => report({ phase: p.phase, loadedBytes: p.loadedBytes, totalBytes: p.totalBytes }),
      });
      const { error } = await acquired.done;
      if (error !== undefined) {
        model.dispose();
        throw error;
      }
    } catch (e) {
      // The download's own error says more than the reader that was waiting on it. Read both
      // before aborting the download, which would then fail with 'interrupted'.
      const err = toEngineError(acquired.error ?? e);
      const stoppedByCaller = callerSignal.aborted;
      ac.abort();
      await acquired.settle(err);
      if (stoppedByCaller && err.code !== 'interrupted')
        throw new EngineError('interrupted', 'Loading stopped.');
      throw err;
    }
    if (ac.signal.aborted) {
      model.dispose();
      throw new EngineError('interrupted', 'Loading stopped.');
    }
    return { model, source, fromCache, id };
  }

  /** Puts `model` in place of the loaded one, which is freed once its generation (if any) stopped. */
  private async replaceModel(model: LoadedModelLike, spec: ModelSourceSpec): Promise<void> {
    const old = this.model;
    this.model = model;
    // A URL's file is in the cache by now (or downloads again when it could not be kept).
    this.loadedSpec = spec.kind === 'url' ? { kind: 'url', url: spec.url } : spec;
    this.deviceLost = undefined;
    model.gpuContext?.lost.then((info) => {
      // 'destroyed' is our own dispose(); anything else (driver reset, OOM, watchdog) is a loss.
      if (this.model === model && info.reason !== 'destroyed')
        this.deviceLost = info.message || 'unknown reason';
    });
    if (old) {
      this.genAbort?.abort();
      old.dispose();
      await this.running;
    }
  }

  /**
   * After the previous model was freed for a load that then failed: loads the previous one again
   * and returns the load's error, which says whether the previous model is back.
   */
  private async restorePrevious(previous: ModelSourceSpec, err: EngineError, ac: AbortController) {
    const why = `${err.message} The previous model was unloaded to make room for this one`;
    if (ac.signal.aborted) return new EngineError(err.code, `${why}; load it again to continue.`);
    try {
      const { model } = await this.acquireAndLoad(previous, ac, () => {});
      await this.replaceModel(model, previous);
      return new EngineError(err.code, `${why}, and has been loaded again.`);
    } catch {
      return new EngineError(err.code, `${why}; loading it again failed too: load a model to continue.`);
    }
  }

  async generate(params: GenerateParams, onToken?: (ev: TokenEvent) => void): Promise<GenerateOutcome> {
    const prompts = params.prompts;
    if (prompts.length === 0 || prompts.every((p) => p.length === 0)) {
      throw new EngineError('bad-argument', 'The prompt is empty. Type something to continue.');
    }
    return this.exclusive(async (model, signal) => {
      const r = await model.complete({
        prompts,
        maxTokens: params.maxTokens,
        sampling: params.sampling,
        mode: params.mode,
        stop: params.stop,
        signal,
        onToken,
      });
      return {
        text: r.text,
        tokens: r.tokens,
        finishReasons: r.finishReasons,
        warnings: r.warnings ?? [],
        stats: r.stats,
      };
    });
  }

  async chat(params: ChatParams, onToken?: (ev: TokenEvent) => void): Promise<ChatOutcome> {
    const messages = parseChatMessages(params.messages, 'The conversation');
    const last = messages[messages.length - 1];
    if (last.role === 'user' && last.content.trim() === '') {
      throw new EngineError('bad-argument', 'The message is empty. Type something to send.');
    }
    return this.exclusive(async (model, signal) => {
      const r = await model.chat({
        messages,
        maxTokens: params.maxTokens,
        sampling: params.sampling,
        stop: params.stop,
        signal,
        onToken,
      });
      return {
        text: r.text,
        tokens: r.tokens,
        finishReason: r.finishReason,
        promptTokens: r.promptTokens.length,
        droppedMessages: r.droppedMessages,
        contextTokens: r.contextTokens,
        contextLength: r.contextLength,
        warnings: r.warnings,
        stats: r.stats,
      };
    });
  }

  /** Runs one generation at a time on the loaded model, stoppable by interrupt() and unload(). */
  private async exclusive<T>(run: (model: LoadedModelLike, signal: AbortSignal) => Promise<T>): Promise<T> {
    const model = this.model;
    if (!model) throw new EngineError('bad-argument', 'No model is loaded. Load a model first.');
    if (this.generating)
      throw new EngineError('bad-argument', 'A generation is already running; stop it first.');
    if (this.deviceLost) throw this.lostError();
    this.generating = true;
    const ac = new AbortController();
    this.genAbort = ac;
    let settle!: () => void;
    this.running = new Promise<void>((r) => {
      settle = r;
    });
    try {
      return await run(model, ac.signal);
    } catch (e) {
      // After a loss most GPU calls "succeed" and mapAsync rejects: report the loss, not the symptom.
      await yieldToEventLoop();
      if (this.deviceLost) throw this.lostError();
      throw e;
    } finally {
      this.generating = false;
      if (this.genAbort === ac) this.genAbort = undefined;
      settle();
    }
  }

  private lostError(): EngineError {
    return new EngineError(
      'device-lost',
      `The GPU device was lost (${this.deviceLost}). Reload the model to continue; if it keeps happening, try a smaller model or close other GPU-heavy tabs.`,
    );
  }

  async interrupt(): Promise<void> {
    this.genAbort?.abort();
    this.loadAbort?.abort();
  }

  /**
   * Frees the model. A generation running on it is stopped at its next step and ends as
   * 'interrupted' with its partial text (never an error from a step on freed buffers).
   */
  async unload(): Promise<void> {
    const m = this.model;
    this.model = undefined;
    this.loadedSpec = undefined;
    this.genAbort?.abort();
    m?.dispose();
    await this.running;
  }

  async listCached(): Promise<CachedModelInfo[]> {
    const store = await this.store();
    return (await store.list()).map((m) => ({
      id: m.id,
      url: m.url,
      name: m.name,
      sizeBytes: m.size,
      storedBytes: contiguousBytes(m),
      complete: ModelStore.usable(m),
      updatedAt: m.updatedAt,
    }));
  }

  async deleteCached(id: string): Promise<void> {
    await (await this.store()).delete(id);
  }

  async checkForUpdate(id: string): Promise<RemoteChange | undefined> {
    return checkForUpdate(await this.store(), id, {
      fetch: this.opts.fetch,
      timeoutMs: this.opts.updateCheckTimeoutMs,
    });
  }

  async storageUse(): Promise<StorageInfo> {
    const store = await this.store();
    const u = await store.use();
    let persisted: boolean | undefined;
    try {
      persisted = await navigator.storage?.persisted?.();
    } catch {
      persisted = undefined;
    }
    return {
      modelBytes: u.modelBytes,
      usage: u.usage,
      quota: u.quota,
      persistentStore: u.persistent,
      persisted,
    };
  }
}
