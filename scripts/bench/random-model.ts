/**
 * Random-weight Llama GGUFs of real shapes for benchmarks, streamed to a file tensor by tensor in
 * slices of ≤ 8 MiB, so an 8B model (4.5 GB) is written without ever being in memory. The weights
 * are random bytes with small, valid f16 scales: the speed of a forward pass does not depend on the
 * values. The bench feeds token ids; the tokenizer metadata is a placeholder (tokens "t0", "t1", …,
 * no merges) only because llama.cpp refuses a file without a vocabulary and `--compare llama.cpp`
 * runs it on the same file.
 */
import { randomFillSync } from 'node:crypto';
import { closeSync, openSync, writeSync } from 'node:fs';
import { f32ToF16 } from '../../src/engine/reference/ops';
import {
  GgmlType,
  GgufValueType,
  type LlamaConfig,
  type TensorInfo,
  tensorBytes,
} from '../../src/engine/gguf/types';

export interface ModelShape {
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  ffnDim: number;
  vocab: number;
  tied: boolean;
  contextLength: number;
}

/** The published shapes of Llama 3 8B and Llama 3.2 3B/1B, and a tiny one that runs anywhere. */
export const PRESETS: Record<string, ModelShape> = {
  '8b': {
    dim: 4096,
    nLayers: 32,
    nHeads: 32,
    nKvHeads: 8,
    ffnDim: 14336,
    vocab: 128256,
    tied: false,
    contextLength: 8192,
  },
  '3b': {
    dim: 3072,
    nLayers: 28,
    nHeads: 24,
    nKvHeads: 8,
    ffnDim: 8192,
    vocab: 128256,
    tied: true,
    contextLength: 8192,
  },
  '1b': {
    dim: 2048,
    nLayers: 16,
    nHeads: 32,
    nKvHeads: 8,
    ffnDim: 8192,
    vocab: 128256,
    tied: true,
    contextLength: 8192,
  },
  tiny: {
    dim: 256,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    ffnDim: 512,
    vocab: 2048,
    tied: false,
    contextLength: 2048,
  },
};

interface TensorSpec {
  name: string;
  dims: number[]; // ggml ne
  type: GgmlType;
}

/** The tensor list of a model: q4_0 body; head q6_K like real "Q4_0" files unless allQ4. */
export function tensorList(s: ModelShape, allQ4: boolean): TensorSpec[] {
  const headDim = s.dim / s.nHeads;
  const kvDim = s.nKvHeads * headDim;
  const headType = allQ4 ? GgmlType.Q4_0 : GgmlType.Q6_K;
  const t: TensorSpec[] = [
    { name: 'token_embd.weight', dims: [s.dim, s.vocab], type: s.tied ? headType : GgmlType.Q4_0 },
  ];
  for (let l = 0; l < s.nLayers; l++) {
    const b = `blk.${l}.`;
    t.push(
      { name: `${b}attn_norm.weight`, dims: [s.dim], type: GgmlType.F32 },
      { name: `${b}attn_q.weight`, dims: [s.dim, s.dim], type: GgmlType.Q4_0 },
      { name: `${b}attn_k.weight`, dims: [s.dim, kvDim], type: GgmlType.Q4_0 },
      { name: `${b}attn_v.weight`, dims: [s.dim, kvDim], type: GgmlType.Q4_0 },
      { name: `${b}attn_output.weight`, dims: [s.dim, s.dim], type: GgmlType.Q4_0 },
      { name: `${b}ffn_norm.weight`, dims: [s.dim], type: GgmlType.F32 },
      { name: `${b}ffn_gate.weight`, dims: [s.dim, s.ffnDim], type: GgmlType.Q4_0 },
      { name: `${b}ffn_up.weight`, dims: [s.dim, s.ffnDim], type: GgmlType.Q4_0 },
      { name: `${b}ffn_down.weight`, dims: [s.ffnDim, s.dim], type: GgmlType.Q4_0 },
    );
  }
  t.push({ name: 'output_norm.weight', dims: [s.dim], type: GgmlType.F32 });
  if (!s.tied) t.push({ name: 'output.weight', dims: [s.dim, s.vocab], type: headType });
  return t;
}

/**
 * What a preset's GGUF header says, without writing it: the tensor table (offsets 0) and the config
 * (memory.ts estimates from these alone). `contextLength` overrides the preset's (Llama 3.2 3B/1B
 * files declare 131,072).
 */
export function presetHeader(
  name: string,
  opts: { allQ4?: boolean; contextLength?: number } = {},
): { file: { tensors: TensorInfo[] }; config: LlamaConfig } {
  const s = PRESETS[name];
  const tensors = tensorList(s, !!opts.allQ4).map((t) => {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    return { ...t, offset: 0, elements, byteLength: tensorBytes(t.type, elements) };
  });
  const config: LlamaConfig = {
    name,
    vocabSize: s.vocab,
    dim: s.dim,
    nLayers: s.nLayers,
    nHeads: s.nHeads,
    nKvHeads: s.nKvHeads,
    headDim: s.dim / s.nHeads,
    ffnDim: s.ffnDim,
    normEps: 1e-5,
    ropeTheta: 500000,
    contextLength: opts.contextLength ?? s.contextLength,
    tiedEmbeddings: s.tied,
    hasRopeFreqs: false,
  };
  return { file: { tensors }, config };
}

class Header {
  private parts: Buffer[] = [];
  magic() {
    this.parts.push(Buffer.from('GGUF', 'latin1'));
  }
  u32(v: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.parts.push(b);
  }
  u64(v: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(b);
  }
  f32(v: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.parts.push(b);
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.parts.push(b);
  }
  stringArray(items: string[]) {
    this.u32(GgufValueType.STRING);
    this.u64(items.length);
    for (const s of items) this.str(s);
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

const SLICE = 8 << 20;

/** Fill `buf` with random blocks of `type` whose f16 scales are small and finite. */
function randomBlocks(type: GgmlType, buf: Uint8Array): void {
  randomFillSync(buf);
  const d = f32ToF16(0.002);
  if (type === GgmlType.Q4_0) {
    for (let o = 0; o < buf.length; o += 18) {
      buf[o] = d & 0xff;
      buf[o + 1] = d >> 8;
    }
  } else if (type === GgmlType.Q6_K) {
    for (let o = 0; o < buf.length; o += 210) {
      for (let i = 192; i < 208; i++) buf[o + i] &= 0x0f; // small positive int8 scales
      buf[o + 208] = d & 0xff;
      buf[o + 209] = d >> 8;
    }
  } else if (type === GgmlType.F32) {
    new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4).fill(1);
  }
}

/** Write the model to `path`; returns its size in bytes. Memory use: one ≤ 8 MiB slice. */
export function writeRandomModel(path: string, s: ModelShape, allQ4: boolean): number {
  const tensors = tensorList(s, allQ4);
  const h = new Header();
  const kvs: [string, GgufValueType, number | string | string[]][] = [
    ['general.architecture', GgufValueType.STRING, 'llama'],
    ['general.name', GgufValueType.STRING, `random-${s.dim}x${s.nLayers}`],
    ['llama.context_length', GgufValueType.UINT32, s.contextLength],
    ['llama.embedding_length', GgufValueType.UINT32, s.dim],
    ['llama.block_count', GgufValueType.UINT32, s.nLayers],
    ['llama.feed_forward_length', GgufValueType.UINT32, s.ffnDim],
    ['llama.attention.head_count', GgufValueType.UINT32, s.nHeads],
    ['llama.attention.head_count_kv', GgufValueType.UINT32, s.nKvHeads],
    ['llama.attention.layer_norm_rms_epsilon', GgufValueType.FLOAT32, 1e-5],
    ['llama.rope.freq_base', GgufValueType.FLOAT32, 500000],
    ['llama.rope.dimension_count', GgufValueType.UINT32, s.dim / s.nHeads],
    ['llama.vocab_size', GgufValueType.UINT32, s.vocab],
    // Printable ASCII only: llama.cpp's byte-level BPE maps every token text to bytes at load.
    ['tokenizer.ggml.model', GgufValueType.STRING, 'gpt2'],
    ['tokenizer.ggml.pre', GgufValueType.STRING, 'default'],
    ['tokenizer.ggml.tokens', GgufValueType.ARRAY, Array.from({ length: s.vocab }, (_, i) => `t${i}`)],
    ['tokenizer.ggml.merges', GgufValueType.ARRAY, []],
  ];
  h.magic();
  h.u32(3);
  h.u64(tensors.length);
  h.u64(kvs.length);
  for (const [key, type, value] of kvs) {
    h.str(key);
    h.u32(type);
    if (type === GgufValueType.STRING) h.str(value as string);
    else if (type === GgufValueType.ARRAY) h.stringArray(value as string[]);
    else if (type === GgufValueType.FLOAT32) h.f32(value as number);
    else h.u32(value as number);
  }
  const sizes = tensors.map((t) =>
    tensorBytes(
      t.type,
      t.dims.reduce((a, b) => a * b, 1),
    ),
  );
  const offsets: number[] = [];
  let off = 0;
  for (const size of sizes) {
    off = Math.ceil(off / 32) * 32;
    offsets.push(off);
    off += size;
  }
  for (const [i, t] of tensors.entries()) {
    h.str(t.name);
    h.u32(t.dims.length);
    for (const d of t.dims) h.u64(d);
    h.u32(t.type);
    h.u64(offsets[i]);
  }
  const header = h.bytes();
  const dataStart = Math.ceil(header.length / 32) * 32;
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, header);
    writeSync(fd, new Uint8Array(dataStart - header.length));
    let pos = 0;
    for (const [i, t] of tensors.entries()) {
      if (pos < offsets[i]) writeSync(fd, new Uint8Array(offsets[i] - pos));
      pos = offsets[i];
      const block = t.type === GgmlType.Q4_0 ? 18 : t.type === GgmlType.Q6_K ? 210 : 4;
      const sliceBytes = Math.floor(SLICE / block) * block;
      const slice = new Uint8Array(sliceBytes);
      for (let done = 0; done < sizes[i]; done += sliceBytes) {
        const n = Math.min(sliceBytes, sizes[i] - done);
        const view = slice.subarray(0, n);
        randomBlocks(t.type, view);
        writeSync(fd, view);
      }
      pos += sizes[i];
    }
    return dataStart + pos;
  } finally {
    closeSync(fd);
  }
}
