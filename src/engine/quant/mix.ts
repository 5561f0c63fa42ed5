/**
 * The tensor types llama-quantize gives a Llama model under its K-quant presets (llama.cpp
 * src/llama-quant.cpp `llama_tensor_get_type`, for the llama architecture without experts and
 * without an importance matrix), so that test models are mixed the way real Q4_K_M / Q5_K_M /
 * Q4_K_S / Q5_K_S files are:
 *   - every matrix gets the preset's base type (q4_K or q5_K);
 *   - output.weight (token_embd.weight when the embedding is tied) gets q6_K;
 *   - Q4_K_M / Q5_K_M: attn_v and ffn_down of the "more bits" layers get q6_K (use_more_bits: the
 *     first and last eighth of the layers and every third one between);
 *   - Q4_K_S: attn_v of layers 0..3 and ffn_down of the first eighth get q5_K;
 *   - a matrix whose rows (ggml ne[0]) are not a multiple of 256 falls back: q4_K → q5_0,
 *     q5_K → q5_1, q6_K → q8_0.
 */
import { EngineError } from '../errors';
import { GgmlType, tensorBytes } from '../gguf/types';

export type KQuantPreset = 'Q4_K_M' | 'Q5_K_M' | 'Q4_K_S' | 'Q5_K_S';

/** llama.cpp's general.file_type (LLAMA_FTYPE_MOSTLY_*) of each preset. */
export const K_PRESET_FILE_TYPE: Readonly<Record<KQuantPreset, number>> = {
  Q4_K_S: 14,
  Q4_K_M: 15,
  Q5_K_S: 16,
  Q5_K_M: 17,
};

/** llama.cpp's use_more_bits(i_layer, n_layers). */
export function moreBitsLayer(layer: number, nLayers: number): boolean {
  const eighth = Math.floor(nLayers / 8);
  return layer < eighth || layer >= Math.floor((7 * nLayers) / 8) || (layer - eighth) % 3 === 2;
}

/**
 * The type of tensor `name` (GGUF name, e.g. "blk.1.attn_v.weight") with `cols` values per row in a
 * model of `nLayers` layers under `preset`. `tied`: token_embd.weight is also the output head.
 * Norms and other vectors are not quantized (F32) and are not asked about.
 */
export function kQuantTensorType(
  preset: KQuantPreset,
  name: string,
  cols: number,
  nLayers: number,
  tied: boolean,
): GgmlType {
  const base = preset.startsWith('Q4') ? GgmlType.Q4_K : GgmlType.Q5_K;
  const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
  let type = base;
  if (name === 'output.weight' || (tied && name === 'token_embd.weight')) {
    type = GgmlType.Q6_K;
  } else if (name.endsWith('attn_v.weight')) {
    if ((preset === 'Q4_K_M' || preset === 'Q5_K_M') && moreBitsLayer(layer, nLayers)) type = GgmlType.Q6_K;
    else if (preset === 'Q4_K_S' && layer < 4) type = GgmlType.Q5_K;
  } else if (name.endsWith('ffn_down.weight')) {
    if ((preset === 'Q4_K_M' || preset === 'Q5_K_M') && moreBitsLayer(layer, nLayers)) type = GgmlType.Q6_K;
    else if (preset === 'Q4_K_S' && layer < Math.floor(nLayers / 8)) type = GgmlType.Q5_K;
  }
  if (cols % 256 !== 0) {
    // llama-quantize's fallback for rows that are not whole 256-blocks.
    if (type === GgmlType.Q4_K) return GgmlType.Q5_0;
    if (type === GgmlType.Q5_K) return GgmlType.Q5_1;
    if (type === GgmlType.Q6_K) return GgmlType.Q8_0;
    throw new EngineError('bad-argument', `kQuantTensorType: no fallback for ${name}`);
  }
  return type;
}

/** The shapes that fix a Llama file's tensor bytes (docs/models.md, "Shapes"). */
export interface LlamaShape {
  nLayers: number;
  dim: number;
  nKvHeads: number;
  headDim: number;
  ffnDim: number;
  vocab: number;
  /** The head is token_embd.weight (no output.weight), as in Llama 3.2. */
  tied: boolean;
  /** The file carries rope_freqs.weight (headDim / 2 F32 factors), as Llama 3.1 / 3.2 do. */
  ropeFreqs: boolean;
}

/**
 * Bytes of every tensor of a Llama file of `shape` written by llama-quantize with `preset`: Q4_0
 * (every matrix q4_0, the head q6_K) or a K-quant mix (kQuantTensorType); norms and rope_freqs F32.
 * The file adds its header (tokenizer and other metadata, ≈ 7.5 MB for Llama 3's vocabulary) and
 * alignment padding (< 32 bytes per tensor).
 */
export function llamaTensorBytes(shape: LlamaShape, preset: KQuantPreset | 'Q4_0'): number {
  const { nLayers, dim, ffnDim, vocab, tied } = shape;
  const kvDim = shape.nKvHeads * shape.headDim;
  const typeOf = (name: string, cols: number): GgmlType => {
    if (preset !== 'Q4_0') return kQuantTensorType(preset, name, cols, nLayers, tied);
    return name === 'output.weight' || (tied && name === 'token_embd.weight') ? GgmlType.Q6_K : GgmlType.Q4_0;
  };
  // [name, cols (ggml ne[0]), rows]
  const matrices: [string, number, number][] = [['token_embd.weight', dim, vocab]];
  if (!tied) matrices.push(['output.weight', dim, vocab]);
  for (let l = 0; l < nLayers; l++) {
    const p = `blk.${l}.`;
    matrices.push(
      [`${p}attn_q.weight`, dim, dim],
      [`${p}attn_k.weight`, dim, kvDim],
      [`${p}attn_v.weight`, dim, kvDim],
      [`${p}attn_output.weight`, dim, dim],
      [`${p}ffn_gate.weight`, dim, ffnDim],
      [`${p}ffn_up.weight`, dim, ffnDim],
      [`${p}ffn_down.weight`, ffnDim, dim],
    );
  }
  let bytes = 0;
  for (const [name, cols, rows] of matrices) bytes += tensorBytes(typeOf(name, cols), cols * rows);
  const f32Values = (2 * nLayers + 1) * dim + (shape.ropeFreqs ? shape.headDim / 2 : 0);
  return bytes + 4 * f32Values;
}
