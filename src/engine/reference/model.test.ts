import { beforeAll, describe, expect, it } from 'vitest';
import { makeTinyLlama, type TinyLlamaOptions } from '../../../scripts/fixtures/make-model';
import { EngineError } from '../errors';
import { generate } from '../generation';
import { llamaConfigFromGguf } from '../gguf/config';
import { readGguf, readTensorBytes } from '../gguf/reader';
import { GgmlType, type GgufFile } from '../gguf/types';
import { MemorySource } from '../source';
import { stopDuringFirstChunk } from '../testing/stop';
import { ReferenceModel } from './model';
import { addInPlace, argmax, dequantize, matVec, rmsNorm, roundToF16InPlace, swiglu } from './ops';

const BASE: TinyLlamaOptions = {
  dim: 64,
  nLayers: 1,
  nHeads: 4,
  nKvHeads: 2,
  ffnDim: 96,
  bodyType: GgmlType.F32,
  headType: GgmlType.F32,
  tied: false,
  ropeFreqs: true,
  seed: 9,
};
const GREEDY = { temperature: 0, topP: 1, topK: 0, seed: 0 };

async function open(opts: TinyLlamaOptions) {
  const source = new MemorySource(makeTinyLlama(opts));
  const file = await readGguf(source);
  return { source, file, config: llamaConfigFromGguf(file) };
}

let f32: Awaited<ReturnType<typeof open>>;
let model: ReferenceModel;

beforeAll(async () => {
  f32 = await open(BASE);
  model = await ReferenceModel.load(f32.source, f32.file, f32.config, { maxBatch: 2, maxSeqLen: 16 });
});

async function tensor(source: MemorySource, file: GgufFile, name: string): Promise<Float32Array> {
  const t = file.tensors.find((x) => x.name === name)!;
  return dequantize(t.type, await readTensorBytes(source, t), t.elements);
}

// Each model here has the full 128k vocabulary; on a loaded 2-core machine a test can take minutes.
describe('ReferenceModel', { timeout: 300_000 }, () => {
  /** Logits of `tok` at position 0, composed by hand from the file's tensors and the ops. */
  async function handFirstToken(o: Awaited<ReturnType<typeof open>>, tok: number): Promise<Float32Array> {
    const { source, file, config } = o;
    const { dim, nHeads, nKvHeads, headDim, ffnDim, vocabSize, normEps } = config;
    const w = (n: string) => tensor(source, file, n);
    const embd = await w('token_embd.weight');
    const x = embd.slice(tok * dim, (tok + 1) * dim);
    const xn = rmsNorm(x, await w('blk.0.attn_norm.weight'), normEps);
    // The KV cache holds v in f16 (as the GPU's and llama.cpp's do).
    const v = roundToF16InPlace(matVec(await w('blk.0.attn_v.weight'), xn, nKvHeads * headDim, dim));
    // At position 0 softmax over one score is 1: head h outputs v of KV head h / (H / Hkv).
    const att = new Float32Array(nHeads * headDim);
    for (let h = 0; h < nHeads; h++) {
      const kv = Math.floor(h / (nHeads / nKvHeads));
      att.set(v.subarray(kv * headDim, (kv + 1) * headDim), h * headDim);
    }
    addInPlace(x, matVec(await w('blk.0.attn_output.weight'), att, dim, dim));
    const xn2 = rmsNorm(x, await w('blk.0.ffn_norm.weight'), normEps);
    const hdn = swiglu(
      matVec(await w('blk.0.ffn_gate.weight'), xn2, ffnDim, dim),
      matVec(await w('blk.0.ffn_up.weight'), xn2, ffnDim, dim),
    );
    addInPlace(x, matVec(await w('blk.0.ffn_down.weight'), hdn, dim, ffnDim));
    const tied = !file.tensors.some((t) => t.name === 'output.weight');
    const head = tied ? embd : await w('output.weight');
    return matVec(head, rmsNorm(x, await w('output_norm.weight'), normEps), vocabSize, dim);
  }

  function maxAbsDiff(a: Float32Array, b: Float32Array): number {
    let m = 0;
    for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
    return m;
  }

  it('first-token logits equal a hand composition (attention over one position returns v)', async () => {
    const expected = await handFirstToken(f32, 791);
    model.reset(1, GREEDY);
    await model.step([[791]]);
    expect(maxAbsDiff(await model.lastLogits(0), expected)).toBeLessThan(1e-4);
  });

  it('prefill in one step equals token-by-token, and sequences of a batch are independent', async () => {
    const prompt = [128000, 791, 6864, 315];
    model.reset(1, GREEDY);
    await model.step([prompt]);
    const once = (await model.lastLogits(0)).slice();
    model.reset(2, GREEDY);
    for (const t of prompt) await model.step([[t], t === 791 ? [5] : []]);
    expect(await model.lastLogits(0)).toEqual(once);
    // Sequence 1 got a single other token: its logits are those of that token alone.
    model.reset(1, GREEDY);
    await model.step([[5]]);
    const alone = (await model.lastLogits(0)).slice();
    model.reset(2, GREEDY);
    await model.step([prompt, [5]]);
    expect(await model.lastLogits(1)).toEqual(alone);
    expect(await model.lastLogits(0)).toEqual(once);
  });

  it('sampling: sequence s draws from Rng(seed + s); equal seeds give equal tokens', async () => {
    const prompt = [128000, 40, 4510];
    // The random head's logits span tens of units: a high temperature makes the draws matter.
    const s = (seed: number) => ({ temperature: 30, topP: 0.95, topK: 0, seed });
    const req = (prompts: number[][], seed: number) =>
      generate(model, { prompts, maxTokens: 8, sampling: s(seed), stopTokens: new Set() });
    const pair = await req([prompt, prompt], 5);
    expect((await req([prompt], 5)).tokens[0]).toEqual(pair.tokens[0]);
    expect((await req([prompt], 6)).tokens[0]).toEqual(pair.tokens[1]);
    expect(pair.tokens[0]).not.toEqual(pair.tokens[1]);
  });

  it("quantizationEncoding 'q4_0' sees exactly the weights of the same model stored as q4_0", async () => {
    const q = await open({
      ...BASE,
      bodyType: GgmlType.Q4_0,
      headType: GgmlType.Q4_0,
      embedType: GgmlType.Q4_0,
    });
    const fromQ4 = await ReferenceModel.load(q.source, q.file, q.config, { maxBatch: 1, maxSeqLen: 8 });
    const encoded = await ReferenceModel.load(f32.source, f32.file, f32.config, {
      maxBatch: 1,
      maxSeqLen: 8,
      quantizationEncoding: 'q4_0',
    });
    const logits = async (m: ReferenceModel) => {
      m.reset(1, GREEDY);
      await m.step([[128000, 1000, 2000]]);
      return (await m.lastLogits(0)).slice();
    };
    const a = await logits(fromQ4);
    expect(await logits(encoded)).toEqual(a);
    model.reset(1, GREEDY);
    await model.step([[128000, 1000, 2000]]);
    expect(await model.lastLogits(0)).not.toEqual(a); // float32 encoding keeps the file's values
  });

  it('tied embeddings: the head is token_embd', async () => {
    const t = await open({
      ...BASE,
      tied: true,
      headType: GgmlType.F16,
      bodyType: GgmlType.F16,
      ropeFreqs: false,
    });
    expect(t.file.tensors.some((x) => x.name === 'output.weight')).toBe(false);
    const m = await ReferenceModel.load(t.source, t.file, t.config, { maxBatch: 1, maxSeqLen: 4 });
    m.reset(1, GREEDY);
    const [next] = await m.step([[77]]);
    const logits = await m.lastLogits(0);
    expect(maxAbsDiff(logits, await handFirstToken(t, 77))).toBeLessThan(1e-4);
    expect(next).toBe(argmax(logits));
  });

  it('chunked prefill: the event loop runs between chunks, Stop ends the step at a chunk boundary, the next turn reuses what was written', async () => {
    // 3 tokens per chunk: an 11-token prompt is 4 chunks, with 3 yields between them.
    const chunked = await ReferenceModel.load(f32.source, f32.file, f32.config, {
      maxBatch: 1,
      maxSeqLen: 16,
      prefillChunk: 3,
    });
    const prompt = [128000, 791, 6864, 315, 9822, 374, 12366, 13, 578, 6864, 315];
    // Chunked and unchunked prefill give the same logits (the reference runs token by token).
    model.reset(1, GREEDY);
    chunked.reset(1, GREEDY);
    const [whole] = await model.step([prompt]);
    const [inChunks] = await chunked.step([prompt]);
    expect(inChunks).toBe(whole);
    expect(await chunked.lastLogits(0)).toEqual(await model.lastLogits(0));

    // A message sent before the step (a worker's Stop arrives this way) and a due timer both run
    // while the step is still going: between chunks, never after the whole prompt.
    chunked.reset(1, GREEDY);
    const stop = new AbortController();
    let messageAt = -1;
    let timerAt = -1;
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      messageAt = chunked.positions(0);
      stop.abort();
    };
    const busyUntil = performance.now() + 3;
    setTimeout(() => {
      timerAt = chunked.positions(0);
    }, 1);
    while (performance.now() < busyUntil) {} // the timer is due before the step starts
    channel.port2.postMessage(null);
    const [id] = await chunked.step([prompt], stop.signal);
    channel.port1.close();
    expect(id).toBe(-1); // stopped before its last token: nothing sampled
    expect(messageAt % 3).toBe(0);
    expect(messageAt).toBeGreaterThanOrEqual(3);
    expect(messageAt).toBeLessThan(prompt.length);
    // Stop acted at the next chunk boundary: exactly the positions computed when it was pressed.
    expect(chunked.positions(0)).toBe(messageAt);
    await expect(chunked.lastLogits(0)).rejects.toThrow(/no logits yet/);
    await new Promise((r) => setTimeout(r, 5));
    expect(timerAt).toBeGreaterThanOrEqual(3);
    expect(timerAt).toBeLessThan(prompt.length);

    // Through generate: Stop pressed during chunk 1; the KV-cache record then holds 3 tokens, and
    // the next request reuses exactly those and gives a fresh run's tokens.
    const req = { prompts: [prompt], maxTokens: 4, sampling: GREEDY, stopTokens: new Set<number>() };
    const cache = { tokens: [] as number[] };
    const pressed = new AbortController();
    const stopped = await generate(stopDuringFirstChunk(chunked, pressed), {
      ...req,
      signal: pressed.signal,
      cache,
    });
    expect(stopped.finishReasons).toEqual(['interrupted']);
    expect(stopped.tokens).toEqual([[]]);
    expect(cache.tokens).toEqual(prompt.slice(0, 3));
    const resumed = await generate(chunked, { ...req, cache });
    expect(resumed.stats.reusedTokens).toBe(3);
    const fresh = await generate(model, req);
    expect(resumed.tokens).toEqual(fresh.tokens);
    expect(fresh.tokens[0]).toHaveLength(4);
  });

  it('errors say what went wrong', async () => {
    model.reset(1, GREEDY);
    await expect(model.lastLogits(0)).rejects.toThrow(/no logits yet/);
    await expect(model.step([[1], [2]])).rejects.toThrow(/2 token lists for 1 sequences/);
    await expect(model.step([[128256]])).rejects.toThrow(/outside the vocabulary/);
    await expect(model.step([new Array(17).fill(1)])).rejects.toMatchObject({ code: 'context-overflow' });
    expect(() => model.reset(3, GREEDY)).toThrow(EngineError);
    await expect(
      ReferenceModel.load(f32.source, f32.file, f32.config, { maxSeqLen: 1 << 20 }),
    ).rejects.toThrow(/max sequence length must be an integer in 2\.\./);
    expect((await model.step([[]]))[0]).toBe(-1);
  });
});
