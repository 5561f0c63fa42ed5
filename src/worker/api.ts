/**
 * The one typed interface between the UI and the engine host. The worker implements it
 * (engine-worker.ts, exposed through comlink); tests and other hosts can use `EngineHost` in-process.
 *
 * Callbacks cross the worker boundary as `Comlink.proxy(fn)`. Errors cross as `Error("[code] message")`
 * (EngineError.toWire); callers rebuild them with `EngineError.fromSerialized`.
 */
import type { ChatMessage } from '../engine/chat';
import type { ModelInspection } from '../engine/inspect';
import type { BufferLimits } from '../engine/memory';

export type { BufferLimits };
import type { FinishReason, GenerationStats, SamplingOptions, TokenEvent } from '../engine/generation';

export type ModelSourceSpec =
  /** Download (or reuse from the cache) a GGUF file. */
  | {
      kind: 'url';
      url: string;
      /** Download again even when a complete copy is cached (it changed on the server). */
      refresh?: boolean;
    }
  /** A local file: read in slices, never copied whole into memory, not cached. */
  | { kind: 'file'; file: File }
  /** A model already in the cache, by its id (the URL it came from). No network. */
  | { kind: 'cache'; id: string };

export interface LoadProgress {
  /**
   * `waiting` (another tab is downloading the same model), `probe`, `download`, `verify` (storage)
   * or an engine phase (header, weights, …).
   */
  phase: string;
  loadedBytes: number;
  totalBytes: number;
  /** Download speed (download phase only). */
  bytesPerSecond?: number;
  etaSeconds?: number;
  /** Bytes already cached when a download resumed. */
  resumedFrom?: number;
}

export interface ModelInfo {
  /** Cache id (URL loads), undefined for local files. */
  id?: string;
  name: string;
  sizeBytes: number;
  /** The weights were read from the cache (no download). */
  fromCache: boolean;
  /** The file is in the cache now (a later load works offline). */
  cached: boolean;
  /** Whole load, download included (ms). */
  loadMs: number;
  config: {
    name: string;
    dim: number;
    nLayers: number;
    nHeads: number;
    nKvHeads: number;
    vocabSize: number;
    contextLength: number;
  };
  maxBatch: number;
  maxSeqLen: number;
  /** Where it runs: 'gpu' (WebGPU) or 'cpu' (the reference backend, slow). */
  device: string;
}

export interface GenerateParams {
  /** One or more prompts, generated together as a batch. */
  prompts: string[];
  /** `completion`: raw continuation (BOS + text); `chat`: each prompt is a user turn in the chat template. */
  mode: 'completion' | 'chat';
  maxTokens: number;
  /** Absent fields take Meta's defaults; an absent seed is a fresh random one (`stats.seed`). */
  sampling: Partial<SamplingOptions>;
  /** Stop strings: the text ends before the first one produced (finish reason 'stop'). */
  stop?: string[];
}

export type { ChatMessage } from '../engine/chat';

/** One chat turn (EngineApi.chat): the whole conversation, rendered with the model's template. */
export interface ChatParams {
  /** system / user / assistant messages, oldest first; the model answers the last one. */
  messages: ChatMessage[];
  maxTokens: number;
  /** Absent fields take Meta's defaults; an absent seed is a fresh random one (`stats.seed`). */
  sampling: Partial<SamplingOptions>;
  stop?: string[];
}

export interface ChatOutcome {
  /** The assistant's answer. */
  text: string;
  tokens: number[];
  finishReason: FinishReason;
  /** Tokens of the rendered conversation fed as the prompt (reused from the cache ones included). */
  promptTokens: number;
  /**
   * Messages left out from the front (after the system prompt) because the conversation no longer
   * fit the context; a warning says so too. 0 normally.
   */
  droppedMessages: number;
  /** Context positions in use after this turn (prompt + answer), of `contextLength`: the meter. */
  contextTokens: number;
  contextLength: number;
  /** What the user should know (the model's template failed and Meta's was used; messages dropped). */
  warnings: string[];
  /** `stats.reusedTokens`: prompt tokens taken from the KV cache; `stats.seed`: the sampler's seed. */
  stats: GenerationStats;
}

/** The engine's token event, unchanged across the worker boundary (see engine/generation.ts). */
export type { FinishReason, TokenEvent } from '../engine/generation';
export type { ChatCompletion, ChatCompletionChunk, CompletionUsage, OpenAiApi } from './openai';
/** Error codes the page acts on (EngineError.code, rebuilt from "[code] message" on the page). */
export type { EngineErrorCode } from '../engine/errors';
/** The cache chunk sizes the worker accepts (the page checks a test build's `?chunkSize=` with it). */
export { checkChunkSize } from '../storage/manifest';

export interface GenerateOutcome {
  text: string[];
  tokens: number[][];
  finishReasons: FinishReason[];
  /** What the user should know about this run (e.g. the model's chat template failed and Meta's was used). */
  warnings: string[];
  stats: GenerationStats;
}

export interface CachedModelInfo {
  id: string;
  url: string;
  name: string;
  sizeBytes: number;
  storedBytes: number;
  /** False for a partial download (it resumes on the next load). */
  complete: boolean;
  updatedAt: number;
}

/** The file at a cached model's URL is not the one in the cache. */
export interface RemoteChange {
  /** What differs, for the user: "the file changed size (1.2 MiB → 1.3 MiB)". */
  reason: string;
  cachedSize: number;
  remoteSize?: number;
}

export interface StorageInfo {
  modelBytes: number;
  usage?: number;
  quota?: number;
  /** The cache lives in IndexedDB (false: memory only, gone on reload). */
  persistentStore: boolean;
  /** navigator.storage.persisted(): the browser will not evict it under pressure. */
  persisted?: boolean;
}

export interface Environment {
  webgpu: boolean;
  /** Adapter description when WebGPU works. */
  adapter?: string;
  /** Why WebGPU is unusable, for the user. */
  problem?: string;
  /** The adapter's buffer limits (WebGPU tells no memory size): one buffer, one binding. */
  limits?: BufferLimits;
}

/** What a GGUF file is and whether this version runs it (engine/inspect.ts), for the page's panel. */
export type { ModelInspection };
/** The inspection as labelled lines, the CLI's wording (a small module: no reader, no tokenizer). */
export { formatBytes } from '../engine/format-bytes';
export { inspectionFacts } from '../engine/inspect-facts';

export interface EngineApi {
  /** Whether WebGPU works here, before anything is downloaded. */
  environment(): Promise<Environment>;
  /** Size of a remote file and how much of it is cached (HEAD request; no body). */
  probe(url: string): Promise<{ size?: number; cachedBytes: number; complete: boolean }>;
  /**
   * What the GGUF at `url` is and whether it runs here, from its header alone (Range requests of a
   * few MB; nothing is downloaded or cached). `maxSeqLen` sets the context of the GPU memory
   * estimate (default: the model's own).
   */
  inspect(url: string, opts?: { maxSeqLen?: number }): Promise<ModelInspection>;
  /** Load a model, replacing the current one. Progress arrives through `onProgress`. */
  load(source: ModelSourceSpec, onProgress?: (p: LoadProgress) => void): Promise<ModelInfo>;
  /** Generate for one or more prompts; tokens stream through `onToken` as they are produced. */
  generate(params: GenerateParams, onToken?: (ev: TokenEvent) => void): Promise<GenerateOutcome>;
  /**
   * One chat turn: the answer to the last message, its tokens streaming through `onToken`. The KV
   * cache keeps the conversation, so a turn prefills only what changed since the previous one.
   * (Web apps usually call it through `chat.completions.create`, see openai.ts.)
   */
  chat(params: ChatParams, onToken?: (ev: TokenEvent) => void): Promise<ChatOutcome>;
  /** Cooperative stop of the running generation and of a load/download in progress. */
  interrupt(): Promise<void>;
  /** Free the model's GPU memory. */
  unload(): Promise<void>;
  listCached(): Promise<CachedModelInfo[]>;
  deleteCached(id: string): Promise<void>;
  /**
   * Whether the file behind cached model `id` changed at its URL (one HEAD, a few seconds at most).
   * Undefined when it did not, or when the server could not say (offline, timeout): never an error.
   */
  checkForUpdate(id: string): Promise<RemoteChange | undefined>;
  storageUse(): Promise<StorageInfo>;
}
