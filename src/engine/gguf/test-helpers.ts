/**
 * Test helpers for GGUF: a raw byte builder for headers that writeGguf refuses to write (hostile
 * sizes, unknown types, v2) and tiny Llama models. Used by tests only.
 */
import { EngineError } from '../errors';
import { GgmlType, GgufValueType, tensorBytes } from './types';
import { type GgufKv, type GgufTensorIn, writeGguf } from './writer';
import { mulberry32 } from '../random';

const enc = new TextEncoder();

/** Little-endian byte builder: write any header, valid or not. */
export class Raw {
  private parts: number[] = [];
  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }
  u32(v: number): this {
    for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff);
    return this;
  }
  u64(v: number | bigint): this {
    let b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 8; i++) {
      this.parts.push(Number(b & 0xffn));
      b >>= 8n;
    }
    return this;
  }
  bytes(b: Uint8Array): this {
    for (const x of b) this.parts.push(x);
    return this;
  }
  str(s: string): this {
    const b = enc.encode(s);
    return this.u64(b.length).bytes(b);
  }
  /** GGUF fixed header. */
  header(nTensors: number | bigint, nKv: number | bigint, version = 3): this {
    return this.bytes(enc.encode('GGUF')).u32(version).u64(nTensors).u64(nKv);
  }
  kvU32(key: string, v: number): this {
    return this.str(key).u32(GgufValueType.UINT32).u32(v);
  }
  kvStr(key: string, v: string): this {
    return this.str(key).u32(GgufValueType.STRING).str(v);
  }
  /** A tensor info: name, dims, type, offset relative to the data section. */
  tensor(name: string, dims: (number | bigint)[], type: number, offset: number | bigint): this {
    this.str(name).u32(dims.length);
    for (const d of dims) this.u64(d);
    return this.u32(type).u64(offset);
  }
  pad(alignment: number): this {
    while (this.parts.length % alignment) this.parts.push(0);
    return this;
  }
  zeros(n: number): this {
    for (let i = 0; i < n; i++) this.parts.push(0);
    return this;
  }
  get length(): number {
    return this.parts.length;
  }
  result(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Deterministic PRNG (mulberry32). */
export const prng: (seed: number) => () => number = mulberry32;

export interface TinyLlamaOptions {
  dim?: number;
  nLayers?: number;
  nHeads?: number;
  nKvHeads?: number;
  ffnDim?: number;
  vocabSize?: number;
  tied?: boolean;
  ropeFreqs?: boolean;
  /** Type of the matrices (norms are F32). */
  type?: GgmlType;
  /** Extra or replacement metadata (same key replaces). */
  kvs?: GgufKv[];
  /** Drop these metadata keys. */
  dropKeys?: string[];
  /** Change tensors before writing (drop, reshape, retype). */
  editTensors?: (ts: GgufTensorIn[]) => GgufTensorIn[];
  seed?: number;
}

/** A tiny Llama GGUF with deterministic random bytes (not a meaningful model: a shape fixture). */
export function tinyLlama(o: TinyLlamaOptions = {}): Uint8Array {
  const dim = o.dim ?? 64;
  const nLayers = o.nLayers ?? 2;
  const nHeads = o.nHeads ?? 4;
  const nKvHeads = o.nKvHeads ?? 2;
  const ffnDim = o.ffnDim ?? 96;
  const vocab = o.vocabSize ?? 128;
  const headDim = dim / nHeads;
  const type = o.type ?? GgmlType.Q4_0;
  const rnd = prng(o.seed ?? 1);
  const data = (t: GgmlType, dims: number[]) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const b = new Uint8Array(tensorBytes(t, n));
    for (let i = 0; i < b.length; i++) b[i] = (rnd() * 256) | 0;
    if (t === GgmlType.F32) {
      const f = new Float32Array(b.buffer);
      for (let i = 0; i < f.length; i++) f[i] = rnd() * 2 - 1;
    }
    return b;
  };
  const T = (name: string, dims: number[], t = type): GgufTensorIn => ({
    name,
    dims,
    type: t,
    data: data(t, dims),
  });
  let tensors: GgufTensorIn[] = [
    T('token_embd.weight', [dim, vocab]),
    T('output_norm.weight', [dim], GgmlType.F32),
  ];
  if (!o.tied) tensors.push(T('output.weight', [dim, vocab]));
  if (o.ropeFreqs) tensors.push(T('rope_freqs.weight', [headDim / 2], GgmlType.F32));
  for (let l = 0; l < nLayers; l++) {
    const b = `blk.${l}.`;
    tensors.push(
      T(`${b}attn_norm.weight`, [dim], GgmlType.F32),
      T(`${b}attn_q.weight`, [dim, nHeads * headDim]),
      T(`${b}attn_k.weight`, [dim, nKvHeads * headDim]),
      T(`${b}attn_v.weight`, [dim, nKvHeads * headDim]),
      T(`${b}attn_output.weight`, [nHeads * headDim, dim]),
      T(`${b}ffn_norm.weight`, [dim], GgmlType.F32),
      T(`${b}ffn_gate.weight`, [dim, ffnDim]),
      T(`${b}ffn_up.weight`, [dim, ffnDim]),
      T(`${b}ffn_down.weight`, [ffnDim, dim]),
    );
  }
  if (o.editTensors) tensors = o.editTensors(tensors);
  let kvs: GgufKv[] = [
    { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
    { key: 'general.name', type: GgufValueType.STRING, value: 'tiny' },
    { key: 'llama.embedding_length', type: GgufValueType.UINT32, value: dim },
    { key: 'llama.block_count', type: GgufValueType.UINT32, value: nLayers },
    { key: 'llama.attention.head_count', type: GgufValueType.UINT32, value: nHeads },
    { key: 'llama.attention.head_count_kv', type: GgufValueType.UINT32, value: nKvHeads },
    { key: 'llama.feed_forward_length', type: GgufValueType.UINT32, value: ffnDim },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: GgufValueType.FLOAT32, value: 1e-5 },
    { key: 'llama.rope.freq_base', type: GgufValueType.FLOAT32, value: 500000 },
    { key: 'llama.context_length', type: GgufValueType.UINT32, value: 256 },
    { key: 'llama.vocab_size', type: GgufValueType.UINT32, value: vocab },
  ];
  for (const kv of o.kvs ?? []) kvs = [...kvs.filter((k) => k.key !== kv.key), kv];
  kvs = kvs.filter((k) => !o.dropKeys?.includes(k.key));
  return writeGguf(kvs, tensors);
}

/** Runs `f` and returns the EngineError it throws; fails the test if it throws anything else or nothing. */
export async function engineError(f: () => Promise<unknown> | unknown): Promise<EngineError> {
  try {
    await f();
  } catch (e) {
    if (e instanceof EngineError) return e;
    throw new Error(`expected an EngineError, got ${String(e)}`, { cause: e });
  }
  throw new Error('expected an EngineError, but nothing was thrown');
}
