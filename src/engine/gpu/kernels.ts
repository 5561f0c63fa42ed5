/**
 * Every kernel family of the engine, one module each beside its shaders/*.wgsl:
 *
 *   rmsnorm.ts      RMSNorm rows (attn_norm, ffn_norm, output_norm)
 *   rope.ts         RoPE (NORM pairing, θ, rope_freqs) fused with the KV-cache write (kv-cache.ts)
 *   attention.ts    causal GQA attention: `prefill`, `prefill_flash` and flash-decoding `decode_split` + `decode_reduce`
 *   attention_f16.ts  `prefill_flash_f16`: the flash prefill in packed f16 (opt-in, shader-f16)
 *   sampling.ts     argmax / temperature → top-k → top-p → draw with the CPU's u; token ids only
 *   elementwise.ts  `gather`: the last row of each sequence
 *   linear.ts       `linear_<type>`: mat-vec (decode) and tiled mat-mat (prefill) per weight layout
 *   embedding.ts    `embedding_<type>`: token rows of the same weight layouts
 *
 * Each exports `KernelSpec`s (check/registry.ts): the WGSL source and a self-check against the CPU
 * reference. The kernel tests, `--custom-ops-path` and the load-time self-check run the same
 * checks. Pipelines and modules: pipelines.ts. Binding contracts: each .wgsl header and
 * docs/kernels.md.
 */
import type { GgufFile } from '../gguf/types';
import { attentionSpec } from './attention';
import { attentionF16Spec } from './attention_f16';
import type { KernelRegistry, KernelSpec } from './check/registry';
import { embeddingKernelName, registerEmbeddingKernels } from './embedding';
import { elementwiseSpec } from './elementwise';
import { linearKernelName, registerLinearKernels } from './linear';
import { rmsnormSpec } from './rmsnorm';
import { ropeSpec } from './rope';
import { samplingSpec } from './sampling';
import { gpuTypeFor, type WeightEncoding } from './weights';

/** The kernels that do not depend on a weight type. */
export const CORE_KERNELS: readonly KernelSpec[] = [
  rmsnormSpec,
  ropeSpec,
  attentionSpec,
  samplingSpec,
  elementwiseSpec,
];

/** Every built-in kernel of the engine, registered once (idempotent: skips what is there). */
export function registerAllKernels(registry: KernelRegistry): KernelRegistry {
  const have = new Set(registry.names());
  for (const spec of CORE_KERNELS) if (!have.has(spec.name)) registry.register(spec);
  if (!have.has(attentionF16Spec.name)) registry.register(attentionF16Spec);
  if (!have.has('linear_q4_0')) registerLinearKernels(registry);
  if (!have.has('embedding_q4_0')) registerEmbeddingKernels(registry);
  return registry;
}

/**
 * The registry names of the kernels a model runs: the core kernels, `embedding_<type>` of
 * token_embd and `linear_<type>` of every other matrix (and of token_embd when the head is tied),
 * each type as uploaded under `encoding`; `attention_f16` with the f16 load option.
 */
export function modelKernelNames(file: GgufFile, encoding?: WeightEncoding, f16 = false): string[] {
  const names = new Set(CORE_KERNELS.map((k) => k.name));
  if (f16) names.add(attentionF16Spec.name);
  const tied = !file.tensors.some((t) => t.name === 'output.weight');
  for (const t of file.tensors) {
    if (t.dims.length < 2 || t.dims[1] === 1) continue; // norms, rope_freqs
    const type = gpuTypeFor(t.type, encoding);
    if (t.name === 'token_embd.weight') {
      names.add(embeddingKernelName(type));
      if (!tied) continue;
    }
    names.add(linearKernelName(type));
  }
  return [...names];
}
