/**
 * Llama hyper-parameters and the tensor table from a parsed GGUF header.
 *
 * The reader accepts any well-formed GGUF (so a file can be inspected); this is where a file is
 * judged runnable: architecture `llama`, every expected tensor with the expected shape, and only
 * tensor types this engine has kernels for (SUPPORTED_TYPES).
 */
import { EngineError } from '../errors';
import { quoteText, safeText } from '../safe-text';
import {
  type GgufFile,
  type GgufValue,
  type LlamaConfig,
  SUPPORTED_TYPES,
  type TensorInfo,
  typeName,
  workingPresets,
} from './types';

function describeValue(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length} elements`;
  if (typeof v === 'string') return `the string ${quoteText(v, 60)}`;
  return `the ${typeof v} ${String(v)}`;
}

function missing(key: string): EngineError {
  return new EngineError(
    'bad-gguf',
    `metadata key "${key}" is missing; the file is incomplete or not a Llama model`,
  );
}

/** A string value; `fallback` when the key is absent, an error when it is absent without one or not a string. */
export function getString(file: GgufFile, key: string, fallback?: string): string {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  if (typeof v !== 'string')
    throw new EngineError('bad-gguf', `metadata "${key}" should be a string, got ${describeValue(v)}`);
  return v;
}

/**
 * A numeric value of any GGUF number type (u64/i64 bigints converted when exactly representable);
 * `fallback` when absent, an error when absent without one or not a number.
 */
export function getNumber(file: GgufFile, key: string, fallback?: number): number {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') {
    if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new EngineError('bad-gguf', `metadata "${key}" is ${v}, beyond ±(2^53 − 1)`);
    }
    return Number(v);
  }
  throw new EngineError('bad-gguf', `metadata "${key}" should be a number, got ${describeValue(v)}`);
}

/** An array value; `fallback` when absent, an error when absent without one or not an array. */
export function getArray(file: GgufFile, key: string, fallback?: GgufValue[]): GgufValue[] {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw missing(key);
  }
  if (!Array.isArray(v))
    throw new EngineError('bad-gguf', `metadata "${key}" should be an array, got ${describeValue(v)}`);
  return v;
}

/** A positive integer hyper-parameter. */
function positiveInt(file: GgufFile, key: string, fallback?: number): number {
  const n = getNumber(file, key, fallback);
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new EngineError('bad-gguf', `metadata "${key}" is ${n}; it must be a positive integer`);
  }
  return n;
}

/**
 * The Llama hyper-parameters of a GGUF file with `general.architecture = llama`, judged runnable:
 * the values are consistent with each other and every tensor the forward pass reads has the shape
 * and a type they imply. This is the one place a file is validated at load; the backends take the
 * tensors by role from `validateLlamaTensors`, which returns this check's result without redoing it.
 */
export function llamaConfigFromGguf(file: GgufFile): LlamaConfig {
  const config = Object.freeze(llamaHyperParameters(file));
  validated.set(config, { file, tensors: checkLlamaTensors(file, config) });
  return config;
}

/**
 * The hyper-parameters alone, checked for consistency but without judging the tensors: what
 * `inspect` reports for a file this version may not run (unsupported tensor types, a missing tensor).
 */
export function llamaHyperParameters(file: GgufFile): LlamaConfig {
  const arch = getString(file, 'general.architecture');
  if (arch !== 'llama') {
    throw new EngineError(
      'unsupported-model',
      `architecture ${quoteText(arch, 60)} is not supported; this app runs Llama 3 (architecture llama)`,
    );
  }
  const dim = positiveInt(file, 'llama.embedding_length');
  const nLayers = positiveInt(file, 'llama.block_count');
  const nHeads = positiveInt(file, 'llama.attention.head_count');
  const nKvHeads = positiveInt(file, 'llama.attention.head_count_kv', nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new EngineError(
      'bad-gguf',
      `llama.attention.head_count ${nHeads} is not a multiple of llama.attention.head_count_kv ${nKvHeads}`,
    );
  }
  let headDim: number;
  if (file.metadata.has('llama.attention.key_length')) {
    headDim = positiveInt(file, 'llama.attention.key_length');
  } else {
    if (dim % nHeads !== 0) {
      throw new EngineError(
        'bad-gguf',
        `llama.embedding_length ${dim} is not a multiple of llama.attention.head_count ${nHeads}, ` +
          'and llama.attention.key_length is absent',
      );
    }
    headDim = dim / nHeads;
  }
  const valueLength = positiveInt(file, 'llama.attention.value_length', headDim);
  if (valueLength !== headDim) {
    throw new EngineError(
      'unsupported-model',
      `llama.attention.value_length ${valueLength} differs from the key length ${headDim}; this engine needs them equal`,
    );
  }
  if (headDim % 2 !== 0) {
    throw new EngineError('unsupported-model', `head dimension ${headDim} is odd; RoPE rotates pairs`);
  }
  const ropeDims = positiveInt(file, 'llama.rope.dimension_count', headDim);
  if (ropeDims !== headDim) {
    throw new EngineError(
      'unsupported-model',
      `llama.rope.dimension_count ${ropeDims} differs from the head dimension ${headDim}; partial RoPE is not supported`,
    );
  }
  const ffnDim = positiveInt(file, 'llama.feed_forward_length');
  const normEps = getNumber(file, 'llama.attention.layer_norm_rms_epsilon');
  if (!(normEps > 0 && normEps < 1)) {
    throw new EngineError(
      'bad-gguf',
      `llama.attention.layer_norm_rms_epsilon is ${normEps}; expected in (0, 1)`,
    );
  }
  const ropeTheta = getNumber(file, 'llama.rope.freq_base', 10000);
  if (!(ropeTheta > 1 && Number.isFinite(ropeTheta))) {
    throw new EngineError(
      'bad-gguf',
      `llama.rope.freq_base is ${ropeTheta}; expected a finite number above 1`,
    );
  }
  const contextLength = positiveInt(file, 'llama.context_length');
  const vocabSize = vocabSizeOf(file);
  const names = new Set(file.tensors.map((t) => t.name));
  return {
    name: getString(file, 'general.name', 'llama'),
    vocabSize,
    dim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    ffnDim,
    normEps,
    ropeTheta,
    contextLength,
    tiedEmbeddings: !names.has('output.weight'),
    hasRopeFreqs: names.has('rope_freqs.weight'),
  };
}

/**
 * The vocabulary size: `llama.vocab_size`, else the length of `tokenizer.ggml.tokens`, else the rows
 * of `token_embd.weight`. When the file has both a size and a token list they must agree: an id
 * without a token would load, then fail mid-generation the first time the model samples it
 * (llama.cpp refuses such files too: its vocabulary is the token list, and the embedding must have
 * one row per token). `validateLlamaTensors` then holds the embedding and head rows to this size.
 */
function vocabSizeOf(file: GgufFile): number {
  let tokens: number | undefined;
  if (file.metadata.has('tokenizer.ggml.tokens')) {
    tokens = getArray(file, 'tokenizer.ggml.tokens').length;
    if (tokens < 1) throw new EngineError('bad-gguf', 'metadata "tokenizer.ggml.tokens" is empty');
  }
  if (file.metadata.has('llama.vocab_size')) {
    const n = positiveInt(file, 'llama.vocab_size');
    if (tokens !== undefined && n !== tokens) {
      throw new EngineError(
        'bad-gguf',
        `llama.vocab_size is ${n} but tokenizer.ggml.tokens lists ${tokens} tokens; every token id the ` +
          'model can produce needs a token, so the file is inconsistent: re-download or re-convert it',
      );
    }
    return n;
  }
  if (tokens !== undefined) return tokens;
  const embd = file.tensors.find((t) => t.name === 'token_embd.weight');
  if (embd && embd.dims.length === 2) return embd.dims[1];
  throw new EngineError(
    'bad-gguf',
    'cannot tell the vocabulary size: no llama.vocab_size, no tokenizer.ggml.tokens and no 2-D token_embd.weight',
  );
}

/** The Llama tensors of one file, by role. Dims are ggml `ne` (fastest first): a matrix is [cols, rows]. */
export interface LlamaTensors {
  tokenEmbd: TensorInfo; // [dim, vocab]
  outputNorm: TensorInfo; // [dim]
  /** The LM head: `output.weight`, or `token_embd.weight` when tied. */
  output: TensorInfo; // [dim, vocab]
  ropeFreqs?: TensorInfo; // [headDim / 2]
  layers: LlamaLayerTensors[]; // [nLayers]
}

export interface LlamaLayerTensors {
  attnNorm: TensorInfo; // [dim]
  wq: TensorInfo; // [dim, nHeads * headDim]
  wk: TensorInfo; // [dim, nKvHeads * headDim]
  wv: TensorInfo; // [dim, nKvHeads * headDim]
  wo: TensorInfo; // [nHeads * headDim, dim]
  ffnNorm: TensorInfo; // [dim]
  wGate: TensorInfo; // [dim, ffnDim]
  wUp: TensorInfo; // [dim, ffnDim]
  wDown: TensorInfo; // [ffnDim, dim]
}

/**
 * Throws unsupported-model when `t`'s type has no kernels here (Q2_K, Q3_K, the IQ1/IQ2/IQ3 types,
 * the ternary TQ types...), naming the type, the tensor and the llama-quantize presets that work.
 */
export function checkSupportedType(t: TensorInfo): void {
  if (!SUPPORTED_TYPES.has(t.type)) {
    const ok = [...SUPPORTED_TYPES.values()].map((tr) => tr.name).join(', ');
    throw new EngineError(
      'unsupported-model',
      `unsupported tensor type ${typeName(t.type)} in ${safeText(t.name, 100)}; this app runs ${ok} tensors: ` +
        `use a GGUF of the model made with one of the llama-quantize presets ${workingPresets().join(', ')}`,
    );
  }
}

/** The tensor check's result for each config `llamaConfigFromGguf` made, with the file it checked. */
const validated = new WeakMap<LlamaConfig, { file: GgufFile; tensors: LlamaTensors }>();

/**
 * The tensors a Llama forward pass reads, by role. For a config made by `llamaConfigFromGguf` from
 * this file that is the result of the check it ran; any other config (or file) is checked now.
 * Missing tensors, wrong shapes and unsupported types are EngineError('unsupported-model') naming
 * the tensor; embedding or head rows that differ from the vocabulary are 'bad-gguf'.
 */
export function validateLlamaTensors(file: GgufFile, config: LlamaConfig): LlamaTensors {
  const v = validated.get(config);
  return v && v.file === file ? v.tensors : checkLlamaTensors(file, config);
}

/**
 * Checks that every tensor a Llama forward pass reads exists with the expected dims and a
 * supported type, and returns them by role. Extra tensors are ignored.
 */
function checkLlamaTensors(file: GgufFile, config: LlamaConfig): LlamaTensors {
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const { dim, vocabSize, nHeads, nKvHeads, headDim, ffnDim } = config;
  const get = (name: string, dims: number[], rowPerToken = false): TensorInfo => {
    const t = byName.get(name);
    if (!t) {
      throw new EngineError(
        'unsupported-model',
        `tensor ${name} is missing (expected dims [${dims.join(', ')}]); the file is not a complete Llama model`,
      );
    }
    if (rowPerToken && t.dims.length === 2 && t.dims[0] === dim && t.dims[1] !== vocabSize) {
      throw new EngineError(
        'bad-gguf',
        `tensor ${name} has ${t.dims[1]} rows but the vocabulary has ${vocabSize} entries ` +
          '(llama.vocab_size, tokenizer.ggml.tokens); each row is one token id, so the file is ' +
          'inconsistent: re-download or re-convert it',
      );
    }
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      throw new EngineError(
        'unsupported-model',
        `tensor ${name} has dims [${t.dims.join(', ')}], expected [${dims.join(', ')}] for this config ` +
          `(dim ${dim}, ${nHeads} heads, ${nKvHeads} KV heads, head_dim ${headDim}, ffn ${ffnDim}, vocab ${vocabSize})`,
      );
    }
    checkSupportedType(t);
    return t;
  };
  const tokenEmbd = get('token_embd.weight', [dim, vocabSize], true);
  const outputNorm = get('output_norm.weight', [dim]);
  const output = byName.has('output.weight') ? get('output.weight', [dim, vocabSize], true) : tokenEmbd;
  const ropeFreqs = byName.has('rope_freqs.weight') ? get('rope_freqs.weight', [headDim / 2]) : undefined;
  const layers: LlamaLayerTensors[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const b = `blk.${l}.`;
    layers.push({
      attnNorm: get(`${b}attn_norm.weight`, [dim]),
      wq: get(`${b}attn_q.weight`, [dim, nHeads * headDim]),
      wk: get(`${b}attn_k.weight`, [dim, nKvHeads * headDim]),
      wv: get(`${b}attn_v.weight`, [dim, nKvHeads * headDim]),
      wo: get(`${b}attn_output.weight`, [nHeads * headDim, dim]),
      ffnNorm: get(`${b}ffn_norm.weight`, [dim]),
      wGate: get(`${b}ffn_gate.weight`, [dim, ffnDim]),
      wUp: get(`${b}ffn_up.weight`, [dim, ffnDim]),
      wDown: get(`${b}ffn_down.weight`, [ffnDim, dim]),
    });
  }
  if (byName.has(`blk.${config.nLayers}.attn_q.weight`)) {
    throw new EngineError(
      'unsupported-model',
      `tensor blk.${config.nLayers}.attn_q.weight exists but llama.block_count is ${config.nLayers}`,
    );
  }
  return { tokenEmbd, outputNorm, output, ropeFreqs, layers };
}
