/**
 * generate(): the one loop every host runs. On the CPU reference with a tiny random model (full
 * 128k vocabulary, dim 32): the pipelined decode (a runner that feeds sampled ids back on the device
 * and takes the next step before this one's ids are read) must give exactly what the plain loop
 * gives, stop at the same place, and never run past a limit.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyLlama } from '../../scripts/fixtures/make-model';
import {
  FEEDBACK_TOKEN,
  type GenerateRequest,
  generate,
  type ModelRunner,
  type SamplingOptions,
  type TokenEvent,
} from './generation';
import { llamaConfigFromGguf } from './gguf/config';
import { readGguf } from './gguf/reader';
import { GgmlType } from './gguf/types';
import { ReferenceModel } from './reference/model';
import { MemorySource } from './source';

/**
 * The reference model behind a device-like queue: steps run one after another in call order (as
 * GPU submissions do) and each result arrives a little later (the readback), so `generate` can
 * have the next step queued while it waits. Counts how many steps were in flight at once.
 */
class QueuedRunner implements ModelRunner {
  readonly feedsBack = true;
  private queue: Promise<unknown> = Promise.resolve();
  inFlight = 0;
  maxInFlight = 0;
  steps = 0;
  constructor(private readonly inner: ReferenceModel) {}
  get config() {
    return this.inner.config;
  }
  get maxBatch() {
    return this.inner.maxBatch;
  }
  get maxSeqLen() {
    return this.inner.maxSeqLen;
  }
  reset(batch: number, sampling: SamplingOptions, first?: number, keep?: number) {
    expect(this.inFlight, 'reset while steps are in flight').toBe(0);
    this.inner.reset(batch, sampling, first, keep);
  }
  positions(s: number) {
    return this.inner.positions(s);
  }
  step(tokens: number[][]): Promise<number[]> {
    this.steps++;
    this.maxInFlight = Math.max(this.maxInFlight, ++this.inFlight);
    const run = this.queue.then(async () => {
      const ids = await this.inner.step(tokens);
      await new Promise((r) => setTimeout(r, 2)); // the readback
      return ids;
    });
    this.queue = run.catch(() => {});
    return run.finally(() => this.inFlight--);
  }
  dispose() {}
}

let inner: ReferenceModel;
beforeAll(async () => {
  const source = new MemorySource(
    makeTinyLlama({
      dim: 32,
      nLayers: 1,
      nHeads: 2,
      nKvHeads: 1,
      ffnDim: 64,
      bodyType: GgmlType.F32,
      headType: GgmlType.F32,
      tied: false,
      ropeFreqs: false,
      seed: 5,
    }),
  );
  const file = await readGguf(source);
  inner = await ReferenceModel.load(source, file, llamaConfigFromGguf(file), { maxBatch: 3, maxSeqLen: 24 });
});

const PROMPTS = [
  [128000, 791, 5679],
  [128000, 9906],
  [128000, 3923, 374, 264, 1296],
  [128000, 40],
];

async function both(req: Omit<GenerateRequest, 'onToken'>) {
  const plainEvents: TokenEvent[] = [];
  const plain = await generate(inner, { ...req, onToken: (e) => plainEvents.push(e) });
  const queued = new QueuedRunner(inner);
  const events: TokenEvent[] = [];
  const piped = await generate(queued, { ...req, onToken: (e) => events.push(e) });
  return { plain, plainEvents, piped, events, queued };
}

describe('generate', { timeout: 300_000 }, () => {
  it('pipelined decode gives exactly the plain loop’s tokens and events, one step ahead at most', async () => {
    for (const sampling of [
      { temperature: 0, topP: 1, topK: 0, seed: 0 },
      { temperature: 0.9, topP: 0.95, topK: 0, seed: 3 },
    ]) {
      // 4 prompts in batches of 3; prompt 2 reaches the context (24) before max tokens.
      const r = await both({ prompts: PROMPTS, maxTokens: 20, sampling, stopTokens: new Set() });
      expect(r.piped.tokens).toEqual(r.plain.tokens);
      expect(r.piped.finishReasons).toEqual(r.plain.finishReasons);
      expect(r.events).toEqual(r.plainEvents);
      expect(r.plain.tokens[2]).toHaveLength(24 - PROMPTS[2].length);
      expect(r.queued.maxInFlight).toBe(2);
      expect(r.piped.stats.generatedTokens).toBe(r.plain.stats.generatedTokens);
    }
  });

  it('a stop token ends a sequence at once: the token computed ahead is dropped, never shown', async () => {
    const greedy = { temperature: 0, topP: 1, topK: 0, seed: 0 };
    const free = await generate(inner, {
      prompts: [PROMPTS[0]],
      maxTokens: 12,
      sampling: greedy,
      stopTokens: new Set(),
    });
    // A token that first appears a few steps in (random models repeat themselves).
    const stopAt = free.tokens[0].findIndex((t, i) => i >= 2 && free.tokens[0].indexOf(t) === i);
    expect(stopAt).toBeGreaterThanOrEqual(2);
    const stop = free.tokens[0][stopAt];
    const r = await both({
      prompts: [PROMPTS[0]],
      maxTokens: 12,
      sampling: greedy,
      stopTokens: new Set([stop]),
    });
    expect(r.piped.tokens[0]).toEqual(free.tokens[0].slice(0, stopAt + 1));
    expect(r.piped.finishReasons).toEqual(['stop']);
    expect(r.events).toEqual(r.plainEvents);
    // Prefill + stopAt decode steps were needed; one more was already queued when the stop came back.
    expect(r.queued.steps).toBe(1 + stopAt + 1);
  });

  it('stops between steps when aborted, and lets queued steps finish before returning', async () => {
    const ctl = new AbortController();
    const queued = new QueuedRunner(inner);
    let n = 0;
    const r = await generate(queued, {
      prompts: [PROMPTS[1]],
      maxTokens: 20,
      sampling: { temperature: 0, topP: 1, topK: 0, seed: 0 },
      stopTokens: new Set(),
      signal: ctl.signal,
      onToken: (e) => {
        if (e.token >= 0 && ++n === 3) ctl.abort();
      },
    });
    expect(r.finishReasons).toEqual(['interrupted']);
    expect(r.tokens[0].length).toBeLessThanOrEqual(4); // the token in flight may still arrive
    expect(queued.inFlight).toBe(0);
  });

  it('the CPU reference reads FEEDBACK_TOKEN as the id it sampled last', async () => {
    inner.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 0 });
    const [a] = await inner.step([PROMPTS[0]]);
    const [b] = await inner.step([[FEEDBACK_TOKEN]]);
    inner.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 0 });
    await inner.step([PROMPTS[0]]);
    const [c] = await inner.step([[a]]);
    expect(b).toBe(c);
    inner.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 0 });
    await expect(inner.step([[FEEDBACK_TOKEN]])).rejects.toThrow(/no sampled token/);
  });
});
