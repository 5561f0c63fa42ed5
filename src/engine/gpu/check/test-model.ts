/**
 * Random-weight Llama GGUFs with a SMALL vocabulary, built in memory for GPU-vs-reference parity
 * tests. The real-vocab fixtures (fixtures/*.gguf, 128256 rows in the head) are what llama.cpp
 * needs; on SwiftShader their LM head costs tens of seconds per step, so logits parity and batching
 * are checked here on models of the same structure with a vocabulary of a few hundred tokens.
 * `llama.vocab_size` carries the size (no tokenizer: llama.cpp cannot load these).
 */
import { GgmlType, GgufValueType } from '../../gguf/types';
import { type GgufKv, type GgufTensorIn, writeGguf } from '../../gguf/writer';
import { type KQuantPreset, kQuantTensorType } from '../../quant/mix';
import { quantize } from '../../quant/quantize';
import { makeRng } from './testing';

export interface SmallModelOptions {
  vocab: number;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffnDim: number;
  bodyType: GgmlType;
  headType: GgmlType;
  tied: boolean;
  ropeFreqs: boolean;
  seed: number;
  /** Mix the matrices' types as llama-quantize's K-quant preset does (body/head types then unused). */
  preset?: KQuantPreset;
  /** llama.context_length (default 256). */
  contextLength?: number;
}

export function makeSmallLlama(o: SmallModelOptions): Uint8Array {
  const rng = makeRng(o.seed);
  const headDim = o.dim / o.nHeads;
  const kvDim = o.nKvHeads * headDim;
  // Sum of 4 uniforms: roughly normal, std ≈ 0.58 · scale.
  const fill = (n: number, scale: number, mean = 0) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = mean + scale * (rng() + rng() + rng() + rng() - 2);
    return a;
  };
  const tensors: GgufTensorIn[] = [];
  const add = (name: string, dims: number[], fileType: GgmlType, values: Float32Array) => {
    const type =
      o.preset && dims.length === 2 ? kQuantTensorType(o.preset, name, dims[0], o.nLayers, o.tied) : fileType;
    tensors.push({ name, dims, type, data: quantize(type, values) });
  };
  const matrix = (rows: number, cols: number) => fill(rows * cols, 1.7 / Math.sqrt(cols));
  add(
    'token_embd.weight',
    [o.dim, o.vocab],
    o.tied ? o.headType : o.bodyType,
    fill(o.vocab * o.dim, o.tied ? 0.5 : 1.7),
  );
  if (o.ropeFreqs) {
    add(
      'rope_freqs.weight',
      [headDim / 2],
      GgmlType.F32,
      Float32Array.from({ length: headDim / 2 }, (_, i) => 1 + i),
    );
  }
  for (let l = 0; l < o.nLayers; l++) {
    const p = `blk.${l}.`;
    add(`${p}attn_norm.weight`, [o.dim], GgmlType.F32, fill(o.dim, 0.3, 1));
    add(`${p}attn_q.weight`, [o.dim, o.dim], o.bodyType, matrix(o.dim, o.dim));
    add(`${p}attn_k.weight`, [o.dim, kvDim], o.bodyType, matrix(kvDim, o.dim));
    add(`${p}attn_v.weight`, [o.dim, kvDim], o.bodyType, matrix(kvDim, o.dim));
    add(`${p}attn_output.weight`, [o.dim, o.dim], o.bodyType, matrix(o.dim, o.dim));
    add(`${p}ffn_norm.weight`, [o.dim], GgmlType.F32, fill(o.dim, 0.3, 1));
    add(`${p}ffn_gate.weight`, [o.dim, o.ffnDim], o.bodyType, matrix(o.ffnDim, o.dim));
    add(`${p}ffn_up.weight`, [o.dim, o.ffnDim], o.bodyType, matrix(o.ffnDim, o.dim));
    add(`${p}ffn_down.weight`, [o.ffnDim, o.dim], o.bodyType, matrix(o.dim, o.ffnDim));
  }
  add('output_norm.weight', [o.dim], GgmlType.F32, fill(o.dim, 0.3, 1));
  if (!o.tied) add('output.weight', [o.dim, o.vocab], o.headType, matrix(o.vocab, o.dim));
  const u32 = (key: string, value: number): GgufKv => ({ key, type: GgufValueType.UINT32, value });
  const f32 = (key: string, value: number): GgufKv => ({ key, type: GgufValueType.FLOAT32, value });
  const kvs: GgufKv[] = [
    { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
    { key: 'general.name', type: GgufValueType.STRING, value: 'small-vocab-test' },
    u32('llama.context_length', o.contextLength ?? 256),
    u32('llama.embedding_length', o.dim),
    u32('llama.block_count', o.nLayers),
    u32('llama.feed_forward_length', o.ffnDim),
    u32('llama.attention.head_count', o.nHeads),
    u32('llama.attention.head_count_kv', o.nKvHeads),
    f32('llama.attention.layer_norm_rms_epsilon', 1e-5),
    f32('llama.rope.freq_base', 500000),
    u32('llama.rope.dimension_count', headDim),
    u32('llama.vocab_size', o.vocab),
  ];
  return writeGguf(kvs, tensors);
}
