/**
 * The OpenAI-style API over a real EngineHost and the real engine (CPU reference, the tiny fixture
 * with Llama 3's vocabulary and chat template), as an app embedding the engine would call it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadedModel } from '../engine/engine';
import { EngineError } from '../engine/errors';
import { MemoryKeyValueStore } from '../storage/kv';
import type { ChatMessage } from './api';
import { EngineHost } from './engine-host';
import { type ChatCompletionChunk, createOpenAiApi } from './openai';

const FIXTURE = 'fixtures/tiny-q4_0.gguf';

describe.skipIf(!existsSync(FIXTURE))('chat.completions / completions on EngineHost', () => {
  const host = new EngineHost({
    kv: new MemoryKeyValueStore(),
    loader: (source, opts) => LoadedModel.load(source, { device: 'cpu', maxSeqLen: 128, ...opts }),
  });
  const ai = createOpenAiApi(host, { model: 'tiny' });
  const messages: ChatMessage[] = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Hi' },
  ];

  beforeAll(async () => {
    const bytes = readFileSync(FIXTURE);
    await host.load({ kind: 'file', file: new File([bytes], 'tiny-q4_0.gguf') });
  });
  afterAll(() => host.unload());

  it('answers, then streams the same answer reusing the cached prompt; usage adds up', async () => {
    const r = await ai.chat.completions.create({ messages, temperature: 0, max_tokens: 4 });
    expect(r).toMatchObject({ object: 'chat.completion', model: 'tiny', choices: [{ index: 0 }] });
    expect(r.id).toMatch(/^chatcmpl-/);
    const answer = r.choices[0].message.content;
    expect(answer.length).toBeGreaterThan(0);
    expect(['stop', 'length']).toContain(r.choices[0].finish_reason);
    const u = r.usage;
    expect(u.total_tokens).toBe(u.prompt_tokens + u.completion_tokens);
    expect(u.completion_tokens).toBeLessThanOrEqual(4);
    expect(u.extra.context_tokens).toBe(u.total_tokens);
    expect(u.extra.context_length).toBe(128);

    const chunks: ChatCompletionChunk[] = [];
    const stream = await ai.chat.completions.create({
      messages,
      temperature: 0,
      max_tokens: 4,
      stream: true,
      seed: 5,
    });
    for await (const c of stream) chunks.push(c);
    const last = chunks.at(-1)!;
    expect(
      chunks
        .slice(0, -1)
        .map((c) => c.choices[0].delta.content)
        .join(''),
    ).toBe(answer);
    expect(chunks[0].choices[0].delta.role).toBe('assistant');
    expect(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null && !c.usage)).toBe(true);
    expect(last.choices[0]).toEqual({ index: 0, delta: {}, finish_reason: r.choices[0].finish_reason });
    // The same conversation again: all of its prompt but the last token came from the KV cache.
    expect(last.usage?.prompt_tokens).toBe(u.prompt_tokens);
    expect(last.usage?.prompt_tokens_details.cached_tokens).toBe(u.prompt_tokens - 1);
    expect(last.usage?.extra.seed).toBe(5);
  });

  it('leaving the loop early stops the generation; an abort signal ends the stream with "abort"', async () => {
    const long = { messages, temperature: 0.8, max_tokens: 120, stream: true } as const;
    let seen = 0;
    for await (const _ of await ai.chat.completions.create(long)) if (++seen === 2) break;
    const ac = new AbortController();
    const chunks: ChatCompletionChunk[] = [];
    for await (const c of await ai.chat.completions.create(long, { signal: ac.signal })) {
      chunks.push(c);
      if (chunks.length === 2) ac.abort();
    }
    expect(chunks.at(-1)?.choices[0].finish_reason).toBe('abort');
    expect(chunks.at(-1)?.usage?.completion_tokens).toBeLessThan(120);
  });

  it('completions.create continues raw text; bad requests are bad-argument', async () => {
    const r = await ai.completions.create({ prompt: 'Once upon a time', temperature: 0, max_tokens: 3 });
    expect(r).toMatchObject({ object: 'text_completion', choices: [{ index: 0 }] });
    const streamed: string[] = [];
    for await (const c of await ai.completions.create({
      prompt: 'Once upon a time',
      temperature: 0,
      max_tokens: 3,
      stream: true,
    }))
      streamed.push(c.choices[0].text);
    expect(streamed.join('')).toBe(r.choices[0].text);
    for (const bad of [
      () => ai.chat.completions.create({ messages: [] }),
      () => ai.chat.completions.create({ messages, stream: 'yes' as unknown as boolean }),
      () => ai.chat.completions.create({ messages, temperature: -1 }),
      () => ai.completions.create({ prompt: '' }),
    ]) {
      const e = await bad().catch((x) => x);
      expect(e).toBeInstanceOf(EngineError);
      expect(e.code).toBe('bad-argument');
    }
  });
});
