/**
 * What a GGUF file is and whether this version can run it, from its header alone: the CLI's
 * `inspect` command and the page's panel before a download both call `inspectModel`.
 *
 * Only the header is read (readGguf: 1 MiB first, doubling until the header ends; a Range request
 * per read for a URL), never a weight. A file this version cannot run is still described: the
 * reasons are listed in `problems`, each the message loading would fail with.
 */
import { EngineError } from './errors';
import { checkSupportedType, llamaConfigFromGguf, llamaHyperParameters } from './gguf/config';
import { readGguf } from './gguf/reader';
import { type GgufFile, type LlamaConfig, SUPPORTED_TYPES, typeName } from './gguf/types';
import { type BufferLimits, estimateGpuMemory, resolveGpuLimits } from './memory';
import type { RandomAccessSource } from './source';
import { Llama3Tokenizer } from './tokenizer';

/** llama.cpp's `general.file_type` (enum llama_ftype): the preset a file was quantized with. */
const FILE_TYPE_NAMES: Readonly<Record<number, string>> = {
  0: 'F32',
  1: 'F16',
  2: 'Q4_0',
  3: 'Q4_1',
  7: 'Q8_0',
  8: 'Q5_0',
  9: 'Q5_1',
  10: 'Q2_K',
  11: 'Q3_K_S',
  12: 'Q3_K_M',
  13: 'Q3_K_L',
  14: 'Q4_K_S',
  15: 'Q4_K_M',
  16: 'Q5_K_S',
  17: 'Q5_K_M',
  18: 'Q6_K',
  19: 'IQ2_XXS',
  20: 'IQ2_XS',
  21: 'Q2_K_S',
  22: 'IQ3_XS',
  23: 'IQ3_XXS',
  24: 'IQ1_S',
  25: 'IQ4_NL',
  26: 'IQ3_S',
  27: 'IQ3_M',
  28: 'IQ2_S',
  29: 'IQ2_M',
  30: 'IQ4_XS',
  31: 'IQ1_M',
  32: 'BF16',
  36: 'TQ1_0',
  37: 'TQ2_0',
  38: 'MXFP4_MOE',
};

/** The tensors of one ggml type in a file. */
export interface TensorTypeShare {
  /** ggml's name: "q4_0", "q6_K", "f32". */
  type: string;
  tensors: number;
  /** Weights (elements) of this type. */
  parameters: number;
  /** Bytes in the file. */
  bytes: number;
  /** This version has kernels for it. */
  supported: boolean;
  /** The first tensor of this type, by file order (e.g. "output.weight"). */
  example: string;
}

/** The Llama shapes, when the header has consistent Llama hyper-parameters. */
export interface InspectedShapes {
  vocabSize: number;
  dim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  ffnDim: number;
  ropeTheta: number;
  /** No output.weight: the head is the embedding (Llama 3.2 1B/3B). */
  tiedEmbeddings: boolean;
  /** rope_freqs.weight present (Llama 3.1/3.2 long-context RoPE scaling). */
  ropeFreqs: boolean;
}

export interface ModelInspection {
  /** The source's label (file name or URL without its query). */
  source: string;
  fileBytes: number;
  /** Bytes before the tensor data: what was read. */
  headerBytes: number;
  ggufVersion: number;
  /** `general.name`, or "" when absent. */
  name: string;
  /** `general.architecture`, or "" when absent. */
  architecture: string;
  /** The llama-quantize preset the file says it is ("Q4_K_M"), when it says. */
  fileType?: string;
  /** Undefined when the hyper-parameters are missing or inconsistent (see `problems`). */
  shapes?: InspectedShapes;
  /** Total weights over every tensor. */
  parameters: number;
  tensorCount: number;
  /** One entry per type, most bytes first. */
  tensorTypes: TensorTypeShare[];
  /** `<arch>.context_length`: positions the model was trained for. */
  contextLength?: number;
  /** The file carries `tokenizer.chat_template`. */
  chatTemplate: boolean;
  /** GPU memory a load at `maxSeqLen` positions × `maxBatch` sequences needs (weights, f16 KV, activations). */
  gpu?: { bytes: number; weightBytes: number; kvBytes: number; maxSeqLen: number; maxBatch: number };
  /** This version loads and runs it: `problems` is empty. */
  runnable: boolean;
  /** Why it cannot run, each as loading would say it. */
  problems: string[];
}

export interface InspectOptions {
  /** Positions for the GPU memory estimate (default: the model's context length). */
  maxSeqLen?: number;
  /** Sequences for the GPU memory estimate (default 1). */
  maxBatch?: number;
  /**
   * The GPU's buffer limits: without maxSeqLen and maxBatch, the estimate is for the context and
   * batch a GPU load with these limits picks (resolveGpuLimits), not the model's own context.
   */
  limits?: BufferLimits;
}

/** Reads `source`'s header and describes the model (see ModelInspection). */
export async function inspectModel(
  source: RandomAccessSource,
  opts: InspectOptions = {},
): Promise<ModelInspection> {
  const file = await readGguf(source);
  return describeGguf(file, source.name, opts);
}

/** The description of a parsed header (inspectModel without the read). */
export async function describeGguf(
  file: GgufFile,
  sourceName: string,
  opts: InspectOptions = {},
): Promise<ModelInspection> {
  const problems: string[] = [];
  const note = (e: unknown) => {
    if (!(e instanceof EngineError)) throw e;
    if (!problems.includes(e.message)) problems.push(e.message);
  };
  const text = (key: string) => {
    const v = file.metadata.get(key);
    return typeof v === 'string' ? v : undefined;
  };
  const architecture = text('general.architecture') ?? '';
  const ftype = file.metadata.get('general.file_type');
  const fileType = typeof ftype === 'number' ? (FILE_TYPE_NAMES[ftype] ?? `file type ${ftype}`) : undefined;
  const ctx = file.metadata.get(`${architecture}.context_length`);
  const contextLength = typeof ctx === 'number' || typeof ctx === 'bigint' ? Number(ctx) : undefined;

  // Tensor-type mix; each unsupported type is one problem, in loading's own words.
  const byType = new Map<number, TensorTypeShare>();
  let parameters = 0;
  for (const t of file.tensors) {
    parameters += t.elements;
    let share = byType.get(t.type);
    if (!share) {
      share = {
        type: typeName(t.type),
        tensors: 0,
        parameters: 0,
        bytes: 0,
        supported: SUPPORTED_TYPES.has(t.type),
        example: t.name,
      };
      byType.set(t.type, share);
      try {
        checkSupportedType(t);
      } catch (e) {
        note(e);
      }
    }
    share.tensors++;
    share.parameters += t.elements;
    share.bytes += t.byteLength;
  }
  const tensorTypes = [...byType.values()].sort((a, b) => b.bytes - a.bytes);

  let config: LlamaConfig | undefined;
  try {
    config = llamaHyperParameters(file);
    llamaConfigFromGguf(file); // the tensors: names, shapes, types (a type problem is noted once)
  } catch (e) {
    note(e);
  }
  try {
    Llama3Tokenizer.fromGguf(file.metadata);
  } catch (e) {
    note(e);
  }

  let gpu: ModelInspection['gpu'];
  if (config) {
    // With the device's limits (and no context asked for): what a GPU load here would pick.
    let picked: { maxBatch: number; maxSeqLen: number } | undefined;
    if (opts.limits && opts.maxSeqLen === undefined && opts.maxBatch === undefined) {
      try {
        picked = resolveGpuLimits(file, config, { limits: opts.limits });
      } catch (e) {
        note(e);
      }
    }
    const maxSeqLen = opts.maxSeqLen ?? picked?.maxSeqLen ?? config.contextLength;
    const maxBatch = opts.maxBatch ?? picked?.maxBatch ?? 1;
    const estimate = estimateGpuMemory(file, config, { maxSeqLen, maxBatch });
    gpu = {
      bytes: estimate.total,
      weightBytes: file.tensors.reduce((a, t) => a + t.byteLength, 0),
      kvBytes: estimate.kvCache,
      maxSeqLen,
      maxBatch,
    };
  }

  return {
    source: sourceName,
    fileBytes: file.fileSize ?? file.dataOffset + file.tensors.reduce((a, t) => a + t.byteLength, 0),
    headerBytes: file.dataOffset,
    ggufVersion: file.version,
    name: text('general.name') ?? '',
    architecture,
    fileType,
    shapes: config && {
      vocabSize: config.vocabSize,
      dim: config.dim,
      nLayers: config.nLayers,
      nHeads: config.nHeads,
      nKvHeads: config.nKvHeads,
      headDim: config.headDim,
      ffnDim: config.ffnDim,
      ropeTheta: config.ropeTheta,
      tiedEmbeddings: config.tiedEmbeddings,
      ropeFreqs: config.hasRopeFreqs,
    },
    parameters,
    tensorCount: file.tensors.length,
    tensorTypes,
    contextLength,
    chatTemplate: typeof file.metadata.get('tokenizer.chat_template') === 'string',
    gpu,
    runnable: problems.length === 0,
    problems,
  };
}
