/**
 * Linear layers on the GPU: y[t, r] (op)= Σ_c W[r, c] · x[t, c] for every weight layout.
 *
 * Kernels `linear_<type>` (type = q4_0, q8_0, q6_k, f16, bf16, f32) are shaders/linear_body.wgsl
 * behind that type's decoder (shaders/linear_decode_<type>.wgsl). Each has two entry points:
 * `matvec` for n_tokens ≤ 8 (decode) and `matmul` (tiled, prefill); the epilogue is the Meta uniform
 * part.epilogue. Binding contract: see the header of shaders/linear_body.wgsl and docs/kernels.md.
 *
 * Axis legend: T = tokens in this step (≤ maxTokens), R = weight rows, C = weight cols, F = SwiGLU
 * features (R = 2F).
 */
import bf16Decode from '../../../shaders/linear_decode_bf16.wgsl?raw';
import f16Decode from '../../../shaders/linear_decode_f16.wgsl?raw';
import f32Decode from '../../../shaders/linear_decode_f32.wgsl?raw';
import q4Decode from '../../../shaders/linear_decode_q4_0.wgsl?raw';
import q6kDecode from '../../../shaders/linear_decode_q6_k.wgsl?raw';
import q8Decode from '../../../shaders/linear_decode_q8_0.wgsl?raw';
import body from '../../../shaders/linear_body.wgsl?raw';
import subgroupMatvec from '../../../shaders/linear_matvec_subgroups.wgsl?raw';
import { EngineError } from '../errors';
import { GgmlType, typeName } from '../gguf/types';
import { quantize } from '../quant/quantize';
import { dequantize, matVec, silu } from '../reference/ops';
import type { GpuContext } from './device';
import type { CheckResult, KernelRegistry, KernelSpec } from './registry';
import { createStorage, createUniform, makeRng, poison, randomFloats, readF32, runCases } from './testing';
import {
  destroyWeight,
  GPU_LAYOUTS,
  type GpuWeight,
  type UploadOptions,
  UNIT,
  uploadWeight,
  weightPartEntries,
} from './weights';

export type Epilogue = 'store' | 'accumulate' | 'swiglu';
/** matvec: workgroup-tree reduction; matvec_sg: subgroup reduction; matmul: tiled prefill. */
export type LinearPath = 'matvec' | 'matvec_sg' | 'matmul';
const EPILOGUE_CODE: Record<Epilogue, number> = { store: 0, accumulate: 1, swiglu: 2 };
/** Largest n_tokens the mat-vec path takes; more tokens go through the tiled mat-mat. */
export const MATVEC_MAX_TOKENS = 8;
/** Mat-vec tuning (WGSL overrides): workgroup size and the most threads per row pair. */
const MATVEC_WG = 128;
const MATVEC_MAX_TPR = 32;

/**
 * Threads per row pair for rows of `units` 32-weight units: the largest power of two ≤ units, at
 * most 32. Real models have ≥ 64 units per row (dim ≥ 2048) and get 32; a narrow matrix (dim 256:
 * 8 units) would otherwise leave 24 of 32 lanes idle in every row pair, and its vocabulary-sized
 * head would need 4× the workgroups.
 */
export function matvecThreadsPerRow(units: number): number {
  let tpr = 1;
  while (tpr * 2 <= Math.min(units, MATVEC_MAX_TPR)) tpr *= 2;
  return tpr;
}

/** The decoder WGSL of each GPU layout type (shared with the embedding kernels). */
export const DECODERS: ReadonlyMap<GgmlType, string> = new Map([
  [GgmlType.Q4_0, q4Decode],
  [GgmlType.Q8_0, q8Decode],
  [GgmlType.Q6_K, q6kDecode],
  [GgmlType.F16, f16Decode],
  [GgmlType.BF16, bf16Decode],
  [GgmlType.F32, f32Decode],
]);

export function linearKernelName(type: GgmlType): string {
  const layout = GPU_LAYOUTS.get(type);
  if (!layout) throw new EngineError('unsupported-model', `tensor type ${typeName(type)} has no GPU kernel`);
  return `linear_${layout.kernel}`;
}

/** Where a Linear gets its shader: a KernelRegistry, or a fixed source and module (checks). */
export interface ModuleProvider {
  module(device: GPUDevice, name: string): GPUShaderModule;
  source(name: string): string;
}

const subgroupModules = new WeakMap<GPUDevice, Map<string, GPUShaderModule>>();

/**
 * The subgroup variant of a linear kernel: `enable subgroups;` + the kernel (built-in or custom) +
 * the `matvec_sg` entry point. Compiled only on devices with the subgroups feature.
 */
export function subgroupVariant(device: GPUDevice, source: string, label: string): GPUShaderModule {
  let perDevice = subgroupModules.get(device);
  if (!perDevice) {
    perDevice = new Map();
    subgroupModules.set(device, perDevice);
  }
  let m = perDevice.get(source);
  if (!m) {
    m = device.createShaderModule({
      code: `enable subgroups;\n${source}\n${subgroupMatvec}`,
      label: `${label}+subgroups`,
    });
    perDevice.set(source, m);
  }
  return m;
}

// Pipelines are cached per shader module: 32 layers of the same type share them.
const pipelineCache = new WeakMap<GPUShaderModule, Map<string, GPUComputePipeline>>();
const layoutCache = new WeakMap<GPUDevice, { bgl: GPUBindGroupLayout; layout: GPUPipelineLayout }>();

/** The one bind group layout of the linear and embedding kernels (bindings 0–5). */
export function weightKernelLayout(device: GPUDevice): {
  bgl: GPUBindGroupLayout;
  layout: GPUPipelineLayout;
} {
  let l = layoutCache.get(device);
  if (!l) {
    const ro = { visibility: GPUShaderStage.COMPUTE, buffer: { type: 'read-only-storage' as const } };
    const bgl = device.createBindGroupLayout({
      label: 'weight-kernel',
      entries: [
        { binding: 0, ...ro },
        { binding: 1, ...ro },
        { binding: 2, ...ro },
        { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 4, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
        { binding: 5, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ],
    });
    l = { bgl, layout: device.createPipelineLayout({ bindGroupLayouts: [bgl], label: 'weight-kernel' }) };
    layoutCache.set(device, l);
  }
  return l;
}

export function cachedPipeline(
  device: GPUDevice,
  module: GPUShaderModule,
  entryPoint: string,
  constants: Record<string, number>,
  label: string,
): GPUComputePipeline {
  let perModule = pipelineCache.get(module);
  if (!perModule) {
    perModule = new Map();
    pipelineCache.set(module, perModule);
  }
  const key = `${entryPoint}:${JSON.stringify(constants)}`;
  let p = perModule.get(key);
  if (!p) {
    p = device.createComputePipeline({
      label,
      layout: weightKernelLayout(device).layout,
      compute: { module, entryPoint, constants },
    });
    perModule.set(key, p);
  }
  return p;
}

/** The 8-u32 Meta uniform of a part (see linear_body.wgsl). */
export function partMeta(
  device: GPUDevice,
  label: string,
  m: {
    rows: number;
    rowStart: number;
    units: number;
    yStride: number;
    xOffset: number;
    yOffset: number;
    epilogue?: number;
  },
): GPUBuffer {
  const words = new Uint32Array([
    m.rows,
    m.rowStart,
    m.units,
    m.yStride,
    m.xOffset,
    m.yOffset,
    m.epilogue ?? 0,
    0,
  ]);
  const buffer = device.createBuffer({
    label,
    size: 32,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, words);
  return buffer;
}

export interface LinearIO {
  /** f32 [maxTokens, cols] at xOffset bytes (a multiple of 16). */
  x: GPUBuffer;
  /** f32 [maxTokens, rows] (swiglu: [maxTokens, rows / 2]) at yOffset bytes. */
  y: GPUBuffer;
  /** Uniform; u32 at byte 0 = n_tokens. */
  params: GPUBuffer;
  maxTokens: number;
  xOffset?: number;
  yOffset?: number;
}

export class Linear {
  readonly weight: GpuWeight;
  readonly epilogue: Epilogue;
  /** Output columns per token: rows, or F = rows / 2 for swiglu. */
  readonly outCols: number;
  private readonly matvec: GPUComputePipeline;
  /** The subgroup-reduction mat-vec, where the device has subgroups. */
  private readonly matvecSg: GPUComputePipeline | undefined;
  private readonly matmul: GPUComputePipeline;
  private readonly groups: { bindGroup: GPUBindGroup; rows: number; meta: GPUBuffer }[] = [];
  private readonly maxTokens: number;
  private readonly maxWorkgroups: number;
  /** Mat-vec threads per row pair (matvecThreadsPerRow of the weight's units). */
  private readonly tpr: number;

  constructor(
    ctx: Pick<GpuContext, 'device' | 'limits'> & { features?: GpuContext['features'] },
    registry: ModuleProvider | KernelRegistry,
    weight: GpuWeight,
    io: LinearIO,
    opts: { epilogue?: Epilogue; label?: string } = {},
  ) {
    const device = ctx.device;
    const label = opts.label ?? weight.name;
    this.weight = weight;
    this.epilogue = opts.epilogue ?? 'store';
    this.maxTokens = io.maxTokens;
    this.maxWorkgroups = ctx.limits.maxComputeWorkgroupsPerDimension;
    const swiglu = this.epilogue === 'swiglu';
    if (swiglu && (weight.rows % 2 !== 0 || weight.parts.length !== 1)) {
      throw new EngineError(
        'gpu-limits',
        `${label}: a SwiGLU weight must be one buffer of [gate; up] rows (${weight.rows} rows in ${weight.parts.length} parts); this GPU's binding limit is too small for it`,
      );
    }
    this.outCols = swiglu ? weight.rows / 2 : weight.rows;
    const xOffset = io.xOffset ?? 0;
    const yOffset = io.yOffset ?? 0;
    if (xOffset % 16 !== 0 || yOffset % 4 !== 0) {
      throw new EngineError('bad-argument', `${label}: xOffset must be a multiple of 16 bytes, yOffset of 4`);
    }
    const needX = xOffset + io.maxTokens * weight.cols * 4;
    const needY = yOffset + io.maxTokens * this.outCols * 4;
    if (io.x.size < needX || io.y.size < needY) {
      throw new EngineError(
        'bad-argument',
        `${label}: x needs ${needX} bytes (has ${io.x.size}), y needs ${needY} (has ${io.y.size}) for ${io.maxTokens} tokens`,
      );
    }
    const kernel = linearKernelName(weight.type);
    const module = registry.module(device, kernel);
    this.tpr = matvecThreadsPerRow(weight.cols / UNIT);
    this.matvec = cachedPipeline(
      device,
      module,
      'matvec',
      { WG: MATVEC_WG, TPR: this.tpr },
      `${kernel}.matvec`,
    );
    this.matmul = cachedPipeline(device, module, 'matmul', {}, `${kernel}.matmul`);
    const subgroups = ctx.features?.subgroups ?? device.features.has('subgroups');
    this.matvecSg = subgroups
      ? cachedPipeline(
          device,
          subgroupVariant(device, registry.source(kernel), kernel),
          'matvec_sg',
          { WG: MATVEC_WG, TPR: this.tpr },
          `${kernel}.matvec_sg`,
        )
      : undefined;
    const { bgl } = weightKernelLayout(device);
    for (const [i, part] of weight.parts.entries()) {
      const meta = partMeta(device, `${label}.meta[${i}]`, {
        rows: swiglu ? part.rows / 2 : part.rows,
        rowStart: part.rowStart,
        units: weight.cols / UNIT,
        yStride: this.outCols,
        xOffset: xOffset / 4,
        yOffset: yOffset / 4,
        epilogue: EPILOGUE_CODE[this.epilogue],
      });
      const bindGroup = device.createBindGroup({
        label: `${label}[${i}]`,
        layout: bgl,
        entries: [
          ...weightPartEntries(part),
          { binding: 2, resource: { buffer: io.x } },
          { binding: 3, resource: { buffer: io.y } },
          { binding: 4, resource: { buffer: io.params } },
          { binding: 5, resource: { buffer: meta } },
        ],
      });
      this.groups.push({ bindGroup, rows: part.rows, meta });
    }
  }

  /** Free the per-part uniforms (the weight and the io buffers belong to the caller). */
  destroy(): void {
    for (const g of this.groups) g.meta.destroy();
  }

  /** The path `encode` takes by default for `nTokens`. */
  defaultPath(nTokens: number): LinearPath {
    if (nTokens > MATVEC_MAX_TOKENS) return 'matmul';
    return this.matvecSg ? 'matvec_sg' : 'matvec';
  }

  /**
   * Record the dispatches for `nTokens` tokens (the params buffer must say the same). The path is
   * mat-vec (subgroup reduction where available) up to MATVEC_MAX_TOKENS, else mat-mat; tests and
   * checks may force one.
   */
  encode(pass: GPUComputePassEncoder, nTokens: number, path?: LinearPath): void {
    if (nTokens < 1 || nTokens > this.maxTokens) {
      throw new EngineError(
        'bad-argument',
        `${this.weight.name}: ${nTokens} tokens, 1..${this.maxTokens} allowed`,
      );
    }
    const chosen = path ?? this.defaultPath(nTokens);
    if (chosen !== 'matmul' && nTokens > MATVEC_MAX_TOKENS) {
      throw new EngineError('bad-argument', `the mat-vec path takes at most ${MATVEC_MAX_TOKENS} tokens`);
    }
    if (chosen === 'matvec_sg' && !this.matvecSg) {
      throw new EngineError('bad-argument', 'this device has no subgroups: no matvec_sg path');
    }
    const swiglu = this.epilogue === 'swiglu';
    for (const g of this.groups) {
      pass.setBindGroup(0, g.bindGroup);
      if (chosen !== 'matmul') {
        pass.setPipeline(chosen === 'matvec_sg' ? this.matvecSg! : this.matvec);
        const pairs = swiglu ? g.rows / 2 : Math.ceil(g.rows / 2);
        const wgs = Math.ceil(pairs / (MATVEC_WG / this.tpr));
        const x = Math.min(wgs, this.maxWorkgroups);
        pass.dispatchWorkgroups(x, Math.ceil(wgs / x));
      } else {
        pass.setPipeline(this.matmul);
        const tiles = swiglu ? Math.ceil(g.rows / 2 / 16) : Math.ceil(g.rows / 32);
        pass.dispatchWorkgroups(tiles, Math.ceil(nTokens / 32));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Self-check (KernelSpec.check): the kernel vs dequantize + matVec on random inputs
// ---------------------------------------------------------------------------------------------

export interface LinearCase {
  rows: number;
  cols: number;
  tokens: number;
  epilogue: Epilogue;
  path?: LinearPath;
  /** Force a row split (bytes per binding). */
  maxBindingSize?: number;
  encoding?: UploadOptions['encoding'];
  /** File type of the random weight (default: the kernel's type). */
  sourceType?: GgmlType;
}

/** Random file bytes of `type` for a [rows, cols] matrix, and their exact dequantized values. */
export function randomWeight(type: GgmlType, rows: number, cols: number, rng: () => number) {
  const values = randomFloats(rows * cols, rng);
  const bytes = quantize(type, values);
  return { bytes, values: dequantize(type, bytes, rows * cols) };
}

/** CPU reference of one case: returns [T, outCols]. */
export function referenceLinear(
  W: Float32Array,
  x: Float32Array,
  y0: Float32Array,
  rows: number,
  cols: number,
  tokens: number,
  epilogue: Epilogue,
): Float32Array {
  const outCols = epilogue === 'swiglu' ? rows / 2 : rows;
  const out = new Float32Array(tokens * outCols);
  for (let t = 0; t < tokens; t++) {
    const v = matVec(W, x.subarray(t * cols, (t + 1) * cols), rows, cols);
    for (let r = 0; r < outCols; r++) {
      const i = t * outCols + r;
      if (epilogue === 'store') out[i] = v[r];
      else if (epilogue === 'accumulate') out[i] = y0[i] + v[r];
      else out[i] = silu(v[r]) * v[r + outCols];
    }
  }
  return out;
}

/** Run one case on the GPU with `module`; returns the GPU result and the reference. */
export async function runLinearCase(
  ctx: Pick<GpuContext, 'device' | 'limits'>,
  source: string,
  module: GPUShaderModule,
  type: GgmlType,
  c: LinearCase,
  seed: number,
): Promise<{ got: Float32Array; ref: Float32Array }> {
  const { device } = ctx;
  const rng = makeRng(seed);
  const srcType = c.sourceType ?? type;
  const { bytes, values } = randomWeight(srcType, c.rows, c.cols, rng);
  const weight = uploadWeight(ctx, 'check.W', srcType, bytes, c.rows, c.cols, {
    encoding: c.encoding,
    maxBindingSize: c.maxBindingSize,
  });
  if (weight.type !== type)
    throw new Error(`case uploads ${typeName(weight.type)}, kernel is ${typeName(type)}`);
  // The reference sees the weights the GPU holds (after any re-quantization).
  const W =
    c.encoding === 'q4_0' && weight.type !== srcType
      ? dequantize(GgmlType.Q4_0, quantize(GgmlType.Q4_0, values), values.length)
      : values;
  const maxTokens = c.tokens + 2; // slack rows must stay untouched
  const outCols = c.epilogue === 'swiglu' ? c.rows / 2 : c.rows;
  const x = randomFloats(maxTokens * c.cols, rng);
  const y0 = randomFloats(maxTokens * outCols, rng);
  const xb = createStorage(device, x, 'check.x');
  const yb = createStorage(device, maxTokens * outCols * 4, 'check.y');
  if (c.epilogue === 'accumulate') device.queue.writeBuffer(yb, 0, y0 as Float32Array<ArrayBuffer>);
  else poison(device, yb);
  const params = createUniform(device, [c.tokens], 'check.params');
  const provider = { module: () => module, source: () => source };
  const linear = new Linear(ctx, provider, weight, { x: xb, y: yb, params, maxTokens }, c);
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  linear.encode(pass, c.tokens, c.path);
  pass.end();
  device.queue.submit([enc.finish()]);
  const all = await readF32(device, yb, 0, maxTokens * outCols);
  for (const b of [xb, yb, params]) b.destroy();
  linear.destroy();
  destroyWeight(weight);
  const got = all.subarray(0, c.tokens * outCols);
  const ref = referenceLinear(W, x, y0, c.rows, c.cols, c.tokens, c.epilogue);
  // Rows past n_tokens must be left alone: poisoned (NaN) or the accumulate input.
  for (let i = c.tokens * outCols; i < all.length; i++) {
    const untouched = c.epilogue === 'accumulate' ? all[i] === y0[i] : Number.isNaN(all[i]);
    if (!untouched) return { got: new Float32Array([Number.NaN]), ref: new Float32Array([0]) };
  }
  return { got, ref };
}

export const LINEAR_TOLERANCE = 1e-4;

function casesFor(type: GgmlType, subgroups: boolean): LinearCase[] {
  const c = type === GgmlType.Q6_K ? [256, 512] : [32, 96, 256];
  // More than 32 units per row (the most threads per row pair), so that mat-vec lanes loop over K
  // more than once; the narrow ones run with fewer threads per row pair (1, 2 or 8 for q4_0).
  const long = type === GgmlType.Q6_K ? 1280 : 1056;
  // The default mat-vec path is matvec_sg where the device has subgroups: check the tree too.
  const tree: LinearCase[] = subgroups
    ? [
        { rows: 17, cols: c[1], tokens: 3, epilogue: 'accumulate', path: 'matvec' },
        { rows: 34, cols: c[0], tokens: 1, epilogue: 'swiglu', path: 'matvec' },
        { rows: 3, cols: long, tokens: 2, epilogue: 'store', path: 'matvec' },
      ]
    : [];
  return [
    ...tree,
    { rows: 1, cols: c[0], tokens: 1, epilogue: 'store' },
    { rows: 5, cols: c[1], tokens: 3, epilogue: 'store' },
    { rows: 17, cols: c[0], tokens: 8, epilogue: 'accumulate' },
    { rows: 34, cols: c[1], tokens: 1, epilogue: 'swiglu' },
    { rows: 33, cols: c[c.length - 1], tokens: 17, epilogue: 'store' },
    { rows: 129, cols: c[0], tokens: 3, epilogue: 'accumulate', path: 'matmul' },
    { rows: 66, cols: c[1], tokens: 17, epilogue: 'swiglu' },
    { rows: 129, cols: c[0], tokens: 2, epilogue: 'store' },
    { rows: 5, cols: long, tokens: 1, epilogue: 'store' },
  ];
}

function describeCase(type: GgmlType, c: LinearCase, subgroups: boolean): string {
  const path = c.path ?? (c.tokens > MATVEC_MAX_TOKENS ? 'matmul' : subgroups ? 'matvec_sg' : 'matvec');
  const extra = [
    c.maxBindingSize ? ` maxBindingSize=${c.maxBindingSize}` : '',
    c.encoding ? ` encoding=${c.encoding} from ${typeName(c.sourceType ?? type)}` : '',
  ].join('');
  return `linear_${GPU_LAYOUTS.get(type)?.kernel} rows=${c.rows} cols=${c.cols} tokens=${c.tokens} epilogue=${c.epilogue} path=${path}${extra}`;
}

const checkModules = new WeakMap<GPUDevice, Map<string, GPUShaderModule>>();

/** Shader modules of checked sources, one per distinct source (their pipelines are cached with them). */
export function checkModule(device: GPUDevice, source: string, label: string): GPUShaderModule {
  let perDevice = checkModules.get(device);
  if (!perDevice) {
    perDevice = new Map();
    checkModules.set(device, perDevice);
  }
  let m = perDevice.get(source);
  if (!m) {
    m = device.createShaderModule({ code: source, label });
    perDevice.set(source, m);
  }
  return m;
}

/** Check `source` as the `linear_<type>` kernel on `cases` (default: the built-in table). */
export async function checkLinear(
  device: GPUDevice,
  source: string,
  type: GgmlType,
  cases: LinearCase[] = casesFor(type, device.features.has('subgroups')),
): Promise<CheckResult> {
  const module = checkModule(device, source, `check:${linearKernelName(type)}`);
  const ctx = { device, limits: device.limits };
  let seed = 1;
  return runCases(
    cases,
    (c) => runLinearCase(ctx, source, module, type, c, seed++),
    LINEAR_TOLERANCE,
    (c) => describeCase(type, c, device.features.has('subgroups')),
  );
}

export const LINEAR_KERNELS: KernelSpec[] = [...DECODERS.entries()].map(([type, decoder]) => ({
  name: linearKernelName(type),
  source: `${decoder}\n${body}`,
  check: (device, source) => checkLinear(device, source, type),
}));

export function registerLinearKernels(registry: KernelRegistry): void {
  for (const spec of LINEAR_KERNELS) registry.register(spec);
}
