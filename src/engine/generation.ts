/**
 * The generation loop shared by every host (worker, CLI, tests) and every backend (CPU reference,
 * WebGPU). A backend implements `ModelRunner`: it keeps one KV cache per sequence and, given the next
 * tokens of each sequence, returns one sampled token per sequence. `generate` owns everything else,
 * once: batching, prefill, decode, stop tokens, the length limits, finish reasons, streaming
 * (`TokenEvent`), yielding to the host's event loop, cancellation and stats.
 */
import { checkIntegerInRange, EngineError } from './errors';
import type { LlamaConfig } from './gguf/types';

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /**
   * Seed of the sampler's RNG: any safe integer. Prompt g of a request draws from its own PCG32
   * stream seeded with (seed + g) mod 2^64 (`sequenceSeed`), so its tokens do not depend on the
   * batch it ran in, and seeds near 2^53 wrap instead of overflowing.
   */
  seed: number;
}

/** Meta's example_text_completion.py defaults (llama3 commit 14aab04). */
export const META_DEFAULTS = {
  temperature: 0.6,
  topP: 0.9,
  topK: 0,
  seed: 1,
  maxTokens: 64,
  maxBatchSize: 4,
} as const;

/** The seed of prompt g's sampler stream: (seed + g) mod 2^64, exact for every safe integer. */
export function sequenceSeed(seed: number, g: number): bigint {
  return BigInt.asUintN(64, BigInt(seed) + BigInt(g));
}

export interface ModelRunner {
  readonly config: LlamaConfig;
  /** Largest number of sequences one `step` accepts. */
  readonly maxBatch: number;
  /** Largest total positions a sequence may reach (KV cache length). */
  readonly maxSeqLen: number;
  /**
   * Forget all sequences and start `batch` empty ones at position 0. Sequence s samples from the
   * stream `sequenceSeed(sampling.seed, firstSequence + s)`.
   *
   * `keepPositions` > 0: sequence 0 instead starts at that position and keeps the KV cache rows
   * 0..keepPositions−1 its previous life left (positions beyond are overwritten as it goes). The
   * caller vouches that those rows hold the tokens it means (see `KvCacheRecord`); at most the
   * positions sequence 0 had filled. K/V rows depend only on the tokens before them, never on the
   * sampler, so the new sampling options do not spoil them.
   */
  reset(batch: number, sampling: SamplingOptions, firstSequence?: number, keepPositions?: number): void;
  /**
   * Append `tokens[s]` to sequence s (several tokens = prefill, one = decode, none = the sequence is
   * finished and is skipped) and return the token sampled after each sequence's last position
   * (-1 where the sequence got no tokens).
   *
   * A long step runs in chunks (GPU: one command buffer of `prefillChunkTokens` rows each; CPU
   * reference: `cpuPrefillChunkTokens` tokens, then a yield to the event loop). When `signal` is
   * aborted between two chunks the step ends there: every sequence holds exactly the positions
   * the chunks that ran wrote (`positions`), a sequence whose last token was not reached returns
   * -1 and has no logits, and its sampler draw for this step is spent. (The GPU runner ignores the
   * signal once a later step was queued behind this one: that step's rows follow these.)
   */
  step(tokens: number[][], signal?: AbortSignal): Promise<number[]>;
  /** Positions sequence s holds in its KV cache (written, or queued on the device): where its next token goes. */
  positions(s: number): number;
  /**
   * The runner keeps each sequence's last sampled id on the device: `step` then accepts
   * `FEEDBACK_TOKEN` as a sequence's one token (meaning that id), and may be called again before the
   * previous step has resolved (steps run in call order). `generate` then submits step k+1 while
   * step k's ids are still being read back, so the CPU is off the GPU's critical path.
   */
  readonly feedsBack?: boolean;
  /** Full logits of the last step for sequence s (tests and --device cpu; may read back from the GPU). */
  lastLogits?(s: number): Promise<Float32Array>;
  dispose(): void;
}

/** Checks a `reset`'s keepPositions against the positions sequence 0 had filled (bad-argument). */
export function checkKeepPositions(keepPositions: number, filled: number): void {
  if (!Number.isInteger(keepPositions) || keepPositions < 0 || keepPositions > filled) {
    throw new EngineError(
      'bad-argument',
      `cannot keep ${keepPositions} cached positions: sequence 0 holds ${filled}`,
    );
  }
}

/** A decode input meaning "the id this sequence's previous step sampled" (see `feedsBack`). */
export const FEEDBACK_TOKEN = -2;

export type FinishReason = 'stop' | 'length' | 'interrupted';

/**
 * One event of the token stream, the same type from the engine to the CLI and across the worker to
 * the page. Each generated token is one event (a stop token too, with no text); after a prompt's
 * last token comes exactly one closing event with `token` −1, the text the decoder still held back
 * (a split UTF-8 character), and the `finish` reason.
 */
export interface TokenEvent {
  /** Index of the prompt in the request. */
  seq: number;
  /** The generated id, or −1 on the closing event. */
  token: number;
  /** Text this event adds ('' for stop tokens, for a character still incomplete, and without a decoder). */
  delta: string;
  /** Set on the closing event only. */
  finish?: FinishReason;
}

/** Turns a prompt's generated ids into text as they come (the tokenizer's `streamDecoder`). */
export interface StreamingDetokenizer {
  push(token: number): string;
  flush(): string;
}

export interface GenerateRequest {
  /** Prompt token ids per sequence, BOS included; more than the runner's batch run in batches. */
  prompts: readonly (readonly number[])[];
  maxTokens: number;
  sampling: SamplingOptions;
  /** Generation of a sequence stops after it emits one of these (the stop token is included). */
  stopTokens: ReadonlySet<number>;
  signal?: AbortSignal;
  /** One decoder per prompt; without it events carry no text and `text` is all ''. */
  detokenizer?: () => StreamingDetokenizer;
  /** Called for every event as soon as it is known; a throwing listener never stops generation. */
  onToken?: (ev: TokenEvent) => void;
  /**
   * Stop strings (OpenAI's `stop`): a sequence ends ('stop') as soon as its text contains one; the
   * text ends before it. Text that could be the start of a stop string is held back from the
   * stream until it is known not to be. Needs `detokenizer`.
   */
  stop?: readonly string[];
  /**
   * What the runner's sequence 0 holds in its KV cache, kept by the caller across requests (one per
   * runner). A one-prompt request prefills only the prompt's tokens after the longest common
   * prefix with it (`stats.reusedTokens`) and leaves it describing the cache afterwards; a request
   * of several prompts empties it.
   */
  cache?: KvCacheRecord;
}

/** The token ids whose K/V rows sequence 0 of a runner holds, from position 0 on. */
export interface KvCacheRecord {
  tokens: number[];
}

/** Length of the longest common prefix of two id lists. */
export function commonPrefixLength(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export interface GenerationStats {
  promptTokens: number;
  /** Prompt tokens whose K/V came from the cache instead of a prefill (see `GenerateRequest.cache`). */
  reusedTokens: number;
  generatedTokens: number;
  /** The sampler's seed (a fresh random one unless the caller fixed it), to reproduce this run. */
  seed: number;
  /** Wall time from the call to the first generated token (the first batch's prefill). */
  timeToFirstTokenMs: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
  /** Number of runner batches the prompts were split into. */
  batches: number;
}

export interface GenerateResult {
  /** Generated ids per prompt (a stop token, when hit, is the last element). */
  tokens: number[][];
  /** Generated text per prompt (stop tokens not included); '' without a detokenizer. */
  text: string[];
  /** Why each prompt ended. */
  finishReasons: FinishReason[];
  stats: GenerationStats;
}

const now = () => performance.now();

/**
 * Resolves after the host's event loop has run once (a MessageChannel round trip: no 4 ms timer
 * clamp). The CPU reference computes in JavaScript, so without these pauses a Stop button, Ctrl-C
 * or a worker message would sit unread until generation ends: generation yields after every step,
 * and the CPU reference between the chunks of a long prefill (the only place a runner yields).
 */
export function yieldToEventLoop(): Promise<void> {
  if (typeof MessageChannel === 'undefined') return new Promise((r) => setTimeout(r, 0));
  return new Promise((resolve) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      ch.port1.close();
      resolve();
    };
    ch.port2.postMessage(null);
  });
}

/** Throws bad-argument / context-overflow for prompts this runner cannot take. */
function checkPrompts(runner: ModelRunner, prompts: GenerateRequest['prompts'], maxTokens: number): void {
  if (prompts.length === 0) throw new EngineError('bad-argument', 'no prompts given');
  checkIntegerInRange('max tokens', maxTokens, 1, Number.MAX_SAFE_INTEGER);
  for (const [i, p] of prompts.entries()) {
    if (p.length === 0) throw new EngineError('bad-argument', `prompt ${i + 1} is empty`);
    // Room for at least one new token.
    if (p.length >= runner.maxSeqLen) {
      throw new EngineError(
        'context-overflow',
        `prompt ${i + 1} is ${p.length} tokens but the context holds ${runner.maxSeqLen} positions (prompt + new tokens); shorten the prompt or raise the context length`,
      );
    }
  }
}

/** Length of the longest end of `text` that is the start of a stop string (text to hold back). */
function stopPrefixAtEnd(text: string, stops: readonly string[]): number {
  let best = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > best; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        best = k;
        break;
      }
    }
  }
  return best;
}

export async function generate(runner: ModelRunner, req: GenerateRequest): Promise<GenerateResult> {
  checkPrompts(runner, req.prompts, req.maxTokens);
  const stops = (req.stop ?? []).filter((st) => st.length > 0);
  if (stops.length > 0 && !req.detokenizer) {
    throw new EngineError('bad-argument', 'stop strings need a detokenizer (they match text, not ids)');
  }
  const n = req.prompts.length;
  const tokens: number[][] = req.prompts.map(() => []);
  const text = req.prompts.map(() => '');
  /** Characters of text[g] already streamed (the rest may be the start of a stop string). */
  const shown = req.prompts.map(() => 0);
  const finishReasons: FinishReason[] = req.prompts.map(() => 'interrupted');
  /**
   * Adds decoded text to prompt g and returns what may be streamed now, and whether a stop string
   * ended the text (it is cut before the stop string). `closing`: nothing more comes, hold nothing back.
   */
  const reveal = (g: number, added: string, closing: boolean): { delta: string; hit: boolean } => {
    text[g] += added;
    if (stops.length === 0) {
      shown[g] = text[g].length;
      return { delta: added, hit: false };
    }
    // A stop string cannot start inside streamed text (its start would have been held back).
    let cut = -1;
    for (const st of stops) {
      const i = text[g].indexOf(st, shown[g]);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) text[g] = text[g].slice(0, cut);
    const visible = cut >= 0 || closing ? text[g].length : text[g].length - stopPrefixAtEnd(text[g], stops);
    const delta = text[g].slice(shown[g], visible);
    shown[g] = visible;
    return { delta, hit: cut >= 0 };
  };
  const emit = (ev: TokenEvent) => {
    try {
      req.onToken?.(ev);
    } catch {
      // A listener that went away (a closed page, a broken pipe) must not stop the engine mid-step.
    }
  };
  const totals = { prefillMs: 0, decodeMs: 0, ttft: 0, prompt: 0, reused: 0, decodeSteps: 0, batches: 0 };
  const start = now();
  // KV reuse: one prompt keeps the cached rows of its longest common prefix with what sequence 0
  // holds, but always prefills at least its last token (the step that samples needs its logits).
  const cache = req.cache;
  const keep =
    cache && n === 1
      ? Math.min(commonPrefixLength(cache.tokens, req.prompts[0]), req.prompts[0].length - 1)
      : 0;

  let next = 0; // first prompt not yet run
  while (next < n && !req.signal?.aborted) {
    const idx = Array.from({ length: Math.min(runner.maxBatch, n - next) }, (_, k) => next + k);
    next += idx.length;
    const decoders = idx.map(() => req.detokenizer?.());
    const done = idx.map(() => false);
    /** Ends sequence s; `flush`: release the text the decoder and the stop strings still held. */
    const finish = (s: number, reason: FinishReason, flush = true) => {
      done[s] = true;
      const g = idx[s];
      const closing = flush ? reveal(g, decoders[s]?.flush() ?? '', true) : { delta: '', hit: false };
      finishReasons[g] = closing.hit ? 'stop' : reason;
      emit({ seq: g, token: -1, delta: closing.delta, finish: finishReasons[g] });
    };
    /** Records sampled ids; ends the sequences that hit a stop token or a limit. */
    const take = (sampled: number[]) => {
      for (const [s, g] of idx.entries()) {
        const t = sampled[s];
        if (done[s] || t < 0) continue; // ended already (a token computed ahead), or not fed
        tokens[g].push(t);
        if (req.stopTokens.has(t)) {
          emit({ seq: g, token: t, delta: '' });
          finish(s, 'stop');
          continue;
        }
        const { delta, hit } = reveal(g, decoders[s]?.push(t) ?? '', false);
        emit({ seq: g, token: t, delta });
        if (hit) {
          finish(s, 'stop', false);
          continue;
        }
        const full = req.prompts[g].length + tokens[g].length >= runner.maxSeqLen;
        if (tokens[g].length >= req.maxTokens || full) finish(s, 'length');
      }
    };

    if (cache) cache.tokens = []; // until the reset has kept what it keeps (it may throw)
    runner.reset(idx.length, req.sampling, idx[0], keep);
    if (cache && n === 1) cache.tokens = req.prompts[0].slice(0, keep);
    await yieldToEventLoop();
    if (req.signal?.aborted) break;
    // Prefill every prompt of the batch in one step; the runner samples the first new token of each.
    const t0 = now();
    // Stop is honoured between the prefill's chunks too; a stopped prefill keeps what it wrote.
    const prefill = idx.map((g) => req.prompts[g].slice(keep));
    take(await runner.step(prefill, req.signal));
    if (cache && n === 1) cache.tokens = req.prompts[0].slice(0, runner.positions(0));
    totals.prefillMs += now() - t0;
    totals.prompt += idx.reduce((a, g) => a + req.prompts[g].length, 0);
    totals.reused += keep;
    if (totals.batches++ === 0) totals.ttft = now() - start;
    // Decode. Each step feeds every live sequence its newest token. With a runner that keeps the
    // sampled ids on the device, the next step is already submitted (fed those ids) while this
    // one's are read back: one step ahead at most. A sequence that ended meanwhile had one token
    // computed ahead for nothing; it is dropped, never shown, and never past a limit.
    const depth = runner.feedsBack ? 2 : 1;
    const inFlight: { fed: boolean[]; ids: Promise<number[]> }[] = [];
    const issue = () => {
      const prev = inFlight.at(-1);
      const fed = idx.map((g, s) => {
        if (done[s]) return false;
        const ahead = prev?.fed[s] ? 1 : 0; // a token already being computed for s
        const m = tokens[g].length + ahead;
        return m < req.maxTokens && req.prompts[g].length + m < runner.maxSeqLen;
      });
      if (!fed.some(Boolean)) return false;
      const input = idx.map((g, s) => {
        if (!fed[s]) return [];
        return [prev?.fed[s] ? FEEDBACK_TOKEN : tokens[g][tokens[g].length - 1]];
      });
      const ids = runner.step(input);
      ids.catch(() => {}); // awaited below; never an unhandled rejection if an earlier step fails
      inFlight.push({ fed, ids });
      return true;
    };
    const t1 = now();
    try {
      for (;;) {
        while (!req.signal?.aborted && inFlight.length < depth && issue()) {}
        const step = inFlight.shift();
        if (!step) break;
        const sampled = await step.ids;
        totals.decodeSteps += step.fed.filter((f, s) => f && !done[s]).length;
        take(step.fed.map((f, s) => (f ? sampled[s] : -1)));
        await yieldToEventLoop();
      }
    } finally {
      // Stopped early or failed: let the steps still queued on the device finish before the runner
      // is reset or freed.
      await Promise.allSettled(inFlight.map((st) => st.ids));
      totals.decodeMs += now() - t1;
    }
    for (let s = 0; s < idx.length; s++) if (!done[s]) finish(s, 'interrupted');
    // Every generated token but the last was fed back (rows computed ahead beyond it are overwritten);
    // a prefill stopped between chunks wrote only part of the prompt.
    if (cache && n === 1) {
      cache.tokens = [...req.prompts[0], ...tokens[0].slice(0, -1)].slice(0, runner.positions(0));
    }
  }
  // Prompts whose batch never ran (cancelled first) still get their closing event.
  for (let g = next; g < n; g++) emit({ seq: g, token: -1, delta: '', finish: 'interrupted' });

  const promptTokens = totals.prompt;
  const prefilled = promptTokens - totals.reused;
  const generatedTokens = tokens.reduce((a, t) => a + t.length, 0);
  return {
    tokens,
    text,
    finishReasons,
    stats: {
      promptTokens,
      reusedTokens: totals.reused,
      generatedTokens,
      seed: req.sampling.seed,
      timeToFirstTokenMs: totals.ttft,
      prefillMs: totals.prefillMs,
      decodeMs: totals.decodeMs,
      // Tokens actually prefilled (reused ones cost nothing).
      prefillTokensPerSecond: totals.prefillMs > 0 ? (prefilled / totals.prefillMs) * 1000 : 0,
      // Tokens produced by decode steps (the first token of each prompt came from its prefill).
      decodeTokensPerSecond: totals.decodeMs > 0 ? (totals.decodeSteps / totals.decodeMs) * 1000 : 0,
      batches: totals.batches,
    },
  };
}
