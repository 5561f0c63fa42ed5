/**
 * Linear layers on the GPU: y[t, r] (op)= Σ_c W[r, c] · x[t, c] for every weight layout.
 *
 * Kernels `linear_<type>` (type = q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs, q8_0, q4_k, q5_k, q6_k, f16, bf16, f32) are shaders/linear_body.wgsl
 * behind that type's decoder (shaders/linear_decode_<type>.wgsl). Each has two entry points:
 * `matvec` for n_tokens ≤ 8 (decode) and `matmul` (tiled, prefill: the integer types run the 64×64
 * dot4I8Packed GEMM of shaders/linear_matmul_q8.wgsl); the epilogue is the Meta uniform
 * part.epilogue. Binding contract: see the header of shaders/linear_body.wgsl and docs/kernels.md.
 *
 * Axis legend: T = tokens in this step (≤ maxTokens), R = weight rows, C = weight cols, F = SwiGLU
 * features (R = 2F).
 */
import bf16Decode from '../../../shaders/linear_decode_bf16.wgsl?raw';
import f16Decode from '../../../shaders/linear_decode_f16.wgsl?raw';
import f32Decode from '../../../shaders/linear_decode_f32.wgsl?raw';
import iq4nlDecode from '../../../shaders/linear_decode_iq4_nl.wgsl?raw';
import iq4xsDecode from '../../../shaders/linear_decode_iq4_xs.wgsl?raw';
import q4Decode from '../../../shaders/linear_decode_q4_0.wgsl?raw';
import q41Decode from '../../../shaders/linear_decode_q4_1.wgsl?raw';
import q4kDecode from '../../../shaders/linear_decode_q4_k.wgsl?raw';
import q5kDecode from '../../../shaders/linear_decode_q5_k.wgsl?raw';
import q50Decode from '../../../shaders/linear_decode_q5_0.wgsl?raw';
import q51Decode from '../../../shaders/linear_decode_q5_1.wgsl?raw';
import q6kDecode from '../../../shaders/linear_decode_q6_k.wgsl?raw';
import q8Decode from '../../../shaders/linear_decode_q8_0.wgsl?raw';
import decodeShared from '../../../shaders/linear_decode_shared.wgsl?raw';
import body from '../../../shaders/linear_body.wgsl?raw';
import iq4Levels from '../../../shaders/linear_iq4_levels.wgsl?raw';
import matvecFloat from '../../../shaders/linear_matvec_float.wgsl?raw';
import matmulFloat from '../../../shaders/linear_matmul_float.wgsl?raw';
import matmulQ8 from '../../../shaders/linear_matmul_q8.wgsl?raw';
import matvecQ8 from '../../../shaders/linear_matvec_q8.wgsl?raw';
import q8Activations from '../../../shaders/linear_q8_activations.wgsl?raw';
import subgroupMatvec from '../../../shaders/linear_matvec_subgroups.wgsl?raw';
import { EngineError } from '../errors';
import { GgmlType, SUPPORTED_TYPES, typeName } from '../gguf/types';
import { quantize } from '../quant/quantize';
import {
  dequantize,
  dequantizeActivationsQ8,
  f16ToF32,
  f32ToF16,
  matVec,
  quantizeActivationsQ8,
  rmsNorm,
  silu,
} from '../reference/ops';
import type { GpuContext } from './device';
import type { CheckResult, KernelRegistry, KernelSpec, ModelShape } from './check/registry';
import {
  createStorage,
  createUniform,
  makeRng,
  POISON_NAN_BITS,
  poison,
  randomFloats,
  readF32,
  readU32,
  runCases,
} from './check/testing';
import { cachedPipeline, shaderModule } from './pipelines';
import {
  auxRowBytes,
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
/** Integer mat-vec: row pairs per thread group (≤ MAX_PPG in the WGSL), so 2·(WG/TPR)·PPG rows share x. */
const MATVEC_PPG = 4;
const MATVEC_MAX_PPG = 4;
/** Prefill tiles (rows × tokens): the integer GEMM (linear_matmul_q8.wgsl), the float mat-mat. */
export const GEMM_TILE = { rows: 64, tokens: 64 } as const;
const FLOAT_TILE = { rows: 32, tokens: 32 } as const;

/**
 * Whether a QKV weight can take the RoPE + KV epilogue: its parts (one per type of a llama-quantize
 * mix, e.g. q4_K q and k beside a q6_K v, or the row split at the binding limit) each start at an
 * even row of [q; k; v], so no RoPE pair (r, r + 1) straddles two dispatches.
 */
export function ropeFusable(weight: Pick<GpuWeight, 'parts'>): boolean {
  return weight.parts.every((p) => p.rowStart % 2 === 0);
}

/**
 * Whether `type` runs the integer kernels: 8-bit activations and dot4I8Packed in the mat-vec
 * (linear_matvec_q8.wgsl) and the 64×64 prefill GEMM (linear_matmul_q8.wgsl), both with the
 * RMSNorm / RoPE fusions: every quantized type. The float types (f16, bf16, f32) run
 * linear_matvec_float.wgsl and the 32×32 mat-mat of linear_matmul_float.wgsl, unfused.
 */
export function usesIntegerDot(type: GgmlType): boolean {
  return GPU_LAYOUTS.get(type)?.aux !== 'none';
}

/**
 * Units of x the integer mat-vec quantizes per chunk (override CU): all of a row where the
 * workgroup memory holds it (36 bytes per unit beside the lane sums), else the most that fit.
 */
export function matvecChunkUnits(units: number, workgroupStorage: number): number {
  const fit = Math.floor((workgroupStorage - 8 * MATVEC_MAX_PPG * MATVEC_WG) / 36);
  return Math.max(1, Math.min(units, fit));
}

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
  [GgmlType.Q4_K, q4kDecode],
  [GgmlType.Q5_K, q5kDecode],
  [GgmlType.Q4_1, q41Decode],
  [GgmlType.Q5_0, q50Decode],
  [GgmlType.Q5_1, q51Decode],
  [GgmlType.IQ4_NL, `${iq4Levels}\n${iq4nlDecode}`],
  [GgmlType.IQ4_XS, `${iq4Levels}\n${iq4xsDecode}`],
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

/**
 * The subgroup variant of a linear kernel: `enable subgroups;` + the kernel (built-in or custom) +
 * the `matvec_sg` entry point. Compiled only on devices with the subgroups feature.
 */
export function subgroupVariant(device: GPUDevice, source: string, label: string): GPUShaderModule {
  return shaderModule(device, `enable subgroups;\n${source}\n${subgroupMatvec}`, `${label}+subgroups`);
}

const layoutCache = new WeakMap<GPUDevice, { bgl: GPUBindGroupLayout; layout: GPUPipelineLayout }>();

/**
 * The one bind group layout of the linear and embedding kernels: bindings 0–5, and 6–9 for the
 * integer mat-vec's decode fusions (consts, tok_rows, k_cache, v_cache; placeholders elsewhere).
 */
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
        { binding: 6, ...ro },
        { binding: 7, ...ro },
        { binding: 8, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
        { binding: 9, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' } },
      ],
    });
    l = { bgl, layout: device.createPipelineLayout({ bindGroupLayouts: [bgl], label: 'weight-kernel' }) };
    layoutCache.set(device, l);
  }
  return l;
}

const placeholderCache = new WeakMap<GPUDevice, GPUBuffer[]>();

/**
 * Bindings 6–9 where a kernel does not fuse anything: 16-byte ranges of two small buffers, one for
 * the read-only bindings and one for the writable ones (a buffer may not be both in one dispatch).
 */
export function fusionPlaceholders(device: GPUDevice): GPUBindGroupEntry[] {
  let b = placeholderCache.get(device);
  if (!b) {
    const make = (label: string) => device.createBuffer({ label, size: 512, usage: GPUBufferUsage.STORAGE });
    b = [make('fusion-placeholder-ro'), make('fusion-placeholder-rw')];
    placeholderCache.set(device, b);
  }
  const [ro, rw] = b;
  return [
    { binding: 6, resource: { buffer: ro, offset: 0, size: 16 } },
    { binding: 7, resource: { buffer: ro, offset: 256, size: 16 } },
    { binding: 8, resource: { buffer: rw, offset: 0, size: 16 } },
    { binding: 9, resource: { buffer: rw, offset: 256, size: 16 } },
  ];
}

/** A cached pipeline of a weight kernel (linear, embedding): the shared `weightKernelLayout`. */
export function weightPipeline(
  device: GPUDevice,
  module: GPUShaderModule,
  entryPoint: string,
  constants: Record<string, number>,
  label: string,
): GPUComputePipeline {
  return cachedPipeline(device, module, entryPoint, constants, label, weightKernelLayout(device).layout);
}

/** Decode fusions of the integer mat-vec (see Meta in linear_body.wgsl). */
export interface MatvecFusion {
  /** RMSNorm prologue: the norm weight at float `offset` of `consts`. */
  norm?: { offset: number; eps: number };
  /**
   * RoPE + KV-cache epilogue (QKV weight [q; k; v] rows): q rotated into y, k rotated and v stored
   * as f16 pairs at (seq, pos) = tokRows[t] (the layout of shaders/attention.wgsl's header).
   */
  rope?: {
    qDim: number;
    kvDim: number;
    headDim: number;
    maxSeq: number;
    /** Float offset of the rope table [maxSeq, headDim/2] (cos, sin) in `consts`. */
    tableOffset: number;
    tokRows: GPUBuffer;
    kCache: GPUBuffer;
    vCache: GPUBuffer;
  };
  /** Norm weights and rope table (f32): a buffer, or the range of one the kernel sees (offsets count from it). */
  consts: GPUBuffer | GPUBufferBinding;
}

const NO_NORM = 0xffffffff;

/** The 16-u32 Meta uniform of a part (see linear_body.wgsl; the embedding reads the first 8). */
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
    /** Weight rows of the part (default `rows`; swiglu: 2F): the decoders size their aux arrays by it. */
    wRows?: number;
    fusion?: MatvecFusion;
  },
): GPUBuffer {
  const f = m.fusion;
  const words = new Uint32Array([
    m.rows,
    m.rowStart,
    m.units,
    m.yStride,
    m.xOffset,
    m.yOffset,
    m.epilogue ?? 0,
    m.wRows ?? m.rows,
    f?.norm ? f.norm.offset : NO_NORM,
    0, // norm_eps, below
    f?.rope?.qDim ?? 0,
    f?.rope?.kvDim ?? 0,
    f?.rope?.headDim ?? 0,
    f?.rope?.maxSeq ?? 0,
    f?.rope?.tableOffset ?? 0,
    0,
  ]);
  new Float32Array(words.buffer).set([f?.norm?.eps ?? 0], 9);
  const buffer = device.createBuffer({
    label,
    size: 64,
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
  /** The subgroup-reduction mat-vec, where the device has subgroups (float types: never mixed). */
  private readonly matvecSg: GPUComputePipeline | undefined;
  /** Per part: its bind group and its type's pipelines (parts of a llama-quantize mix differ). */
  private readonly groups: {
    bindGroup: GPUBindGroup;
    rows: number;
    meta: GPUBuffer;
    matvec: GPUComputePipeline;
    matmul: GPUComputePipeline;
  }[] = [];
  private readonly maxTokens: number;
  private readonly maxWorkgroups: number;
  /** Mat-vec threads per row pair (matvecThreadsPerRow of the weight's units). */
  private readonly tpr: number;
  /** Integer mat-vec (8-bit activations, PPG row pairs per thread group). */
  private readonly integer: boolean;
  /** With a RMSNorm prologue or RoPE epilogue (integer types: mat-vec and GEMM). */
  private readonly fused: boolean;

  constructor(
    ctx: Pick<GpuContext, 'device' | 'limits'> & { features?: GpuContext['features'] },
    registry: ModuleProvider | KernelRegistry,
    weight: GpuWeight,
    io: LinearIO,
    opts: { epilogue?: Epilogue; label?: string; chunkUnits?: number; fusion?: MatvecFusion } = {},
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
    const fusion = opts.fusion;
    this.fused = !!fusion;
    if (fusion && !usesIntegerDot(weight.type)) {
      throw new EngineError('bad-argument', `${label}: only the integer kernels fuse RMSNorm / RoPE`);
    }
    if (fusion?.rope) {
      const r = fusion.rope;
      if (!ropeFusable(weight) || this.epilogue !== 'store' || weight.rows !== r.qDim + 2 * r.kvDim) {
        throw new EngineError(
          'gpu-limits',
          `${label}: the RoPE + KV epilogue needs [q; k; v] rows in parts that start at even rows (${weight.rows} rows, parts at ${weight.parts.map((p) => p.rowStart).join(', ')}, q ${r.qDim}, kv ${r.kvDim})`,
        );
      }
    }
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
    this.tpr = matvecThreadsPerRow(weight.cols / UNIT);
    // Pieces mix types only among the integer layouts (uploadConcatenated), so this holds for all parts.
    this.integer = usesIntegerDot(weight.type);
    const units = weight.cols / UNIT;
    const pipelines = new Map<GgmlType, { matvec: GPUComputePipeline; matmul: GPUComputePipeline }>();
    const pipelinesOf = (type: GgmlType) => {
      let p = pipelines.get(type);
      if (!p) {
        const name = linearKernelName(type);
        const module = registry.module(device, name);
        const matvec = weightPipeline(
          device,
          module,
          'matvec',
          this.integer
            ? {
                WG: MATVEC_WG,
                TPR: this.tpr,
                PPG: MATVEC_PPG,
                CU:
                  opts.chunkUnits ??
                  matvecChunkUnits(
                    units,
                    ctx.limits.maxComputeWorkgroupStorageSize ?? device.limits.maxComputeWorkgroupStorageSize,
                  ),
              }
            : { WG: MATVEC_WG, TPR: this.tpr },
          `${name}.matvec`,
        );
        p = { matvec, matmul: weightPipeline(device, module, 'matmul', {}, `${name}.matmul`) };
        pipelines.set(type, p);
      }
      return p;
    };
    const subgroups = ctx.features?.subgroups ?? device.features.has('subgroups');
    // The integer mat-vec reduces through workgroup memory only (its lane sums already live there).
    this.matvecSg =
      subgroups && !this.integer
        ? weightPipeline(
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
        wRows: part.rows,
        fusion,
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
          ...(fusion
            ? [
                {
                  binding: 6,
                  resource: 'buffer' in fusion.consts ? fusion.consts : { buffer: fusion.consts },
                },
                fusion.rope
                  ? { binding: 7, resource: { buffer: fusion.rope.tokRows } }
                  : fusionPlaceholders(device)[1],
                ...(fusion.rope
                  ? [
                      { binding: 8, resource: { buffer: fusion.rope.kCache } },
                      { binding: 9, resource: { buffer: fusion.rope.vCache } },
                    ]
                  : fusionPlaceholders(device).slice(2)),
              ]
            : fusionPlaceholders(device)),
        ],
      });
      this.groups.push({
        bindGroup,
        rows: part.rows,
        meta,
        ...pipelinesOf(part.type),
      });
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
    if (this.fused && chosen === 'matvec_sg') {
      throw new EngineError('bad-argument', `${this.weight.name}: a fused Linear has no subgroup mat-vec`);
    }
    if (chosen === 'matvec_sg' && !this.matvecSg) {
      throw new EngineError('bad-argument', 'this device has no subgroups: no matvec_sg path');
    }
    const swiglu = this.epilogue === 'swiglu';
    for (const g of this.groups) {
      pass.setBindGroup(0, g.bindGroup);
      if (chosen !== 'matmul') {
        pass.setPipeline(chosen === 'matvec_sg' ? this.matvecSg! : g.matvec);
        const pairs = swiglu ? g.rows / 2 : Math.ceil(g.rows / 2);
        const pairsPerWorkgroup = (MATVEC_WG / this.tpr) * (this.integer ? MATVEC_PPG : 1);
        const wgs = Math.ceil(pairs / pairsPerWorkgroup);
        const x = Math.min(wgs, this.maxWorkgroups);
        pass.dispatchWorkgroups(x, Math.ceil(wgs / x));
      } else {
        pass.setPipeline(g.matmul);
        // Swiglu tiles hold half a tile of gate rows and the matching up rows.
        const tile = this.integer ? GEMM_TILE : FLOAT_TILE;
        const rowTiles = Math.ceil((swiglu ? g.rows / 2 : g.rows) / (swiglu ? tile.rows / 2 : tile.rows));
        const tokenTiles = Math.ceil(nTokens / tile.tokens);
        if (this.integer) {
          // Token tiles in x: neighbouring workgroups share a weight tile (read once, then from L2).
          pass.dispatchWorkgroups(tokenTiles, rowTiles);
        } else {
          pass.dispatchWorkgroups(rowTiles, tokenTiles);
        }
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
  /** Integer mat-vec: quantize x in chunks of this many units (as on a device with little workgroup memory). */
  chunkUnits?: number;
  /**
   * Decode fusions (integer mat-vec): RMSNorm prologue; RoPE + KV epilogue for H query and Hkv
   * KV heads of headDim (rows must be (H + 2·Hkv)·headDim) in a cache of batch × maxSeq positions.
   */
  fusion?: {
    norm: boolean;
    rope?: { heads: number; kvHeads: number; headDim: number; maxSeq: number; batch: number };
  };
}

/** Random file bytes of `type` for a [rows, cols] matrix, and their exact dequantized values. */
export function randomWeight(type: GgmlType, rows: number, cols: number, rng: () => number) {
  const values = randomFloats(rows * cols, rng);
  const bytes = quantize(type, values);
  return { bytes, values: dequantize(type, bytes, rows * cols) };
}

/**
 * CPU reference of one case: returns [T, outCols]. With `quantizedX` each token's activations are
 * first quantized to 8 bits per 32-block, as the integer mat-vec does (quantizeActivationsQ8).
 */
export function referenceLinear(
  W: Float32Array,
  x: Float32Array,
  y0: Float32Array,
  rows: number,
  cols: number,
  tokens: number,
  epilogue: Epilogue,
  quantizedX = false,
): Float32Array {
  const outCols = epilogue === 'swiglu' ? rows / 2 : rows;
  const out = new Float32Array(tokens * outCols);
  for (let t = 0; t < tokens; t++) {
    const xt = x.subarray(t * cols, (t + 1) * cols);
    const v = matVec(W, quantizedX ? dequantizeActivationsQ8(xt) : xt, rows, cols);
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
): Promise<{ got: Float32Array; ref: Float32Array; tolerance: number }> {
  if (c.fusion) return runFusedCase(ctx, source, module, type, c, seed);
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
  const linear = new Linear(
    ctx,
    provider,
    weight,
    { x: xb, y: yb, params, maxTokens },
    { ...c, fusion: undefined },
  );
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
  // Integer types round their activations to 8 bits per 32-block on every path.
  const quantizedX = usesIntegerDot(type);
  const ref = referenceLinear(W, x, y0, c.rows, c.cols, c.tokens, c.epilogue, quantizedX);
  const tolerance = LINEAR_TOLERANCE + (quantizedX ? roundingSlack(W, x, ref, c) : 0);
  // Rows past n_tokens must be left alone: poisoned (NaN) or the accumulate input.
  for (let i = c.tokens * outCols; i < all.length; i++) {
    const untouched = c.epilogue === 'accumulate' ? all[i] === y0[i] : Number.isNaN(all[i]);
    if (!untouched) return { got: new Float32Array([Number.NaN]), ref: new Float32Array([0]), tolerance };
  }
  return { got, ref, tolerance };
}

/**
 * A decode-fusion case: x [T, C] → (RMSNorm with a random weight) → W → (RoPE + KV store). The
 * reference is ops.rmsNorm, the same 8-bit activations, matVec, ops-style rotation with the same
 * table and f16 rounding of K/V; compared: y's q (or all) columns, then the K and V cache rows of
 * each token's (seq, pos) slot. Everything else stays poisoned.
 */
async function runFusedCase(
  ctx: Pick<GpuContext, 'device' | 'limits'>,
  source: string,
  module: GPUShaderModule,
  type: GgmlType,
  c: LinearCase,
  seed: number,
): Promise<{ got: Float32Array; ref: Float32Array; tolerance: number }> {
  const { device } = ctx;
  const f = c.fusion!;
  const rng = makeRng(seed);
  const { bytes, values: W } = randomWeight(type, c.rows, c.cols, rng);
  const weight = uploadWeight(ctx, 'check.W', type, bytes, c.rows, c.cols, {
    maxBindingSize: c.maxBindingSize,
  });
  const maxTokens = c.tokens + 1;
  const outCols = c.epilogue === 'swiglu' ? c.rows / 2 : c.rows;
  const x = randomFloats(maxTokens * c.cols, rng, 3);
  const eps = 1e-5;
  // consts: 3 floats of padding (offsets are honoured), the norm weight, then the rope table.
  const normOffset = 3;
  const normW = randomFloats(c.cols, rng, 2);
  const r = f.rope;
  const half = r ? r.headDim / 2 : 0;
  const table = new Float32Array(r ? 2 * r.maxSeq * half : 0);
  for (let i = 0; i < table.length / 2; i++) {
    const theta = 2 * Math.PI * rng();
    table[2 * i] = Math.cos(theta);
    table[2 * i + 1] = Math.sin(theta);
  }
  const tableOffset = normOffset + c.cols;
  const consts = new Float32Array(tableOffset + table.length);
  consts.set(normW, normOffset);
  consts.set(table, tableOffset);
  const qDim = r ? r.heads * r.headDim : 0;
  const kvDim = r ? r.kvHeads * r.headDim : 0;
  // Distinct (seq, pos) slots, token 0 at the last position.
  const slots: number[] = [];
  for (let t = 0; t < maxTokens && r; t++) {
    let slot: number;
    do slot = t === 0 ? r.maxSeq - 1 : Math.floor(rng() * r.batch * r.maxSeq);
    while (slots.includes(slot));
    slots.push(slot);
  }
  const rows = Uint32Array.from(slots.flatMap((sl) => [Math.floor(sl / r!.maxSeq), sl % r!.maxSeq]));
  const cacheWords = r ? (r.batch * r.maxSeq * kvDim) / 2 : 4;
  const bufs = {
    x: createStorage(device, x, 'check.x'),
    y: createStorage(device, maxTokens * outCols * 4, 'check.y'),
    params: createUniform(device, [c.tokens], 'check.params'),
    consts: createStorage(device, consts, 'check.consts'),
    rows: createStorage(device, r ? rows : new Uint32Array(4), 'check.rows'),
    k: createStorage(device, cacheWords * 4, 'check.k_cache'),
    v: createStorage(device, cacheWords * 4, 'check.v_cache'),
  };
  for (const b of [bufs.y, bufs.k, bufs.v]) poison(device, b);
  const fusion: MatvecFusion = {
    consts: bufs.consts,
    norm: f.norm ? { offset: normOffset, eps } : undefined,
    rope: r && {
      qDim,
      kvDim,
      headDim: r.headDim,
      maxSeq: r.maxSeq,
      tableOffset,
      tokRows: bufs.rows,
      kCache: bufs.k,
      vCache: bufs.v,
    },
  };
  const provider = { module: () => module, source: () => source };
  const io = { x: bufs.x, y: bufs.y, params: bufs.params, maxTokens };
  const linear = new Linear(ctx, provider, weight, io, { ...c, fusion });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  linear.encode(pass, c.tokens, c.path);
  pass.end();
  device.queue.submit([enc.finish()]);
  const yAll = await readF32(device, bufs.y);
  const kAll = await readU32(device, bufs.k);
  const vAll = await readU32(device, bufs.v);
  for (const b of Object.values(bufs)) b.destroy();
  linear.destroy();
  destroyWeight(weight);

  const xs = new Float32Array(c.tokens * c.cols);
  for (let t = 0; t < c.tokens; t++) {
    const xt = x.subarray(t * c.cols, (t + 1) * c.cols);
    xs.set(f.norm ? rmsNorm(xt, normW, eps) : xt, t * c.cols);
  }
  const pre = referenceLinear(
    W,
    xs,
    new Float32Array(c.tokens * outCols),
    c.rows,
    c.cols,
    c.tokens,
    c.epilogue,
    true,
  );
  let tolerance = LINEAR_TOLERANCE + roundingSlack(W, xs, pre, c);
  if (!r) {
    const untouched = yAll.subarray(c.tokens * outCols).every(Number.isNaN);
    const got = yAll.slice(0, c.tokens * outCols);
    if (!untouched) got[0] = Number.NaN;
    return { got, ref: pre, tolerance };
  }
  // K/V are stored as f16: one rounding step of the largest value on top.
  tolerance += 2 ** -10;
  const per = qDim + 2 * kvDim;
  const got = new Float32Array(c.tokens * per);
  const ref = new Float32Array(c.tokens * per);
  const written = new Set<number>();
  for (let t = 0; t < c.tokens; t++) {
    const [seq, pos] = [rows[2 * t], rows[2 * t + 1]];
    const row = pre.slice(t * c.rows, (t + 1) * c.rows);
    for (let j = 0; j < qDim + kvDim; j += 2) {
      const i = (j % r.headDim) / 2;
      const [cs, sn] = [table[2 * (pos * half + i)], table[2 * (pos * half + i) + 1]];
      const [a, b] = [row[j], row[j + 1]];
      row[j] = a * cs - b * sn;
      row[j + 1] = a * sn + b * cs;
    }
    for (let j = qDim; j < per; j++) row[j] = f16ToF32(f32ToF16(row[j]));
    ref.set(row, t * per);
    got.set(yAll.subarray(t * c.rows, t * c.rows + qDim), t * per);
    const word = ((seq * r.maxSeq + pos) * kvDim) / 2;
    for (let w = 0; w < kvDim / 2; w++) {
      written.add(word + w);
      got[t * per + qDim + 2 * w] = f16ToF32(kAll[word + w] & 0xffff);
      got[t * per + qDim + 2 * w + 1] = f16ToF32(kAll[word + w] >>> 16);
      got[t * per + qDim + kvDim + 2 * w] = f16ToF32(vAll[word + w] & 0xffff);
      got[t * per + qDim + kvDim + 2 * w + 1] = f16ToF32(vAll[word + w] >>> 16);
    }
    // y's k and v columns are not written (they live in the caches).
    if (!yAll.subarray(t * c.rows + qDim, (t + 1) * c.rows).every(Number.isNaN)) got[t * per] = Number.NaN;
  }
  // Nothing else in the caches or past n_tokens in y is written.
  const poisoned = (w: number) => w === POISON_NAN_BITS;
  const otherKv = [...kAll.keys()].some((w) => !written.has(w) && !(poisoned(kAll[w]) && poisoned(vAll[w])));
  if (otherKv || !yAll.subarray(c.tokens * c.rows).every(Number.isNaN)) got[0] = Number.NaN;
  return { got, ref, tolerance };
}

/**
 * Relative error two 8-bit activation roundings may add: the GPU's d = amax / 127 and 1 / d are
 * not correctly rounded on every device, so a value within an ulp of a rounding boundary may land
 * one step (d) away from the reference's. One step moves a dot product by |W[r, c]| · d ≤ max|W| ·
 * max d (swiglu: times the other factor's size). A wrong kernel (a lost scale, a wrong offset or
 * unit) is off by far more.
 */
function roundingSlack(W: Float32Array, x: Float32Array, ref: Float32Array, c: LinearCase): number {
  let maxW = 0;
  for (const w of W) maxW = Math.max(maxW, Math.abs(w));
  let maxD = 0;
  for (const d of quantizeActivationsQ8(x.subarray(0, c.tokens * c.cols)).d) maxD = Math.max(maxD, d);
  let maxRef = 1e-30;
  for (const r of ref) maxRef = Math.max(maxRef, Math.abs(r));
  // swiglu: Δ(silu(g)·u) ≤ (|silu'(g)|·|u| + |silu(g)|)·Δ ≤ 2.2·max(|g|, |u|)·Δ (|silu'| < 1.1).
  let maxPre = 0;
  if (c.epilogue === 'swiglu') {
    for (let t = 0; t < c.tokens; t++) {
      const xt = dequantizeActivationsQ8(x.subarray(t * c.cols, (t + 1) * c.cols));
      for (const v of matVec(W, xt, c.rows, c.cols)) maxPre = Math.max(maxPre, Math.abs(v));
    }
  }
  const factor = c.epilogue === 'swiglu' ? 1 + 2.2 * maxPre : 1;
  return (2 * maxW * maxD * factor) / maxRef;
}

export const LINEAR_TOLERANCE = 1e-4;

/** Bytes per row of `type`'s largest GPU section at `cols`: a binding of k times this holds k rows. */
function rowBindingBytes(type: GgmlType, cols: number): number {
  const layout = GPU_LAYOUTS.get(type)!;
  const units = cols / UNIT;
  return Math.max(
    units * layout.qv * 16,
    auxRowBytes(layout.aux, units).reduce((a, b) => a + b, 0),
  );
}

/** The self-check's cases for `type` (exported so tests can run a subset, e.g. the GEMM's). */
export function casesFor(type: GgmlType, subgroups: boolean): LinearCase[] {
  // K-quant and iq4_xs rows are whole 256-blocks.
  const kQuant = SUPPORTED_TYPES.get(type)?.blockSize === 256;
  const c = kQuant ? [256, 512] : [32, 96, 256];
  // More than 32 units per row (the most threads per row pair), so that mat-vec lanes loop over K
  // more than once; the narrow ones run with fewer threads per row pair (1, 2 or 8 for q4_0).
  const long = kQuant ? 1280 : 1056;
  // The default mat-vec path is matvec_sg where the device has subgroups: check the tree too.
  const tree: LinearCase[] =
    subgroups && !usesIntegerDot(type)
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
    // x quantized in chunks of 3 units (a device with little workgroup memory), the last one short.
    ...(usesIntegerDot(type)
      ? [
          { rows: 35, cols: long, tokens: 2, epilogue: 'accumulate' as const, chunkUnits: 3 },
          { rows: 6, cols: c[1], tokens: 1, epilogue: 'swiglu' as const, chunkUnits: 3 },
          // Decode fusions: RMSNorm prologue (qkv, gate_up, head), RoPE + KV-cache epilogue (qkv).
          { rows: 33, cols: long, tokens: 1, epilogue: 'store' as const, fusion: { norm: true } },
          {
            rows: 34,
            cols: c[1],
            tokens: 2,
            epilogue: 'swiglu' as const,
            fusion: { norm: true },
            chunkUnits: 3,
          },
          {
            rows: 64,
            cols: c[0],
            tokens: 3,
            epilogue: 'store' as const,
            fusion: { norm: true, rope: { heads: 2, kvHeads: 1, headDim: 16, maxSeq: 9, batch: 2 } },
          },
          {
            rows: 30,
            cols: long,
            tokens: 1,
            epilogue: 'store' as const,
            chunkUnits: 3,
            fusion: { norm: true, rope: { heads: 3, kvHeads: 1, headDim: 6, maxSeq: 5, batch: 1 } },
          },
          // [q; k; v] in parts of 10 rows (as a mixed-type QKV: q4_K q, k + q6_K v, one part per
          // type): parts straddle the q/k and k/v boundaries; each rotates and stores its own rows.
          {
            rows: 64,
            cols: c[0],
            tokens: 3,
            epilogue: 'store' as const,
            maxBindingSize: 10 * rowBindingBytes(type, c[0]),
            fusion: { norm: true, rope: { heads: 2, kvHeads: 1, headDim: 16, maxSeq: 9, batch: 2 } },
          },
        ]
      : []),
    // The prefill GEMM: more than one 64×64 tile each way, partial tiles, an odd unit count (the
    // last unit in the second buffer), and its fusions.
    ...(usesIntegerDot(type)
      ? [
          { rows: 130, cols: long, tokens: 70, epilogue: 'accumulate' as const },
          { rows: 130, cols: c[1], tokens: 67, epilogue: 'swiglu' as const, fusion: { norm: true } },
          {
            rows: 98,
            cols: c[0],
            tokens: 67,
            epilogue: 'store' as const,
            fusion: { norm: true, rope: { heads: 5, kvHeads: 1, headDim: 14, maxSeq: 40, batch: 2 } },
          },
          {
            rows: 98,
            cols: c[0],
            tokens: 67,
            epilogue: 'store' as const,
            maxBindingSize: 36 * rowBindingBytes(type, c[0]),
            fusion: { norm: true, rope: { heads: 5, kvHeads: 1, headDim: 14, maxSeq: 40, batch: 2 } },
          },
        ]
      : []),
  ];
}

/**
 * The load-time check: one column count (so the mat-vec cases share one pipeline), the default
 * mat-vec path (several tokens, accumulate), the tiled mat-mat (swiglu) and, for the integer
 * types, the decode fusion (RMSNorm + RoPE + KV store). Two or three pipelines; the mat-mat one is
 * the model's own (pipelines.ts caches it per module).
 */
function quickCasesFor(type: GgmlType, modelDim?: number): LinearCase[] {
  // K-quant and iq4_xs rows are whole 256-blocks.
  const unit = SUPPORTED_TYPES.get(type)?.blockSize === 256 ? 256 : 32;
  // At the model's dim the mat-vec pipeline is the one of its qkv, gate_up and head.
  const cols = modelDim && modelDim % unit === 0 ? modelDim : unit === 256 ? 256 : 96;
  return [
    { rows: 17, cols, tokens: 3, epilogue: 'accumulate' },
    { rows: 66, cols, tokens: 17, epilogue: 'swiglu' },
    ...(usesIntegerDot(type)
      ? [
          {
            rows: 64,
            cols,
            tokens: 3,
            epilogue: 'store' as const,
            fusion: { norm: true, rope: { heads: 2, kvHeads: 1, headDim: 16, maxSeq: 9, batch: 2 } },
          },
        ]
      : []),
  ];
}

function describeCase(type: GgmlType, c: LinearCase, subgroups: boolean): string {
  const sg = subgroups && !usesIntegerDot(type);
  const path = c.path ?? (c.tokens > MATVEC_MAX_TOKENS ? 'matmul' : sg ? 'matvec_sg' : 'matvec');
  const extra = [
    c.chunkUnits ? ` chunkUnits=${c.chunkUnits}` : '',
    c.fusion?.norm ? ' +rmsnorm' : '',
    c.fusion?.rope
      ? ` +rope/kv heads=${c.fusion.rope.heads}/${c.fusion.rope.kvHeads} head_dim=${c.fusion.rope.headDim}`
      : '',
    c.maxBindingSize ? ` maxBindingSize=${c.maxBindingSize}` : '',
    c.encoding ? ` encoding=${c.encoding} from ${typeName(c.sourceType ?? type)}` : '',
  ].join('');
  return `linear_${GPU_LAYOUTS.get(type)?.kernel} rows=${c.rows} cols=${c.cols} tokens=${c.tokens} epilogue=${c.epilogue} path=${path}${extra}`;
}

/** Check `source` as the `linear_<type>` kernel on `cases` (default: the built-in table). */
export async function checkLinear(
  device: GPUDevice,
  source: string,
  type: GgmlType,
  cases: LinearCase[] = casesFor(type, device.features.has('subgroups')),
): Promise<CheckResult> {
  const module = shaderModule(device, source, `check:${linearKernelName(type)}`);
  const ctx = { device, limits: device.limits };
  let seed = 1;
  return runCases(
    cases,
    (c) => runLinearCase(ctx, source, module, type, c, seed++),
    LINEAR_TOLERANCE,
    (c) => describeCase(type, c, device.features.has('subgroups')),
  );
}

/**
 * The decoder of `type` with what it needs: the integer decoders share linear_decode_shared.wgsl's
 * helpers and read quantized activations (linear_q8_activations.wgsl).
 */
export function decoderSource(type: GgmlType): string {
  return usesIntegerDot(type)
    ? `${decodeShared}\n${DECODERS.get(type)}\n${q8Activations}`
    : DECODERS.get(type)!;
}

/** The built-in source of `linear_<type>`: decoder + body + the mat-vec and mat-mat of its kind. */
export function linearSource(type: GgmlType): string {
  return usesIntegerDot(type)
    ? `${decoderSource(type)}\n${body}\n${matvecQ8}\n${matmulQ8}`
    : `${decoderSource(type)}\n${body}\n${matvecFloat}\n${matmulFloat}`;
}

export const LINEAR_KERNELS: KernelSpec[] = [...DECODERS.keys()].map((type) => ({
  name: linearKernelName(type),
  source: linearSource(type),
  check: (device, source) => checkLinear(device, source, type),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkLinear(device, source, type, quickCasesFor(type, shape?.dim)),
}));

export function registerLinearKernels(registry: KernelRegistry): void {
  for (const spec of LINEAR_KERNELS) registry.register(spec);
}
