/**
 * The OpenAI-style surface web developers already call in-browser engines with (WebLLM, the
 * OpenAI SDK): `chat.completions.create` and `completions.create`, with or without streaming.
 *
 * It is a thin layer over EngineApi's `chat` / `generate` and works on both kinds of engine: an
 * in-process EngineHost (tests, other hosts) and the worker's comlink proxy, for which the token
 * callback must cross as `Comlink.proxy(fn)` (client.ts's `openAiClient` passes that in).
 *
 *   const ai = openAiClient(engine);
 *   const r = await ai.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }] });
 *   r.choices[0].message.content;
 *   for await (const chunk of await ai.chat.completions.create({ messages, stream: true })) {
 *     out += chunk.choices[0]?.delta.content ?? '';
 *   }
 *
 * Differences from OpenAI's API, all deliberate: one choice (no `n`); sampling defaults are Meta's
 * (temperature 0.6, top-p 0.9) and an absent seed is a fresh random one, reported in
 * `usage.extra.seed`; `finish_reason` 'abort' for a cancelled run (as WebLLM); the streamed
 * answer's last chunk always carries `usage`; `usage.prompt_tokens_details.cached_tokens` is the
 * number of prompt tokens reused from the KV cache.
 */
import { EngineError } from '../engine/errors';
import {
  type FinishReason,
  type GenerationStats,
  META_DEFAULTS,
  type TokenEvent,
} from '../engine/generation';
import type { ChatMessage, ChatOutcome, ChatParams, GenerateOutcome, GenerateParams } from './api';

/** What the layer needs from an engine: EngineHost, or the worker's comlink proxy. */
export interface OpenAiEngine {
  chat(params: ChatParams, onToken?: (ev: TokenEvent) => void): Promise<ChatOutcome>;
  generate(params: GenerateParams, onToken?: (ev: TokenEvent) => void): Promise<GenerateOutcome>;
  interrupt(): Promise<void>;
}

export interface OpenAiOptions {
  /** Wraps the token callback for the engine's side (Comlink.proxy for a worker; identity in-process). */
  proxy?: <F extends (ev: TokenEvent) => void>(fn: F) => F;
  /** The `model` field of responses (default "llama"). */
  model?: string | (() => string);
}

/** Sampling and limits common to both endpoints (OpenAI's names). */
export interface SamplingParams {
  /** 0 = greedy; default 0.6. */
  temperature?: number;
  /** Nucleus mass in (0, 1]; default 0.9. */
  top_p?: number;
  /** Keep the k most likely tokens; 0 = off (default). Not in OpenAI's API. */
  top_k?: number;
  /** New tokens at most; default 64. */
  max_tokens?: number;
  /** Fixes the sampler's seed (reproducible); default a fresh random one, see usage.extra.seed. */
  seed?: number;
  /** Up to 16 strings; the answer ends before the first one it produces. */
  stop?: string | string[] | null;
}

export interface ChatCompletionCreateParams extends SamplingParams {
  /** system / user / assistant messages, oldest first. */
  messages: ChatMessage[];
  stream?: boolean;
}

export interface CompletionCreateParams extends SamplingParams {
  /** Raw text continued after BOS (no chat template). */
  prompt: string;
  stream?: boolean;
}

export interface RequestOptions {
  /** Aborting stops the generation; a pending create() then resolves with finish_reason 'abort'. */
  signal?: AbortSignal;
}

export type OpenAiFinishReason = 'stop' | 'length' | 'abort';

export interface CompletionUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Prompt tokens whose K/V came from the cache (the conversation so far), not prefilled again. */
  prompt_tokens_details: { cached_tokens: number };
  /** Not in OpenAI's API (WebLLM has a `usage.extra` too). */
  extra: {
    /** The sampler's seed: pass it as `seed` to reproduce this answer. */
    seed: number;
    /** Context positions in use after this turn, of `context_length` (chat only; the meter). */
    context_tokens?: number;
    context_length?: number;
    /** Oldest messages left out so the conversation fits the context (chat only). */
    dropped_messages?: number;
    /** What the user should see (a template fallback, dropped messages). */
    warnings: string[];
    time_to_first_token_ms: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
  };
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  /** Unix seconds. */
  created: number;
  model: string;
  choices: [
    {
      index: 0;
      message: { role: 'assistant'; content: string };
      finish_reason: OpenAiFinishReason;
    },
  ];
  usage: CompletionUsage;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  /** One choice; the last chunk has `finish_reason` and `usage`. */
  choices: [
    {
      index: 0;
      delta: { role?: 'assistant'; content?: string };
      finish_reason: OpenAiFinishReason | null;
    },
  ];
  usage?: CompletionUsage;
}

export interface Completion {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: [{ index: 0; text: string; finish_reason: OpenAiFinishReason }];
  usage: CompletionUsage;
}

export interface CompletionChunk {
  id: string;
  object: 'text_completion';
  created: number;
  model: string;
  choices: [{ index: 0; text: string; finish_reason: OpenAiFinishReason | null }];
  usage?: CompletionUsage;
}

/**
 * A running streamed generation: `for await` its chunks. Leaving the loop early (break, return,
 * throw) stops the generation.
 */
export interface ChunkStream<C> extends AsyncIterableIterator<C> {
  /** Stops the generation; the stream then ends with a chunk whose finish_reason is 'abort'. */
  abort(): void;
}

export interface OpenAiApi {
  chat: {
    completions: {
      create(
        body: ChatCompletionCreateParams & { stream: true },
        opts?: RequestOptions,
      ): Promise<ChunkStream<ChatCompletionChunk>>;
      create(
        body: ChatCompletionCreateParams & { stream?: false },
        opts?: RequestOptions,
      ): Promise<ChatCompletion>;
      create(
        body: ChatCompletionCreateParams,
        opts?: RequestOptions,
      ): Promise<ChatCompletion | ChunkStream<ChatCompletionChunk>>;
    };
  };
  completions: {
    create(
      body: CompletionCreateParams & { stream: true },
      opts?: RequestOptions,
    ): Promise<ChunkStream<CompletionChunk>>;
    create(body: CompletionCreateParams & { stream?: false }, opts?: RequestOptions): Promise<Completion>;
    create(
      body: CompletionCreateParams,
      opts?: RequestOptions,
    ): Promise<Completion | ChunkStream<CompletionChunk>>;
  };
}

function toFinishReason(f: FinishReason): OpenAiFinishReason {
  return f === 'interrupted' ? 'abort' : f;
}

function checkBody(body: { stream?: unknown }, what: string): void {
  if (!body || typeof body !== 'object')
    throw new EngineError('bad-argument', `${what} needs a request object`);
  if (body.stream !== undefined && typeof body.stream !== 'boolean') {
    throw new EngineError('bad-argument', `stream must be true or false, got ${JSON.stringify(body.stream)}`);
  }
}

/** OpenAI's sampling fields in the engine's names (absent stays absent: the engine's defaults apply). */
function engineParams(b: SamplingParams): Pick<ChatParams, 'maxTokens' | 'sampling' | 'stop'> {
  const sampling: ChatParams['sampling'] = {};
  if (b.temperature !== undefined) sampling.temperature = b.temperature;
  if (b.top_p !== undefined) sampling.topP = b.top_p;
  if (b.top_k !== undefined) sampling.topK = b.top_k;
  if (b.seed !== undefined) sampling.seed = b.seed;
  const stop =
    b.stop === null || b.stop === undefined ? undefined : typeof b.stop === 'string' ? [b.stop] : b.stop;
  return { maxTokens: b.max_tokens ?? META_DEFAULTS.maxTokens, sampling, ...(stop ? { stop } : {}) };
}

function usageOf(
  stats: GenerationStats,
  warnings: string[],
  chat?: Pick<ChatOutcome, 'contextTokens' | 'contextLength' | 'droppedMessages'>,
): CompletionUsage {
  return {
    prompt_tokens: stats.promptTokens,
    completion_tokens: stats.generatedTokens,
    total_tokens: stats.promptTokens + stats.generatedTokens,
    prompt_tokens_details: { cached_tokens: stats.reusedTokens },
    extra: {
      seed: stats.seed,
      ...(chat
        ? {
            context_tokens: chat.contextTokens,
            context_length: chat.contextLength,
            dropped_messages: chat.droppedMessages,
          }
        : {}),
      warnings,
      time_to_first_token_ms: stats.timeToFirstTokenMs,
      prefill_tokens_per_s: stats.prefillTokensPerSecond,
      decode_tokens_per_s: stats.decodeTokensPerSecond,
    },
  };
}

/**
 * Starts one generation and turns its token events into chunks. The stream ends after the run's
 * closing event AND its result have both arrived: through a worker they come on different ports,
 * in either order, and the last chunk (finish reason, usage) needs the result.
 */
function chunkStream<R, C>(
  engine: OpenAiEngine,
  signal: AbortSignal | undefined,
  start: (onToken: (ev: TokenEvent) => void) => Promise<R>,
  chunkOf: (delta: string, first: boolean) => C,
  lastChunk: (r: R) => C,
): ChunkStream<C> {
  const queue: C[] = [];
  let first = true;
  let closed = false;
  let outcome: { ok: true; value: R } | { ok: false; error: unknown } | undefined;
  let finished = false; // the consumer got the last chunk or the error
  let wake: (() => void) | undefined;
  const notify = () => {
    wake?.();
    wake = undefined;
  };
  const run = start((ev) => {
    if (ev.seq !== 0) return;
    if (ev.delta) {
      queue.push(chunkOf(ev.delta, first));
      first = false;
    }
    if (ev.finish) closed = true;
    notify();
  });
  const settled = run.then(
    (value) => {
      outcome = { ok: true, value };
      notify();
    },
    (error) => {
      outcome = { ok: false, error };
      notify();
    },
  );
  const abort = () => {
    if (!outcome) void engine.interrupt();
  };
  signal?.addEventListener('abort', abort, { once: true });
  const stream: ChunkStream<C> = {
    async next(): Promise<IteratorResult<C>> {
      for (;;) {
        const chunk = queue.shift();
        if (chunk !== undefined) return { value: chunk, done: false };
        if (finished) return { value: undefined, done: true };
        if (outcome && !outcome.ok) {
          finished = true;
          signal?.removeEventListener('abort', abort);
          throw outcome.error;
        }
        if (outcome?.ok && closed) {
          finished = true;
          signal?.removeEventListener('abort', abort);
          return { value: lastChunk(outcome.value), done: false };
        }
        await new Promise<void>((r) => {
          wake = r;
        });
      }
    },
    async return(): Promise<IteratorResult<C>> {
      // Leaving the loop early stops the generation; wait for it so the engine is free again.
      finished = true;
      queue.length = 0;
      abort();
      await settled;
      signal?.removeEventListener('abort', abort);
      return { value: undefined, done: true };
    },
    abort,
    [Symbol.asyncIterator]() {
      return stream;
    },
  };
  return stream;
}

/** Runs `start` without streaming; an abort signal stops it (it then resolves, finish reason 'abort'). */
async function once<R>(
  engine: OpenAiEngine,
  signal: AbortSignal | undefined,
  start: () => Promise<R>,
): Promise<R> {
  const run = start();
  const abort = () => void engine.interrupt();
  signal?.addEventListener('abort', abort, { once: true });
  try {
    return await run;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** The OpenAI-style API on an engine (see the top of this file). */
export function createOpenAiApi(engine: OpenAiEngine, opts: OpenAiOptions = {}): OpenAiApi {
  const proxy = opts.proxy ?? (<F>(fn: F) => fn);
  const model = () => (typeof opts.model === 'function' ? opts.model() : (opts.model ?? 'llama'));
  const header = (prefix: string) => ({
    id: `${prefix}-${crypto.randomUUID()}`,
    created: Math.floor(Date.now() / 1000),
    model: model(),
  });
  const notAborted = (signal?: AbortSignal) => {
    if (signal?.aborted) throw new EngineError('interrupted', 'The request was aborted before it started.');
  };

  async function createChat(
    body: ChatCompletionCreateParams,
    o: RequestOptions = {},
  ): Promise<ChatCompletion | ChunkStream<ChatCompletionChunk>> {
    checkBody(body, 'chat.completions.create');
    notAborted(o.signal);
    const params: ChatParams = { messages: body.messages, ...engineParams(body) };
    const head = header('chatcmpl');
    if (!body.stream) {
      const r = await once(engine, o.signal, () => engine.chat(params));
      return {
        ...head,
        object: 'chat.completion',
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: r.text },
            finish_reason: toFinishReason(r.finishReason),
          },
        ],
        usage: usageOf(r.stats, r.warnings, r),
      };
    }
    return chunkStream(
      engine,
      o.signal,
      (onToken) => engine.chat(params, proxy(onToken)),
      (content, first): ChatCompletionChunk => ({
        ...head,
        object: 'chat.completion.chunk',
        choices: [
          { index: 0, delta: first ? { role: 'assistant', content } : { content }, finish_reason: null },
        ],
      }),
      (r): ChatCompletionChunk => ({
        ...head,
        object: 'chat.completion.chunk',
        choices: [{ index: 0, delta: {}, finish_reason: toFinishReason(r.finishReason) }],
        usage: usageOf(r.stats, r.warnings, r),
      }),
    );
  }

  async function createCompletion(
    body: CompletionCreateParams,
    o: RequestOptions = {},
  ): Promise<Completion | ChunkStream<CompletionChunk>> {
    checkBody(body, 'completions.create');
    if (typeof body.prompt !== 'string' || body.prompt.length === 0) {
      throw new EngineError('bad-argument', 'completions.create needs a non-empty prompt string');
    }
    notAborted(o.signal);
    const params: GenerateParams = { prompts: [body.prompt], mode: 'completion', ...engineParams(body) };
    const head = header('cmpl');
    if (!body.stream) {
      const r = await once(engine, o.signal, () => engine.generate(params));
      return {
        ...head,
        object: 'text_completion',
        choices: [{ index: 0, text: r.text[0], finish_reason: toFinishReason(r.finishReasons[0]) }],
        usage: usageOf(r.stats, r.warnings),
      };
    }
    return chunkStream(
      engine,
      o.signal,
      (onToken) => engine.generate(params, proxy(onToken)),
      (text): CompletionChunk => ({
        ...head,
        object: 'text_completion',
        choices: [{ index: 0, text, finish_reason: null }],
      }),
      (r): CompletionChunk => ({
        ...head,
        object: 'text_completion',
        choices: [{ index: 0, text: '', finish_reason: toFinishReason(r.finishReasons[0]) }],
        usage: usageOf(r.stats, r.warnings),
      }),
    );
  }

  return {
    chat: { completions: { create: createChat as OpenAiApi['chat']['completions']['create'] } },
    completions: { create: createCompletion as OpenAiApi['completions']['create'] },
  };
}
