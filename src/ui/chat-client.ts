/**
 * One chat turn through the engine: the conversation's messages in, the assistant's reply streamed
 * out. The only place the page knows how the worker takes a conversation.
 */
import type { FinishReason, GenerationStats, SamplingOptions } from '../engine/generation';
import type { Role } from '../storage/conversations';
import { Comlink, type RemoteEngine } from '../worker/client';

export interface ChatReply {
  text: string;
  finish: FinishReason;
  stats: GenerationStats & { reusedTokens?: number; contextTokens?: number };
  warnings: string[];
}

export async function sendChat(
  engine: RemoteEngine,
  messages: { role: Role; content: string }[],
  opts: { maxTokens: number; sampling: SamplingOptions },
  onDelta: (delta: string) => void,
): Promise<ChatReply> {
  // The worker API takes one user turn per prompt; the whole conversation goes through
  // the engine's multi-turn chat API once it is on the facade.
  const last = messages.filter((m) => m.role === 'user').pop();
  const r = await engine.generate(
    { prompts: [last?.content ?? ''], mode: 'chat', maxTokens: opts.maxTokens, sampling: opts.sampling },
    Comlink.proxy(({ delta }: { seq: number; delta: string }) => {
      if (delta) onDelta(delta);
    }),
  );
  const earlier = messages.length > 1;
  return {
    text: r.text[0] ?? '',
    finish: r.finishReasons[0],
    stats: r.stats,
    warnings: earlier
      ? [...r.warnings, 'This engine build answers the last message only: earlier turns were not sent.']
      : r.warnings,
  };
}
