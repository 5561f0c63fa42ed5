/**
 * The generation loop shared by every host (worker, CLI, tests) and every backend (CPU reference,
 * WebGPU). A backend implements `ModelRunner`: it keeps one KV cache per sequence and, given the next
 * tokens of each sequence, returns one sampled token per sequence. `generate` does the rest:
 * prefill, decode, stop tokens, limits, streaming, cancellation and stats.
 */
import { EngineError } from './errors';
import type { LlamaConfig } from './gguf/types';

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 = off. */
  topP: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK: number;
  /** Seed of the sampler's RNG (each sequence draws from its own stream). */
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

export interface ModelRunner {
  readonly config: LlamaConfig;
  /** Largest number of sequences one `step` accepts. */
  readonly maxBatch: number;
  /** Largest total positions a sequence may reach (KV cache length). */
  readonly maxSeqLen: number;
  /** Forget all sequences and start `batch` empty ones at position 0. */
  reset(batch: number, sampling: SamplingOptions): void;
  /**
   * Append `tokens[s]` to sequence s (several tokens = prefill, one = decode, none = the sequence is
   * finished and is skipped) and return the token sampled after each sequence's last position
   * (-1 where the sequence got no tokens).
   */
  step(tokens: number[][]): Promise<number[]>;
  /** Full logits of the last step for sequence s (tests and --device cpu; may read back from the GPU). */
  lastLogits?(s: number): Promise<Float32Array>;
  dispose(): void;
}

export interface GenerateRequest {
  /** Prompt token ids per sequence, BOS included. */
  prompts: number[][];
  maxTokens: number;
  sampling: SamplingOptions;
  /** Generation of a sequence stops after it emits one of these (the stop token is included). */
  stopTokens: ReadonlySet<number>;
  signal?: AbortSignal;
  /** Called for every generated token as soon as it is known. */
  onToken?: (seq: number, token: number) => void;
}

export interface GenerationStats {
  promptTokens: number;
  generatedTokens: number;
  /** Wall time from the call to the first generated token (prefill included). */
  timeToFirstTokenMs: number;
  prefillMs: number;
  decodeMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface GenerateResult {
  /** Generated ids per sequence (a stop token, when hit, is the last element). */
  tokens: number[][];
  /** Why each sequence ended. */
  finishReasons: ('stop' | 'length' | 'interrupted')[];
  stats: GenerationStats;
}

const now = () => performance.now();

export async function generate(runner: ModelRunner, req: GenerateRequest): Promise<GenerateResult> {
  const n = req.prompts.length;
  if (n === 0) throw new EngineError('bad-argument', 'no prompts given');
  if (n > runner.maxBatch) {
    throw new EngineError(
      'bad-argument',
      `${n} prompts exceed the batch size ${runner.maxBatch}; raise --batch-size`,
    );
  }
  for (const [i, p] of req.prompts.entries()) {
    if (p.length === 0) throw new EngineError('bad-argument', `prompt ${i + 1} is empty`);
    if (p.length >= runner.maxSeqLen) {
      throw new EngineError(
        'context-overflow',
        `prompt ${i + 1} has ${p.length} tokens but the context holds ${runner.maxSeqLen}; shorten the prompt`,
      );
    }
  }
  const out: number[][] = req.prompts.map(() => []);
  const finish: GenerateResult['finishReasons'] = req.prompts.map(() => 'length');
  const done = req.prompts.map(() => false);
  const start = now();
  runner.reset(n, req.sampling);

  // Prefill every prompt in one step; the runner samples the first new token of each.
  let next = await runner.step(req.prompts);
  const prefillEnd = now();
  let decodeMs = 0;
  for (;;) {
    for (let s = 0; s < n; s++) {
      if (done[s]) continue;
      const t = next[s];
      out[s].push(t);
      req.onToken?.(s, t);
      if (req.stopTokens.has(t)) {
        done[s] = true;
        finish[s] = 'stop';
      } else if (
        out[s].length >= req.maxTokens ||
        req.prompts[s].length + out[s].length >= runner.maxSeqLen
      ) {
        done[s] = true;
        finish[s] = 'length';
      }
    }
    if (done.every(Boolean)) break;
    if (req.signal?.aborted) {
      for (let s = 0; s < n; s++) if (!done[s]) finish[s] = 'interrupted';
      break;
    }
    const t0 = now();
    next = await runner.step(out.map((toks, s) => (done[s] ? [] : [toks[toks.length - 1]])));
    decodeMs += now() - t0;
  }
  const promptTokens = req.prompts.reduce((a, p) => a + p.length, 0);
  const generatedTokens = out.reduce((a, t) => a + t.length, 0);
  const prefillMs = prefillEnd - start;
  return {
    tokens: out,
    finishReasons: finish,
    stats: {
      promptTokens,
      generatedTokens,
      timeToFirstTokenMs: prefillMs,
      prefillMs,
      decodeMs,
      prefillTokensPerSecond: prefillMs > 0 ? (promptTokens / prefillMs) * 1000 : 0,
      // Tokens produced by decode steps (the first token of each sequence came from prefill).
      decodeTokensPerSecond: decodeMs > 0 ? ((generatedTokens - n) / decodeMs) * 1000 : 0,
    },
  };
}
