/**
 * The facade in-process on the CPU reference, over the tiny fixtures (`npm run fixtures`). The
 * llama.cpp parity of the same path is checked through the real CLI in src/cli/generate.test.ts
 * and src/cli/generate-gpu.test.ts.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeChat } from './chat';
import { type ChatMessage, LoadedModel, type LoadProgress, type TokenEvent } from './engine';
import { EngineError } from './errors';
import { commonPrefixLength, sequenceSeed } from './generation';
import { readGguf } from './gguf';
import { MemorySource } from './source';
import { Llama3Tokenizer } from './tokenizer';

const FIXTURE = join(__dirname, '../../fixtures/tiny-q4_0.gguf');
const hasFixture = existsSync(FIXTURE);

let bytes: Uint8Array;
let model: LoadedModel;
const progress: LoadProgress[] = [];

beforeAll(async () => {
  if (!hasFixture) return;
  bytes = new Uint8Array(readFileSync(FIXTURE));
  model = await LoadedModel.load(new MemorySource(bytes, 'tiny-q4_0.gguf'), {
    device: 'cpu',
    maxBatch: 3,
    maxSeqLen: 64,
    onProgress: (p) => progress.push(p),
  });
});

async function errorOf(p: Promise<unknown>): Promise<EngineError> {
  const e = await p.then(
    () => undefined,
    (err) => err,
  );
  expect(e).toBeInstanceOf(EngineError);
  return e as EngineError;
}

describe.skipIf(!hasFixture)('LoadedModel on the CPU reference', () => {
  it('loads config, tokenizer and runner, reporting header then weight progress up to the total', () => {
    expect(model.device).toBe('cpu');
    expect(model.config.dim).toBe(256);
    expect(model.tokenizer.bosId).toBe(128000);
    expect(model.runner.maxBatch).toBe(3);
    expect(model.runner.maxSeqLen).toBe(64);
    expect(progress[0].phase).toBe('header');
    const weights = progress.filter((p) => p.phase === 'weights');
    const total = model.file.tensors.reduce((a, t) => a + t.byteLength, 0);
    expect(weights.length).toBeGreaterThan(10);
    expect(weights.at(-1)).toEqual({ phase: 'weights', loadedBytes: total, totalBytes: total });
    for (let i = 1; i < weights.length; i++)
      expect(weights[i].loadedBytes).toBeGreaterThanOrEqual(weights[i - 1].loadedBytes);
    expect(model.loadMs).toBeGreaterThan(0);
  });

  it('completes greedily: BOS + prompt, streamed deltas equal the decoded text, stats add up', async () => {
    const deltas: string[] = [];
    const finished: [number, string][] = [];
    const r = await model.complete({
      prompts: ['Once upon a time'],
      maxTokens: 12,
      sampling: { temperature: 0 },
      onToken: ({ seq, delta, finish }) => {
        expect(seq).toBe(0);
        deltas.push(delta);
        if (finish) finished.push([seq, finish]);
      },
    });
    expect(r.promptTokens[0]).toEqual([128000, ...model.tokenizer.encode('Once upon a time')]);
    expect(r.tokens[0].length).toBeGreaterThan(0);
    expect(r.tokens[0].length).toBeLessThanOrEqual(12);
    const body = r.tokens[0].filter((t) => !model.tokenizer.stopIds.has(t));
    expect(r.text[0]).toBe(model.tokenizer.decode(body));
    expect(deltas.join('')).toBe(r.text[0]);
    expect(finished).toEqual([[0, r.finishReasons[0]]]);
    expect(r.stats.promptTokens).toBe(r.promptTokens[0].length);
    expect(r.stats.generatedTokens).toBe(r.tokens[0].length);
    expect(r.stats.batches).toBe(1);
    expect(r.stats.device).toBe('cpu');
    expect(r.stats.timeToFirstTokenMs).toBeGreaterThan(0);
  });

  it('runs prompts beyond the batch size in successive batches, identical to one at a time', async () => {
    const prompts = ['The cat', 'A long time ago, in a galaxy', 'Hello'];
    // Sampled (not greedy): sequence g draws from stream seed + g whatever its batch.
    const sampling = { temperature: 0.9, topP: 0.95, seed: 7 };
    const together = await model.complete({ prompts, maxTokens: 6, sampling });
    expect(together.stats.batches).toBe(1);
    const order: number[] = [];
    const single = await LoadedModel.load(new MemorySource(bytes), {
      device: 'cpu',
      maxBatch: 1,
      maxSeqLen: 64,
    });
    try {
      const apart = await single.complete({
        prompts,
        maxTokens: 6,
        sampling,
        onToken: ({ seq, finish }) => {
          if (finish) order.push(seq);
        },
      });
      expect(apart.stats.batches).toBe(3);
      expect(apart.tokens).toEqual(together.tokens);
      expect(apart.text).toEqual(together.text);
      expect(order).toEqual([0, 1, 2]);
      expect(apart.stats.promptTokens).toBe(together.stats.promptTokens);
    } finally {
      single.dispose();
    }
  });

  it('token-id prompts are fed exactly as given', async () => {
    const text = await model.complete({ prompts: ['Once upon'], maxTokens: 3, sampling: { temperature: 0 } });
    const ids = await model.complete({
      prompts: [text.promptTokens[0]],
      maxTokens: 3,
      sampling: { temperature: 0 },
    });
    expect(ids.promptTokens).toEqual(text.promptTokens);
    expect(ids.tokens).toEqual(text.tokens);
  });

  it('chat mode renders the template once, with exactly one BOS', async () => {
    const ids = model.encodePrompt('Hi <|eot_id|>', 'chat');
    expect(ids[0]).toBe(128000);
    expect(ids.filter((t) => t === 128000).length).toBe(1);
    expect(ids.filter((t) => t === 128009).length).toBe(1); // the template's, not the user's
    const r = await model.complete({
      prompts: ['Hi'],
      mode: 'chat',
      maxTokens: 2,
      sampling: { temperature: 0 },
    });
    expect(r.promptTokens[0]).toEqual(model.encodePrompt('Hi', 'chat'));
  });

  it("a runaway chat template falls back to Meta's, and the result says so", async () => {
    const { metadata } = await readGguf(new MemorySource(bytes));
    const hostile = new Map(metadata);
    hostile.set('tokenizer.chat_template', '{% for i in range(1000000000) %}x{% endfor %}');
    const m = await LoadedModel.load(new MemorySource(bytes), {
      device: 'cpu',
      maxSeqLen: 64,
      tokenizer: Llama3Tokenizer.fromGguf(hostile),
    });
    try {
      const r = await m.complete({
        prompts: ['Hi'],
        mode: 'chat',
        maxTokens: 1,
        sampling: { temperature: 0 },
      });
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toMatch(
        /tokenizer\.chat_template.*range\(\).*Meta's Llama 3 chat template instead/s,
      );
      // Meta's template is what the fixture carries: the same prompt ids as the good model's.
      expect(r.promptTokens[0]).toEqual(model.encodePrompt('Hi', 'chat'));
      const plain = await model.complete({
        prompts: ['Hi'],
        mode: 'chat',
        maxTokens: 1,
        sampling: { temperature: 0 },
      });
      expect(plain.warnings).toEqual([]);
    } finally {
      m.dispose();
    }
  });

  it("refuses a tokenizer whose vocabulary is not the model's, so no sampled id can lack text", async () => {
    const { metadata } = await readGguf(new MemorySource(bytes));
    const short = new Map(metadata);
    // Without the last 10 reserved special tokens: 128,246 tokens for 128,256 embedding rows.
    short.set('tokenizer.ggml.tokens', (metadata.get('tokenizer.ggml.tokens') as string[]).slice(0, -10));
    short.set(
      'tokenizer.ggml.token_type',
      (metadata.get('tokenizer.ggml.token_type') as number[]).slice(0, -10),
    );
    const e = await errorOf(
      LoadedModel.load(new MemorySource(bytes), {
        device: 'cpu',
        tokenizer: Llama3Tokenizer.fromGguf(short),
      }),
    );
    expect(e.code).toBe('bad-tokenizer');
    expect(e.message).toMatch(/128246 tokens but the model 128256/);
  });

  it('stops at the length limit of the context', async () => {
    const r = await model.complete({
      prompts: ['x '.repeat(25)],
      maxTokens: 1000,
      sampling: { temperature: 0 },
    });
    const total = r.promptTokens[0].length + r.tokens[0].length;
    // Either the context filled up exactly, or the model chose to stop.
    if (r.finishReasons[0] === 'length') expect(total).toBe(64);
    else expect(model.tokenizer.stopIds.has(r.tokens[0].at(-1)!)).toBe(true);
    expect(total).toBeLessThanOrEqual(64);
  });

  it('says context-overflow for a prompt longer than the context', async () => {
    const e = await errorOf(model.complete({ prompts: ['ok', 'word '.repeat(100)] }));
    expect(e.code).toBe('context-overflow');
    expect(e.message).toMatch(/prompt 2 is \d+ tokens but the context holds 64/);
  });

  it('rejects bad arguments with bad-argument', async () => {
    for (const req of [
      { prompts: [] },
      { prompts: ['a'], maxTokens: 0 },
      { prompts: ['a'], sampling: { temperature: -1 } },
      { prompts: ['a'], sampling: { topP: 0 } },
      { prompts: ['a'], sampling: { topK: 1.5 } },
      { prompts: ['a'], mode: 'poem' as never },
      { prompts: [[128000, 128256]] },
      { prompts: [[]] },
    ]) {
      expect((await errorOf(model.complete(req))).code).toBe('bad-argument');
    }
    const src = new MemorySource(bytes);
    expect((await errorOf(LoadedModel.load(src, { device: 'tpu' as never }))).code).toBe('bad-argument');
    expect((await errorOf(LoadedModel.load(src, { device: 'gpu' }))).message).toMatch(/needs a GPU object/);
    expect(
      (await errorOf(LoadedModel.load(src, { device: 'cpu', quantizationEncoding: 'q2' as never }))).code,
    ).toBe('bad-argument');
    expect((await errorOf(LoadedModel.load(src, { device: 'cpu', maxBatch: 0 }))).code).toBe('bad-argument');
    expect(
      (await errorOf(LoadedModel.load(src, { device: 'cpu', customKernels: new Map([['rmsnorm', '']]) })))
        .message,
    ).toMatch(/need device "gpu"/);
    expect((await errorOf(LoadedModel.load(src, { device: 'cpu', f16: true }))).message).toMatch(
      /f16 selects GPU kernels; it needs device "gpu"/,
    );
  });

  it('cancels: an aborted load stops at the next read; an aborted completion reports interrupted', async () => {
    const ctl = new AbortController();
    let reads = 0;
    const e = await errorOf(
      LoadedModel.load(new MemorySource(bytes), {
        device: 'cpu',
        signal: ctl.signal,
        onProgress: (p) => {
          if (p.phase === 'weights' && ++reads === 3) ctl.abort();
        },
      }),
    );
    expect(e.code).toBe('interrupted');
    expect(reads).toBe(3);

    const ctl2 = new AbortController();
    const seen: number[] = [];
    const r = await model.complete({
      prompts: ['a', 'b', 'c', 'd'],
      maxTokens: 20,
      sampling: { temperature: 0 },
      signal: ctl2.signal,
      onToken: ({ seq, token }) => {
        if (token < 0) return;
        seen.push(seq);
        if (seen.length === 6) ctl2.abort();
      },
    });
    // The first batch (3 prompts) stopped early; the fourth prompt never ran.
    expect(r.finishReasons).toEqual(['interrupted', 'interrupted', 'interrupted', 'interrupted']);
    expect(r.tokens[3]).toEqual([]);
    expect(r.tokens[0].length).toBeLessThan(20);
  });

  it('every prompt ends with exactly one closing event, after its tokens', async () => {
    const events: TokenEvent[] = [];
    const r = await model.complete({
      prompts: ['The dog', 'Once'],
      maxTokens: 5,
      sampling: { temperature: 0 },
      onToken: (ev) => events.push(ev),
    });
    for (const g of [0, 1]) {
      const mine = events.filter((e) => e.seq === g);
      expect(mine.filter((e) => e.finish)).toHaveLength(1);
      expect(mine.at(-1)).toMatchObject({ token: -1, finish: r.finishReasons[g] });
      expect(mine.slice(0, -1).map((e) => e.token)).toEqual(r.tokens[g]);
      expect(mine.map((e) => e.delta).join('')).toBe(r.text[g]);
    }
  });

  it('seeds wrap mod 2^64: prompt g draws from seed + g, even at the ends of the safe range', async () => {
    const sampling = { temperature: 1, topP: 1 };
    const p = 'Once upon a time';
    // (−1 + 1) mod 2^64 = 0: the second prompt of seed −1 is the first prompt of seed 0.
    const wrapped = await model.complete({
      prompts: [p, p],
      maxTokens: 6,
      sampling: { ...sampling, seed: -1 },
    });
    const zero = await model.complete({ prompts: [p], maxTokens: 6, sampling: { ...sampling, seed: 0 } });
    expect(wrapped.tokens[1]).toEqual(zero.tokens[0]);
    // MAX_SAFE_INTEGER + 1 is not a safe integer: it must wrap, not throw.
    const top = await model.complete({
      prompts: [p, p],
      maxTokens: 2,
      sampling: { ...sampling, seed: Number.MAX_SAFE_INTEGER },
    });
    expect(top.tokens.every((t) => t.length === 2)).toBe(true);
    expect(sequenceSeed(Number.MAX_SAFE_INTEGER, 1)).toBe(2n ** 53n);
    expect(sequenceSeed(Number.MIN_SAFE_INTEGER, 0)).toBe(2n ** 64n - (2n ** 53n - 1n));
  });

  it('dispose during a completion ends it as interrupted with its partial text, then frees the runner', async () => {
    const m = await LoadedModel.load(new MemorySource(bytes), { device: 'cpu', maxSeqLen: 64 });
    let disposedRunner = false;
    const inner = m.runner.dispose.bind(m.runner);
    m.runner.dispose = () => {
      disposedRunner = true;
      inner();
    };
    let n = 0;
    const r = await m.complete({
      prompts: ['Once upon a time'],
      maxTokens: 40,
      sampling: { temperature: 0 },
      onToken: ({ token }) => {
        if (token >= 0 && ++n === 3) {
          m.dispose();
          // Not freed under the running step: only once the completion has returned.
          expect(disposedRunner).toBe(false);
        }
      },
    });
    expect(r.finishReasons).toEqual(['interrupted']);
    expect(r.tokens[0]).toHaveLength(3);
    expect(r.text[0]).toBe(m.tokenizer.decode(r.tokens[0]));
    expect(disposedRunner).toBe(true);
    expect((await errorOf(m.complete({ prompts: ['b'] }))).message).toMatch(/disposed/);
  });

  it('a chat turn prefills only what follows the cached conversation: same tokens and logits as from scratch', async () => {
    const greedy = { temperature: 0 };
    const ask: ChatMessage[] = [{ role: 'user', content: 'Hi' }];
    const turn1 = await model.chat({ messages: ask, maxTokens: 6, sampling: greedy });
    expect(turn1.promptTokens).toEqual(
      model.tokenizer.encode(
        '<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n',
        { bos: false, allowSpecial: true },
      ),
    );
    expect(turn1.contextTokens).toBe(turn1.promptTokens.length + turn1.tokens.length);
    expect(turn1.contextLength).toBe(64);
    const conversation: ChatMessage[] = [
      ...ask,
      { role: 'assistant', content: turn1.text },
      { role: 'user', content: 'More' },
    ];
    const reused = await model.chat({ messages: conversation, maxTokens: 5, sampling: greedy });
    const reusedLogits = await model.runner.lastLogits!(0);
    // The cache held turn 1's prompt and every answer token but the last; the answer re-rendered
    // by the template may tokenize differently, so the reuse ends where the ids first differ.
    const cached = [...turn1.promptTokens, ...turn1.tokens.slice(0, -1)];
    expect(reused.stats.reusedTokens).toBe(commonPrefixLength(cached, reused.promptTokens));
    expect(reused.stats.reusedTokens).toBeGreaterThanOrEqual(turn1.promptTokens.length);
    const fresh = await model.chat({
      messages: conversation,
      maxTokens: 5,
      sampling: greedy,
      reuseCache: false,
    });
    expect(fresh.stats.reusedTokens).toBe(0);
    expect(fresh.promptTokens).toEqual(reused.promptTokens);
    expect(reused.tokens).toEqual(fresh.tokens);
    expect(reusedLogits).toEqual(await model.runner.lastLogits!(0));
  });

  it('drops the oldest turns (never the system prompt) when the conversation outgrows the context', async () => {
    const long = 'word '.repeat(12);
    const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }];
    for (let i = 0; i < 3; i++)
      messages.push({ role: 'user', content: long }, { role: 'assistant', content: long });
    messages.push({ role: 'user', content: 'Last' });
    const r = await model.chat({ messages, maxTokens: 4, sampling: { temperature: 0 } });
    expect(r.droppedMessages).toBeGreaterThan(0);
    expect(r.droppedMessages % 2).toBe(0); // whole question/answer pairs
    const kept = [messages[0], ...messages.slice(1 + r.droppedMessages)];
    expect(r.promptTokens).toEqual(encodeChat(model.tokenizer, kept));
    expect(r.promptTokens.length).toBeLessThanOrEqual(64 - 4);
    expect(r.warnings.join('\n')).toMatch(/oldest messages were left out.*system prompt was kept/);
    expect(r.contextTokens).toBeLessThanOrEqual(64);
  });

  it('samples with a fresh random seed unless one is given, and reports it', async () => {
    const req = { prompts: ['Once'], maxTokens: 2, sampling: { temperature: 0.9 } };
    const a = await model.complete(req);
    const b = await model.complete(req);
    expect(a.stats.seed).not.toBe(b.stats.seed);
    expect(Number.isSafeInteger(a.stats.seed)).toBe(true);
    const again = await model.complete({ ...req, sampling: { ...req.sampling, seed: a.stats.seed } });
    expect(again.stats.seed).toBe(a.stats.seed);
    expect(again.tokens).toEqual(a.tokens);
  });

  it('stop strings end the text before them, and the stream never shows a part of one', async () => {
    const greedy = { temperature: 0, seed: 1 };
    const full = await model.complete({ prompts: ['Once upon a time'], maxTokens: 10, sampling: greedy });
    const text = full.text[0];
    // A stop string across the boundary of two tokens in the middle: its first character arrives
    // one token before the stop is known, and must be held back from the stream.
    const body = full.tokens[0].filter((t) => !model.tokenizer.stopIds.has(t));
    const head = model.tokenizer.decode(body.slice(0, Math.floor(body.length / 2)));
    expect(text.startsWith(head) && head.length > 0 && text.length > head.length).toBe(true);
    const stop = text.slice(head.length - 1, head.length + 1);
    const deltas: string[] = [];
    const r = await model.complete({
      prompts: ['Once upon a time'],
      maxTokens: 10,
      sampling: greedy,
      stop: [stop, 'never produced'],
      onToken: (ev) => deltas.push(ev.delta),
    });
    expect(r.text[0]).toBe(text.slice(0, text.indexOf(stop)));
    expect(r.finishReasons[0]).toBe('stop');
    expect(deltas.join('')).toBe(r.text[0]);
    expect((await errorOf(model.complete({ prompts: ['a'], stop: [''] }))).code).toBe('bad-argument');
  });

  it('refuses a second completion while one runs, and any after dispose', async () => {
    const first = model.complete({ prompts: ['a'], maxTokens: 3, sampling: { temperature: 0 } });
    expect((await errorOf(model.complete({ prompts: ['b'] }))).message).toMatch(/already running/);
    await first;
    const m2 = await LoadedModel.load(new MemorySource(bytes), { device: 'cpu', maxSeqLen: 16 });
    m2.dispose();
    expect((await errorOf(m2.complete({ prompts: ['b'] }))).message).toMatch(/disposed/);
  });
});
