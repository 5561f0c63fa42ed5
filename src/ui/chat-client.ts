/**
 * One chat turn through the engine's OpenAI-style API (`chat.completions.create` with
 * `stream: true`, src/worker/openai.ts): the page embeds the engine the way another web app
 * would. The whole conversation goes in; the worker reuses the KV cache for the part it has seen.
 */
import type { Role } from '../storage/conversations';
import { openAiClient, type RemoteEngine } from '../worker/client';
import type { CompletionUsage, FinishReason } from '../worker/api';

/** What the stats line shows about a run. */
export interface RunStats {
  promptTokens: number;
  generatedTokens: number;
  /** Prompt tokens taken from the KV cache instead of a prefill. */
  reusedTokens?: number;
  /** The sampler's seed (a fresh one unless fixed): pass it as a fixed seed to repeat the run. */
  seed?: number;
  timeToFirstTokenMs: number;
  prefillTokensPerSecond: number;
  decodeTokensPerSecond: number;
}

export interface ChatReply {
  text: string;
  finish: FinishReason;
  stats: RunStats;
  /** Context positions in use after this turn, of `contextLength` (the meter). */
  contextTokens?: number;
  contextLength?: number;
  warnings: string[];
}

export function statsOfUsage(u: CompletionUsage): RunStats {
  return {
    promptTokens: u.prompt_tokens,
    generatedTokens: u.completion_tokens,
    reusedTokens: u.prompt_tokens_details.cached_tokens,
    seed: u.extra.seed,
    timeToFirstTokenMs: u.extra.time_to_first_token_ms,
    prefillTokensPerSecond: u.extra.prefill_tokens_per_s,
    decodeTokensPerSecond: u.extra.decode_tokens_per_s,
  };
}

export async function sendChat(
  engine: RemoteEngine,
  messages: { role: Role; content: string }[],
  opts: { maxTokens: number; temperature: number; topP: number; topK: number; seed?: number },
  onDelta: (delta: string) => void,
): Promise<ChatReply> {
  const stream = await openAiClient(engine).chat.completions.create({
    messages,
    stream: true,
    max_tokens: opts.maxTokens,
    temperature: opts.temperature,
    top_p: opts.topP,
    top_k: opts.topK,
    seed: opts.seed,
  });
  let text = '';
  let finish: FinishReason = 'stop';
  let usage: CompletionUsage | undefined;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta.content;
    if (delta) {
      text += delta;
      onDelta(delta);
    }
    const f = chunk.choices[0]?.finish_reason;
    if (f) finish = f === 'abort' ? 'interrupted' : f;
    if (chunk.usage) usage = chunk.usage;
  }
  if (!usage) throw new Error('the engine ended the answer without its usage');
  return {
    text,
    finish,
    stats: statsOfUsage(usage),
    contextTokens: usage.extra.context_tokens,
    contextLength: usage.extra.context_length,
    warnings: usage.extra.warnings,
  };
}
