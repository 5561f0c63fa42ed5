/**
 * Embedding lookup on the GPU: out[t, :] = W[tokens[t], :] as f32, reading the same weight layouts
 * as the linear kernels (a tied token_embd is one GpuWeight for both). Kernels `embedding_<type>`
 * are shaders/embedding_body.wgsl behind the type's decoder; binding contract in that file's header.
 */
import body from '../../../shaders/embedding_body.wgsl?raw';
import { EngineError } from '../errors';
import { type GgmlType, SUPPORTED_TYPES, typeName } from '../gguf/types';
import type { GpuContext } from './device';
import {
  DECODERS,
  decoderSource,
  fusionPlaceholders,
  type ModuleProvider,
  partMeta,
  randomWeight,
  weightKernelLayout,
  weightPipeline,
} from './linear';
import { shaderModule } from './pipelines';
import type { CheckResult, KernelRegistry, KernelSpec } from './check/registry';
import {
  createStorage,
  createUniform,
  makeRng,
  poison,
  randomInts,
  readF32,
  runCases,
} from './check/testing';
import { destroyWeight, GPU_LAYOUTS, type GpuWeight, UNIT, uploadWeight, weightPartEntries } from './weights';

export function embeddingKernelName(type: GgmlType): string {
  const layout = GPU_LAYOUTS.get(type);
  if (!layout) throw new EngineError('unsupported-model', `tensor type ${typeName(type)} has no GPU kernel`);
  return `embedding_${layout.kernel}`;
}

export interface EmbeddingIO {
  /** u32 [maxTokens] token ids. */
  tokens: GPUBuffer;
  /** f32 [maxTokens, cols] at outOffset bytes (a multiple of 16). */
  out: GPUBuffer;
  /** Uniform; u32 at byte 0 = n_tokens. */
  params: GPUBuffer;
  maxTokens: number;
  outOffset?: number;
}

export class EmbeddingLookup {
  readonly weight: GpuWeight;
  private readonly pipeline: GPUComputePipeline;
  private readonly bindGroups: GPUBindGroup[] = [];
  private readonly metas: GPUBuffer[] = [];
  private readonly maxTokens: number;

  constructor(
    ctx: Pick<GpuContext, 'device' | 'limits'>,
    registry: ModuleProvider | KernelRegistry,
    weight: GpuWeight,
    io: EmbeddingIO,
    opts: { label?: string } = {},
  ) {
    const device = ctx.device;
    const label = opts.label ?? `${weight.name}.lookup`;
    this.weight = weight;
    this.maxTokens = io.maxTokens;
    const outOffset = io.outOffset ?? 0;
    const need = outOffset + io.maxTokens * weight.cols * 4;
    if (outOffset % 16 !== 0 || io.out.size < need || io.tokens.size < io.maxTokens * 4) {
      throw new EngineError(
        'bad-argument',
        `${label}: out needs ${need} bytes at a 16-byte offset (has ${io.out.size}), tokens ${io.maxTokens * 4} (has ${io.tokens.size})`,
      );
    }
    const name = embeddingKernelName(weight.type);
    this.pipeline = weightPipeline(device, registry.module(device, name), 'embed', {}, name);
    const { bgl } = weightKernelLayout(device);
    for (const [i, part] of weight.parts.entries()) {
      const meta = partMeta(device, `${label}.meta[${i}]`, {
        rows: part.rows,
        rowStart: part.rowStart,
        units: weight.cols / UNIT,
        yStride: weight.cols,
        xOffset: 0,
        yOffset: outOffset / 4,
      });
      this.metas.push(meta);
      this.bindGroups.push(
        device.createBindGroup({
          label: `${label}[${i}]`,
          layout: bgl,
          entries: [
            ...weightPartEntries(part),
            { binding: 2, resource: { buffer: io.tokens } },
            { binding: 3, resource: { buffer: io.out } },
            { binding: 4, resource: { buffer: io.params } },
            { binding: 5, resource: { buffer: meta } },
            ...fusionPlaceholders(device),
          ],
        }),
      );
    }
  }

  /** Free the per-part uniforms (the weight and the io buffers belong to the caller). */
  destroy(): void {
    for (const m of this.metas) m.destroy();
  }

  encode(pass: GPUComputePassEncoder, nTokens: number): void {
    if (nTokens < 1 || nTokens > this.maxTokens) {
      throw new EngineError(
        'bad-argument',
        `${this.weight.name}: ${nTokens} tokens, 1..${this.maxTokens} allowed`,
      );
    }
    pass.setPipeline(this.pipeline);
    for (const bg of this.bindGroups) {
      pass.setBindGroup(0, bg);
      pass.dispatchWorkgroups(Math.ceil(this.weight.cols / UNIT / 64), nTokens);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Self-check
// ---------------------------------------------------------------------------------------------

export interface EmbeddingCase {
  rows: number;
  cols: number;
  /** Token ids to look up (repeats and any order allowed); random when absent. */
  tokens?: number[];
  nTokens: number;
  maxBindingSize?: number;
}

export async function runEmbeddingCase(
  ctx: Pick<GpuContext, 'device' | 'limits'>,
  source: string,
  module: GPUShaderModule,
  type: GgmlType,
  c: EmbeddingCase,
  seed: number,
): Promise<{ got: Float32Array; ref: Float32Array }> {
  const { device } = ctx;
  const rng = makeRng(seed);
  const { bytes, values } = randomWeight(type, c.rows, c.cols, rng);
  const weight = uploadWeight(ctx, 'check.embd', type, bytes, c.rows, c.cols, {
    maxBindingSize: c.maxBindingSize,
  });
  const ids = c.tokens ? Uint32Array.from(c.tokens) : randomInts(c.nTokens, rng, c.rows);
  const maxTokens = ids.length + 1;
  const tokens = createStorage(device, Uint32Array.from([...ids, 0]), 'check.tokens');
  const out = createStorage(device, maxTokens * c.cols * 4, 'check.out');
  poison(device, out);
  const params = createUniform(device, [ids.length], 'check.params');
  const lookup = new EmbeddingLookup(ctx, { module: () => module, source: () => source }, weight, {
    tokens,
    out,
    params,
    maxTokens,
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  lookup.encode(pass, ids.length);
  pass.end();
  device.queue.submit([enc.finish()]);
  const all = await readF32(device, out);
  for (const b of [tokens, out, params]) b.destroy();
  lookup.destroy();
  destroyWeight(weight);
  const ref = new Float32Array(ids.length * c.cols);
  ids.forEach((id, t) => {
    ref.set(values.subarray(id * c.cols, (id + 1) * c.cols), t * c.cols);
  });
  const got = all.slice(0, ids.length * c.cols);
  // The slack token row must stay poisoned.
  if (!all.subarray(ids.length * c.cols, maxTokens * c.cols).every(Number.isNaN)) got[0] = Number.NaN;
  return { got, ref };
}

export async function checkEmbedding(
  device: GPUDevice,
  source: string,
  type: GgmlType,
  cases?: EmbeddingCase[],
): Promise<CheckResult> {
  // K-quant and iq4_xs rows are whole 256-blocks.
  const kQuant = SUPPORTED_TYPES.get(type)?.blockSize === 256;
  const cols = kQuant ? [256, 512] : [32, 96];
  const table: EmbeddingCase[] = cases ?? [
    { rows: 1, cols: cols[0], nTokens: 1 },
    { rows: 17, cols: cols[1], tokens: [16, 3, 3, 0, 9, 16], nTokens: 6 },
    { rows: 33, cols: cols[0], nTokens: 17 },
    // More than 64 units per row: a second workgroup along x.
    { rows: 3, cols: kQuant ? 2304 : 2080, tokens: [2, 0], nTokens: 2 },
  ];
  const module = shaderModule(device, source, `check:${embeddingKernelName(type)}`);
  const ctx = { device, limits: device.limits };
  let seed = 100;
  return runCases(
    table,
    (c) => runEmbeddingCase(ctx, source, module, type, c, seed++),
    0,
    (c) =>
      `${embeddingKernelName(type)} rows=${c.rows} cols=${c.cols} tokens=${c.tokens ? `[${c.tokens}]` : `${c.nTokens} random`}${c.maxBindingSize ? ` maxBindingSize=${c.maxBindingSize}` : ''}`,
  );
}

export const EMBEDDING_KERNELS: KernelSpec[] = [...DECODERS.keys()].map((type) => ({
  name: embeddingKernelName(type),
  source: `${decoderSource(type)}\n${body}`,
  check: (device, source) => checkEmbedding(device, source, type),
  // One pipeline for every case (no override constants): repeated and unordered ids.
  quickCheck: (device, source) =>
    checkEmbedding(device, source, type, [
      {
        rows: 17,
        cols: SUPPORTED_TYPES.get(type)?.blockSize === 256 ? 512 : 96,
        tokens: [16, 3, 3, 0, 9, 16],
        nTokens: 6,
      },
    ]),
}));

export function registerEmbeddingKernels(registry: KernelRegistry): void {
  for (const spec of EMBEDDING_KERNELS) registry.register(spec);
}
