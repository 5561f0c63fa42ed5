/**
 * GGUF data model and the one table of tensor types we know (ggml's `type_traits`).
 * Dims are ggml's `ne`: fastest-varying first, so a matrix is `[cols, rows]`.
 */

export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ4_NL = 20,
  IQ4_XS = 23,
  BF16 = 30,
}

export interface TypeTraits {
  name: string;
  /** Elements per block (1 for plain floats). */
  blockSize: number;
  /** Bytes per block. */
  bytesPerBlock: number;
}

/** The types this engine can read and run. Anything else is an `unsupported-model` error. */
export const SUPPORTED_TYPES: ReadonlyMap<GgmlType, TypeTraits> = new Map([
  [GgmlType.F32, { name: 'f32', blockSize: 1, bytesPerBlock: 4 }],
  [GgmlType.F16, { name: 'f16', blockSize: 1, bytesPerBlock: 2 }],
  [GgmlType.BF16, { name: 'bf16', blockSize: 1, bytesPerBlock: 2 }],
  [GgmlType.Q4_0, { name: 'q4_0', blockSize: 32, bytesPerBlock: 18 }],
  [GgmlType.Q4_1, { name: 'q4_1', blockSize: 32, bytesPerBlock: 20 }],
  [GgmlType.Q5_0, { name: 'q5_0', blockSize: 32, bytesPerBlock: 22 }],
  [GgmlType.Q5_1, { name: 'q5_1', blockSize: 32, bytesPerBlock: 24 }],
  [GgmlType.IQ4_NL, { name: 'iq4_nl', blockSize: 32, bytesPerBlock: 18 }],
  [GgmlType.IQ4_XS, { name: 'iq4_xs', blockSize: 256, bytesPerBlock: 136 }],
  [GgmlType.Q8_0, { name: 'q8_0', blockSize: 32, bytesPerBlock: 34 }],
  [GgmlType.Q4_K, { name: 'q4_K', blockSize: 256, bytesPerBlock: 144 }],
  [GgmlType.Q5_K, { name: 'q5_K', blockSize: 256, bytesPerBlock: 176 }],
  [GgmlType.Q6_K, { name: 'q6_K', blockSize: 256, bytesPerBlock: 210 }],
]);

/**
 * Types `--quantization-encoding q4_0` re-quantizes to q4_0 at load: the floats and the 4/5-bit
 * types (q4_1, q5_0, q5_1, iq4_nl, iq4_xs, q4_K, q5_K). q8_0 and q6_K (heads) stay as they are.
 */
export const Q4_0_ENCODING_SOURCES: ReadonlySet<GgmlType> = new Set([
  GgmlType.F32,
  GgmlType.F16,
  GgmlType.BF16,
  GgmlType.Q4_1,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.IQ4_NL,
  GgmlType.IQ4_XS,
  GgmlType.Q4_K,
  GgmlType.Q5_K,
]);

/**
 * llama-quantize presets (its `--help` names) with the tensor types each writes for a Llama model
 * (llama_tensor_get_type: the body type, the q6_K head, and the fallbacks for rows that are not a
 * multiple of 256; IQ4_NL/IQ4_XS give attn_v q5_K when heads / KV heads ≥ 4). A refusal lists the
 * presets whose every type runs here, so the message stays true as types are added.
 */
export const QUANTIZE_PRESETS: readonly { name: string; types: readonly GgmlType[] }[] = [
  { name: 'Q4_0', types: [GgmlType.Q4_0, GgmlType.Q6_K] },
  { name: 'Q4_1', types: [GgmlType.Q4_1, GgmlType.Q6_K] },
  { name: 'Q5_0', types: [GgmlType.Q5_0, GgmlType.Q6_K] },
  { name: 'Q5_1', types: [GgmlType.Q5_1, GgmlType.Q6_K] },
  { name: 'Q8_0', types: [GgmlType.Q8_0] },
  { name: 'Q4_K_S', types: [GgmlType.Q4_K, GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q5_0] },
  { name: 'Q4_K_M', types: [GgmlType.Q4_K, GgmlType.Q6_K, GgmlType.Q5_0, GgmlType.Q8_0] },
  { name: 'Q5_K_S', types: [GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q5_1] },
  { name: 'Q5_K_M', types: [GgmlType.Q5_K, GgmlType.Q6_K, GgmlType.Q5_1, GgmlType.Q8_0] },
  { name: 'Q6_K', types: [GgmlType.Q6_K, GgmlType.Q8_0] },
  { name: 'IQ4_NL', types: [GgmlType.IQ4_NL, GgmlType.Q5_K, GgmlType.Q6_K] },
  { name: 'IQ4_XS', types: [GgmlType.IQ4_XS, GgmlType.IQ4_NL, GgmlType.Q5_K, GgmlType.Q6_K] },
  { name: 'F16', types: [GgmlType.F16] },
  { name: 'BF16', types: [GgmlType.BF16] },
  { name: 'F32', types: [GgmlType.F32] },
];

/** The llama-quantize presets whose files this engine runs (every type they write is supported). */
export function workingPresets(): string[] {
  return QUANTIZE_PRESETS.filter((p) => p.types.every((t) => SUPPORTED_TYPES.has(t))).map((p) => p.name);
}

/** Names of known-but-unsupported types, for error messages ("unsupported tensor type q5_1"). */
export const KNOWN_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'f32',
  1: 'f16',
  2: 'q4_0',
  3: 'q4_1',
  6: 'q5_0',
  7: 'q5_1',
  8: 'q8_0',
  9: 'q8_1',
  10: 'q2_K',
  11: 'q3_K',
  12: 'q4_K',
  13: 'q5_K',
  14: 'q6_K',
  15: 'q8_K',
  16: 'iq2_xxs',
  17: 'iq2_xs',
  18: 'iq3_xxs',
  19: 'iq1_s',
  20: 'iq4_nl',
  21: 'iq3_s',
  22: 'iq2_s',
  23: 'iq4_xs',
  24: 'i8',
  25: 'i16',
  26: 'i32',
  27: 'i64',
  28: 'f64',
  29: 'iq1_m',
  30: 'bf16',
  34: 'tq1_0',
  35: 'tq2_0',
  39: 'mxfp4',
};

/**
 * Block layout of every ggml type a GGUF file may carry (ggml's `type_traits`), supported or not:
 * the reader needs it to size and bounds-check tensors of files it will only inspect. Types 4, 5
 * and 31–33, 36–38 were removed from ggml and never appear in GGUF files.
 */
export const GGML_TYPE_TRAITS: ReadonlyMap<number, TypeTraits> = new Map<number, TypeTraits>(
  (
    [
      [0, 1, 4],
      [1, 1, 2],
      [2, 32, 18],
      [3, 32, 20],
      [6, 32, 22],
      [7, 32, 24],
      [8, 32, 34],
      [9, 32, 36],
      [10, 256, 84],
      [11, 256, 110],
      [12, 256, 144],
      [13, 256, 176],
      [14, 256, 210],
      [15, 256, 292],
      [16, 256, 66],
      [17, 256, 74],
      [18, 256, 98],
      [19, 256, 50],
      [20, 32, 18],
      [21, 256, 110],
      [22, 256, 82],
      [23, 256, 136],
      [24, 1, 1],
      [25, 1, 2],
      [26, 1, 4],
      [27, 1, 8],
      [28, 1, 8],
      [29, 256, 56],
      [30, 1, 2],
      [34, 256, 54],
      [35, 256, 66],
      [39, 32, 17],
    ] as const
  ).map(([t, blockSize, bytesPerBlock]) => [t, { name: KNOWN_TYPE_NAMES[t], blockSize, bytesPerBlock }]),
);

export function typeName(t: number): string {
  return KNOWN_TYPE_NAMES[t] ?? `type ${t}`;
}

/**
 * Bytes of a tensor with `n` elements of type `t` (n must be a multiple of the block size). Knows
 * every ggml type (GGML_TYPE_TRAITS), so test files may carry types the engine cannot run.
 */
export function tensorBytes(t: GgmlType, n: number): number {
  const tr = GGML_TYPE_TRAITS.get(t);
  if (!tr) throw new Error(`no traits for ${typeName(t)}`);
  return (n / tr.blockSize) * tr.bytesPerBlock;
}

export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** 64-bit integers are `bigint`; arrays keep JS arrays (numbers, bigints, strings, nested). */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface TensorInfo {
  name: string;
  /** ggml `ne`, fastest-varying first. */
  dims: number[];
  type: GgmlType;
  /** Absolute byte offset of the tensor's data in the file. */
  offset: number;
  /** Byte length of the tensor's data. */
  byteLength: number;
  /** Number of elements (product of dims). */
  elements: number;
}

export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: TensorInfo[];
  /** Absolute offset of the tensor-data section (aligned). */
  dataOffset: number;
  alignment: number;
  /** Total file size when known. */
  fileSize?: number;
}

/** Llama model hyper-parameters read from GGUF metadata (architecture `llama`). */
export interface LlamaConfig {
  /** From `general.name` when present. */
  name: string;
  vocabSize: number;
  dim: number; // embedding_length
  nLayers: number; // block_count
  nHeads: number; // attention.head_count
  nKvHeads: number; // attention.head_count_kv
  headDim: number; // dim / nHeads (or attention.key_length)
  ffnDim: number; // feed_forward_length
  normEps: number; // attention.layer_norm_rms_epsilon
  ropeTheta: number; // rope.freq_base (500000 for Llama 3)
  contextLength: number; // context_length
  /** True when there is no `output.weight`: the head is `token_embd.weight`. */
  tiedEmbeddings: boolean;
  /** True when `rope_freqs.weight` (headDim/2 factors) is present. */
  hasRopeFreqs: boolean;
}
