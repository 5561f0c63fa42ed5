/**
 * The whole Llama 3 forward pass on the CPU, one token at a time, in the plain style of llama2.c's
 * forward(): f32 weights (dequantized at load), f64 accumulation inside the ops. It is the oracle
 * for the GPU model and the `--device cpu` backend. Clarity over speed.
 *
 * Axis legend: D = model dim, H = query heads, Hkv = KV heads, Dh = head dim, F = FFN dim,
 * V = vocabulary, S = maxSeqLen. A weight "[R, C]" is row-major with R rows of C values (ggml
 * ne = [C, R]: the dequantized GGUF bytes are already in this order).
 *
 * Sampling: each sequence s draws from its own `Rng(sampling.seed + s)`, one draw per step, so a
 * sequence's tokens do not depend on which other sequences share the batch (see sampling/sampler.ts).
 */
import { checkIntegerInRange, EngineError } from '../errors';
import {
  checkKeepPositions,
  FEEDBACK_TOKEN,
  type ModelRunner,
  type SamplingOptions,
  sequenceSeed,
  yieldToEventLoop,
} from '../generation';
import { checkTokenIds, cpuPrefillChunkTokens, type RunnerLimits, resolveRunnerLimits } from '../limits';
import { type LlamaTensors, validateLlamaTensors } from '../gguf/config';
import { readTensorBytes } from '../gguf/reader';
import {
  GgmlType,
  type GgufFile,
  type LlamaConfig,
  Q4_0_ENCODING_SOURCES,
  type TensorInfo,
} from '../gguf/types';
import { quantize } from '../quant/quantize';
import { Rng, sampleToken } from '../sampling/sampler';
import type { RandomAccessSource } from '../source';
import {
  addInPlace,
  attention,
  dequantize,
  dequantizeActivationsQ8,
  matVec,
  rmsNorm,
  rope,
  roundToF16InPlace,
  swiglu,
} from './ops';

export interface ReferenceLoadOptions {
  /** Largest number of sequences per step (default 4). */
  maxBatch?: number;
  /** KV cache length per sequence (default min(contextLength, 2048)). */
  maxSeqLen?: number;
  /**
   * 'q4_0': F16/F32/BF16 matrices are first quantized to q4_0 with llama.cpp's rounding, then
   * dequantized, so the CPU sees the same weights as a GPU path that stores them as q4_0.
   * 'float32' (default): the file's own values.
   */
  quantizationEncoding?: 'q4_0' | 'float32';
  /**
   * 'q8': the input of every matrix held as q4_0, q8_0, q4_K, q5_K or q6_K (in the file or after the q4_0
   * encoding) is first rounded to 8 bits per 32-block (quantizeActivationsQ8), as the GPU's integer
   * kernels do (llama.cpp's CPU path quantizes activations too, with f16 or per-256 scales).
   * 'float32' (default): f32 activations everywhere.
   */
  activations?: 'float32' | 'q8';
  /** Tokens computed between two yields to the event loop, where Stop is honoured (default: cpuPrefillChunkTokens, by FLOPs). */
  prefillChunk?: number;
}

interface LayerWeights {
  attnNorm: Float32Array; // [D]
  wq: Float32Array; // [H·Dh, D]
  wk: Float32Array; // [Hkv·Dh, D]
  wv: Float32Array; // [Hkv·Dh, D]
  wo: Float32Array; // [D, H·Dh]
  ffnNorm: Float32Array; // [D]
  wGate: Float32Array; // [F, D]
  wUp: Float32Array; // [F, D]
  wDown: Float32Array; // [D, F]
}

interface Weights {
  tokenEmbd: Float32Array; // [V, D]
  layers: LayerWeights[]; // [nLayers]
  outputNorm: Float32Array; // [D]
  output: Float32Array; // [V, D] (the same array as tokenEmbd when tied)
  ropeFreqs?: Float32Array; // [Dh/2] frequency divisors
  q8Inputs: WeakSet<Float32Array>; // matrices whose input is rounded to 8 bits (activations 'q8')
}

interface Sequence {
  pos: number; // positions filled so far
  keys: Float32Array[]; // per layer [S, Hkv·Dh], values rounded to f16
  values: Float32Array[]; // per layer [S, Hkv·Dh], values rounded to f16
  logits: Float32Array | null; // [V] after the last token stepped
  rng: Rng;
  sampled: number; // the id the last step sampled (what FEEDBACK_TOKEN stands for); −1 before
}

async function loadTensor(
  source: RandomAccessSource,
  t: TensorInfo,
  encoding: 'q4_0' | 'float32',
): Promise<Float32Array> {
  const x = dequantize(t.type, await readTensorBytes(source, t), t.elements);
  const isMatrix = t.dims.length === 2;
  if (encoding === 'q4_0' && isMatrix && Q4_0_ENCODING_SOURCES.has(t.type) && t.dims[0] % 32 === 0) {
    return dequantize(GgmlType.Q4_0, quantize(GgmlType.Q4_0, x), t.elements);
  }
  return x;
}

export class ReferenceModel implements ModelRunner {
  readonly config: LlamaConfig;
  readonly maxBatch: number;
  readonly maxSeqLen: number;
  private readonly w: Weights;
  private seqs: Sequence[] = [];
  /** Tokens computed between two yields to the event loop (where a step's signal is checked). */
  readonly prefillChunk: number;
  private sampling: SamplingOptions = { temperature: 0, topP: 1, topK: 0, seed: 0 };

  private constructor(config: LlamaConfig, w: Weights, limits: RunnerLimits, prefillChunk: number) {
    this.config = config;
    this.w = w;
    this.maxBatch = limits.maxBatch;
    this.maxSeqLen = limits.maxSeqLen;
    this.prefillChunk = prefillChunk;
  }

  static async load(
    source: RandomAccessSource,
    file: GgufFile,
    config: LlamaConfig,
    opts: ReferenceLoadOptions = {},
  ): Promise<ReferenceModel> {
    const limits = resolveRunnerLimits(config, opts);
    const prefillChunk = opts.prefillChunk ?? cpuPrefillChunkTokens(config);
    checkIntegerInRange('prefill chunk', prefillChunk, 1, Number.MAX_SAFE_INTEGER);
    const t: LlamaTensors = validateLlamaTensors(file, config);
    const enc = opts.quantizationEncoding ?? 'float32';
    const load = (ti: TensorInfo) => loadTensor(source, ti, enc);
    const q8Inputs = new WeakSet<Float32Array>();
    // The types whose GPU mat-vec multiplies 8-bit activations (integer dot products).
    const integerTypes = [
      GgmlType.Q4_0,
      GgmlType.Q8_0,
      GgmlType.Q4_K,
      GgmlType.Q5_K,
      GgmlType.Q6_K,
      GgmlType.Q4_1,
      GgmlType.Q5_0,
      GgmlType.Q5_1,
      GgmlType.IQ4_NL,
      GgmlType.IQ4_XS,
    ];
    const roundsInput = (ti: TensorInfo) =>
      opts.activations === 'q8' &&
      (integerTypes.includes(ti.type) ||
        (enc === 'q4_0' && Q4_0_ENCODING_SOURCES.has(ti.type) && ti.dims[0] % 32 === 0));
    const matrix = async (ti: TensorInfo) => {
      const m = await load(ti);
      if (roundsInput(ti)) q8Inputs.add(m);
      return m;
    };
    const tokenEmbd = await load(t.tokenEmbd);
    const layers: LayerWeights[] = [];
    for (const l of t.layers) {
      layers.push({
        attnNorm: await load(l.attnNorm),
        wq: await matrix(l.wq),
        wk: await matrix(l.wk),
        wv: await matrix(l.wv),
        wo: await matrix(l.wo),
        ffnNorm: await load(l.ffnNorm),
        wGate: await matrix(l.wGate),
        wUp: await matrix(l.wUp),
        wDown: await matrix(l.wDown),
      });
    }
    const w: Weights = {
      tokenEmbd,
      layers,
      outputNorm: await load(t.outputNorm),
      output: t.output === t.tokenEmbd ? tokenEmbd : await load(t.output),
      ropeFreqs: t.ropeFreqs ? await load(t.ropeFreqs) : undefined,
      q8Inputs,
    };
    if (roundsInput(t.output)) q8Inputs.add(w.output); // tied: the embedding table, as the head
    return new ReferenceModel(config, w, limits, prefillChunk);
  }

  reset(batch: number, sampling: SamplingOptions, firstSequence = 0, keepPositions = 0): void {
    if (!(Number.isInteger(batch) && batch >= 1 && batch <= this.maxBatch)) {
      throw new EngineError('bad-argument', `batch ${batch} must be in [1, ${this.maxBatch}]`);
    }
    const kept = this.seqs[0];
    checkKeepPositions(keepPositions, kept?.pos ?? 0);
    const kvDim = this.config.nKvHeads * this.config.headDim;
    this.sampling = sampling;
    this.seqs = [];
    for (let s = 0; s < batch; s++) {
      // Sequence 0 keeps its cache arrays when it keeps positions (rows past them are rewritten).
      const keep = s === 0 && keepPositions > 0 && kept;
      this.seqs.push({
        pos: keep ? keepPositions : 0,
        keys: keep ? kept.keys : this.w.layers.map(() => new Float32Array(this.maxSeqLen * kvDim)),
        values: keep ? kept.values : this.w.layers.map(() => new Float32Array(this.maxSeqLen * kvDim)),
        logits: null,
        rng: new Rng(sequenceSeed(sampling.seed, firstSequence + s)),
        sampled: -1,
      });
    }
  }

  async step(tokens: number[][], signal?: AbortSignal): Promise<number[]> {
    if (tokens.length !== this.seqs.length) {
      throw new EngineError(
        'bad-argument',
        `step got ${tokens.length} token lists for ${this.seqs.length} sequences (call reset first)`,
      );
    }
    for (const [s, toks] of tokens.entries()) {
      const seq = this.seqs[s];
      if (seq.pos + toks.length > this.maxSeqLen) {
        throw new EngineError(
          'context-overflow',
          `sequence ${s} would reach ${seq.pos + toks.length} positions but the cache holds ${this.maxSeqLen}`,
        );
      }
      if (toks.includes(FEEDBACK_TOKEN) && seq.sampled < 0) {
        throw new EngineError('bad-argument', `sequence ${s} has no sampled token to feed back yet`);
      }
    }
    // One uniform draw per sequence with tokens, taken up front as the GPU runner does.
    const draws = tokens.map((toks, s) => (toks.length > 0 ? this.seqs[s].rng.next() : 0));
    const total = tokens.reduce((a, t) => a + t.length, 0);
    const chunk = this.prefillChunk;
    const out = tokens.map(() => -1);
    let done = 0; // tokens computed in this step
    for (let s = 0; s < tokens.length; s++) {
      const seq = this.seqs[s];
      for (const [i, tok] of tokens[s].entries()) {
        // Between chunks: let the host's event loop run (Stop, worker messages, timers), and stop
        // here if asked. Every position computed so far stays (forward advanced seq.pos).
        if (done > 0 && done % chunk === 0 && done < total) {
          await yieldToEventLoop();
          if (signal?.aborted) {
            if (i > 0) seq.logits = null; // part of its tokens: no logits until its last one runs
            return out;
          }
        }
        // Only the last row's logits are read (sampled, lastLogits): the LM head, V × D per row, is
        // most of a small model's work and would make a prompt of thousands of tokens take minutes.
        const last = i === tokens[s].length - 1;
        const logits = this.forward(seq, tok === FEEDBACK_TOKEN ? seq.sampled : tok, last);
        if (last) seq.logits = logits;
        done++;
      }
      if (tokens[s].length === 0) continue;
      seq.sampled = sampleToken(seq.logits!, this.sampling, draws[s]);
      out[s] = seq.sampled;
    }
    return out;
  }

  /**
   * Sequence s's cached K and V rows, per layer [positions, Hkv·Dh] (f16-rounded), and how many
   * positions are filled: the model's own arrays, read, don't write (GpuModel.restoreKv takes them).
   */
  cachedKv(s: number): { keys: Float32Array[]; values: Float32Array[]; positions: number } {
    const seq = this.seqs[s];
    if (!seq) throw new EngineError('bad-argument', `no sequence ${s}`);
    return { keys: seq.keys, values: seq.values, positions: seq.pos };
  }

  positions(s: number): number {
    return this.seqs[s]?.pos ?? 0;
  }

  /** The logits [V] after sequence s's last stepped token. The model's own array: read, don't write. */
  async lastLogits(s: number): Promise<Float32Array> {
    const logits = this.seqs[s]?.logits;
    if (!logits) throw new EngineError('bad-argument', `sequence ${s} has no logits yet`);
    return logits;
  }

  /**
   * Overwrite sequence s's cached K and V rows [0, positions) by another runner's (per layer
   * [positions, Hkv·Dh], as GpuModel.cachedKv reads them; rounded to f16 as every cached row): a
   * test then compares the next step alone, not which way earlier K/V halves rounded (one half a
   * ulp apart can move later logits by 1e-2 through the 8-bit activations: docs/kernels.md,
   * "Parity and rounding").
   */
  adoptKv(s: number, kv: { keys: Float32Array[]; values: Float32Array[] }): void {
    const seq = this.seqs[s];
    if (!seq) throw new EngineError('bad-argument', `no sequence ${s}`);
    const n = seq.pos * this.config.nKvHeads * this.config.headDim;
    const layers = seq.keys.length;
    const fits = (rows: Float32Array[]) => rows.length === layers && rows.every((r) => r.length === n);
    if (!fits(kv.keys) || !fits(kv.values)) {
      throw new EngineError('bad-argument', `adoptKv: ${layers} layers of ${n} keys and values needed`);
    }
    for (let l = 0; l < layers; l++) {
      seq.keys[l].set(roundToF16InPlace(kv.keys[l].slice()));
      seq.values[l].set(roundToF16InPlace(kv.values[l].slice()));
    }
  }

  /** W · x, with x rounded to 8 bits per 32-block first where W's kernel does that (activations 'q8'). */
  private linear(W: Float32Array, x: Float32Array, rows: number, cols: number): Float32Array {
    return matVec(W, this.w.q8Inputs.has(W) ? dequantizeActivationsQ8(x) : x, rows, cols);
  }

  /** Logits [V] after feeding `token` at the sequence's next position (none unless `withLogits`). */
  private forward(seq: Sequence, token: number, withLogits: boolean): Float32Array | null {
    const { dim, nHeads, nKvHeads, headDim, ffnDim, vocabSize, normEps, ropeTheta } = this.config;
    checkTokenIds([token], vocabSize, 'the step');
    const w = this.w;
    const qDim = nHeads * headDim;
    const kvDim = nKvHeads * headDim;
    const pos = seq.pos;

    // x: [D], the residual stream, starts as the token's embedding row.
    const x = w.tokenEmbd.slice(token * dim, (token + 1) * dim);
    for (let l = 0; l < w.layers.length; l++) {
      const L = w.layers[l];
      // Attention block.
      const xn = rmsNorm(x, L.attnNorm, normEps); // [D]
      const q = this.linear(L.wq, xn, qDim, dim); // [H·Dh]
      const k = this.linear(L.wk, xn, kvDim, dim); // [Hkv·Dh]
      const v = this.linear(L.wv, xn, kvDim, dim); // [Hkv·Dh]
      rope(q, nHeads, headDim, pos, ropeTheta, w.ropeFreqs);
      rope(k, nKvHeads, headDim, pos, ropeTheta, w.ropeFreqs);
      // Cache row pos, in f16 like the GPU cache (and llama.cpp's default): attention reads the
      // rounded K/V, also for this position.
      seq.keys[l].set(roundToF16InPlace(k), pos * kvDim);
      seq.values[l].set(roundToF16InPlace(v), pos * kvDim);
      // The last layer's output of a row without logits feeds nothing (its K/V are cached above):
      // skip its attention and FFN, as llama.cpp does for rows it does not output. A long prompt
      // then costs its attention only in the layers below, not quadratically in every layer.
      if (l === w.layers.length - 1 && !withLogits) break;
      const att = attention(q, seq.keys[l], seq.values[l], pos + 1, nHeads, nKvHeads, headDim); // [H·Dh]
      addInPlace(x, this.linear(L.wo, att, dim, qDim));
      // Feed-forward block: x += down · (silu(gate · xn) ⊙ up · xn).
      const xn2 = rmsNorm(x, L.ffnNorm, normEps); // [D]
      const hidden = swiglu(this.linear(L.wGate, xn2, ffnDim, dim), this.linear(L.wUp, xn2, ffnDim, dim)); // [F]
      addInPlace(x, this.linear(L.wDown, hidden, dim, ffnDim));
    }
    seq.pos++;
    if (!withLogits) return null;
    // Final norm and the LM head.
    const xf = rmsNorm(x, w.outputNorm, normEps); // [D]
    return this.linear(w.output, xf, vocabSize, dim); // [V]
  }

  dispose(): void {
    this.seqs = [];
  }
}
