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
   */
  reset(batch: number, sampling: SamplingOptions, firstSequence?: number): void;
  /**
   * Append `tokens[s]` to sequence s (several tokens = prefill, one = decode, none = the sequence is
   * finished and is skipped) and return the token sampled after each sequence's last position
   * (-1 where the sequence got no tokens).
   */
  step(tokens: number[][]): Promise<number[]>;
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
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
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
 * clamp). The CPU reference computes a whole step synchronously, so without this pause a Stop
 * button, Ctrl-C or a worker message would sit unread until generation ends. This is the ONE place
 * generation yields; runners never do.
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

export async function generate(runner: ModelRunner, req: GenerateRequest): Promise<GenerateResult> {
  checkPrompts(runner, req.prompts, req.maxTokens);
  const n = req.prompts.length;
  const tokens: number[][] = req.prompts.map(() => []);
  const text = req.prompts.map(() => '');
  const finishReasons: FinishReason[] = req.prompts.map(() => 'interrupted');
  const emit = (ev: TokenEvent) => {
    try {
      req.onToken?.(ev);
    } catch {
      // A listener that went away (a closed page, a broken pipe) must not stop the engine mid-step.
    }
  };
  const totals = { prefillMs: 0, decodeMs: 0, ttft: 0, prompt: 0, decodeSteps: 0, batches: 0 };
  const start = now();

  let next = 0; // first prompt not yet run
  while (next < n && !req.signal?.aborted) {
    const idx = Array.from({ length: Math.min(runner.maxBatch, n - next) }, (_, k) => next + k);
    next += idx.length;
    const decoders = idx.map(() => req.detokenizer?.());
    const done = idx.map(() => false);
    const finish = (s: number, reason: FinishReason) => {
      done[s] = true;
      const g = idx[s];
      finishReasons[g] = reason;
      const rest = decoders[s]?.flush() ?? '';
      text[g] += rest;
      emit({ seq: g, token: -1, delta: rest, finish: reason });
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
        const delta = decoders[s]?.push(t) ?? '';
        text[g] += delta;
        emit({ seq: g, token: t, delta });
        const full = req.prompts[g].length + tokens[g].length >= runner.maxSeqLen;
        if (tokens[g].length >= req.maxTokens || full) finish(s, 'length');
      }
    };

    runner.reset(idx.length, req.sampling, idx[0]);
    await yieldToEventLoop();
    if (req.signal?.aborted) break;
    // Prefill every prompt of the batch in one step; the runner samples the first new token of each.
    const t0 = now();
    take(await runner.step(idx.map((g) => [...req.prompts[g]])));
    totals.prefillMs += now() - t0;
    totals.prompt += idx.reduce((a, g) => a + req.prompts[g].length, 0);
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
  }
  // Prompts whose batch never ran (cancelled first) still get their closing event.
  for (let g = next; g < n; g++) emit({ seq: g, token: -1, delta: '', finish: 'interrupted' });

  const promptTokens = totals.prompt;
  const generatedTokens = tokens.reduce((a, t) => a + t.length, 0);
  return {
    tokens,
    text,
    finishReasons,
    stats: {
      promptTokens,
      generatedTokens,
      timeToFirstTokenMs: totals.ttft,
      prefillMs: totals.prefillMs,
      decodeMs: totals.decodeMs,
      prefillTokensPerSecond: totals.prefillMs > 0 ? (promptTokens / totals.prefillMs) * 1000 : 0,
      // Tokens produced by decode steps (the first token of each prompt came from its prefill).
      decodeTokensPerSecond: totals.decodeMs > 0 ? (totals.decodeSteps / totals.decodeMs) * 1000 : 0,
      batches: totals.batches,
    },
  };
}
