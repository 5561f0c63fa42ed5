/**
 * GPU weight layouts: GGUF tensor bytes → our buffers, repacked per tensor as it streams in.
 *
 * Every matrix [R, C] (ggml ne = [C, R]; C a multiple of 32) is cut into **units** of 32
 * consecutive weights of one row; unit (r, u) has index r·(C/32) + u. Each part buffer holds two
 * sections that the kernels bind separately:
 *
 *   part buffer  ┌────────────────────────────────────────────┬──pad──┬──────────────────────┐
 *                │ quants: QV vec4<u32> per unit, unit-major   │ → 256 │ scales: f32 per unit  │
 *                │ [u(0,0)][u(0,1)]…[u(0,C/32−1)][u(1,0)]…     │       │ (q4_0, q8_0 only)     │
 *                └────────────────────────────────────────────┴───────┴──────────────────────┘
 *
 *   type  QV  one unit (32 weights) in quants                          scales   bytes/weight
 *   q4_0   1  the block's 16 nibble bytes verbatim (byte j: el. j | j+16)  d (f32)   0.625 (file 0.5625)
 *   q8_0   2  the block's 32 int8 verbatim                                 d (f32)   1.125 (file 1.0625)
 *   q6_K   2  lo nibbles like q4_0 │ hi0 hi1 (2 bits/el.) │ d·sc0 d·sc1   —        1.0   (file 0.8203)
 *   f16    4  halves verbatim, 2 per u32 (unpack2x16float)                 —        2
 *   bf16   4  bf16 verbatim, 2 per u32 (<< 16 is the f32)                  —        2
 *   f32    8  floats verbatim                                              —        4
 *
 * A thread reading unit u of a row then u + TPR reads consecutive 16-byte vectors across a
 * thread group: the loads coalesce and are vec4 wide. The exact decoders are shaders/linear_decode_*.wgsl.
 *
 * Tensors larger than a binding (or a buffer) are split by rows into parts; the kernels run once per
 * part. Upload streams: rows are read (streamConcatenated), repacked and written with
 * queue.writeBuffer in slices of ≈ 4 MiB, so at most one slice of a tensor is on the CPU at a time.
 */
import { EngineError } from '../errors';
import { GgmlType, SUPPORTED_TYPES, typeName } from '../gguf/types';
import { quantize } from '../quant/quantize';
import { dequantize, f16ToF32 } from '../reference/ops';
import type { GpuContext } from './device';

/** Weights per unit of every GPU layout. */
export const UNIT = 32;
/** Storage-buffer offsets must be multiples of this (minStorageBufferOffsetAlignment ≤ 256). */
const SECTION_ALIGN = 256;
const SLICE_BYTES = 4 << 20;

/** vec4<u32> per unit and whether a per-unit f32 scale section exists, per GPU layout type. */
export const GPU_LAYOUTS: ReadonlyMap<GgmlType, { qv: number; scales: boolean; kernel: string }> = new Map([
  [GgmlType.Q4_0, { qv: 1, scales: true, kernel: 'q4_0' }],
  [GgmlType.Q8_0, { qv: 2, scales: true, kernel: 'q8_0' }],
  [GgmlType.Q6_K, { qv: 2, scales: false, kernel: 'q6_k' }],
  [GgmlType.F16, { qv: 4, scales: false, kernel: 'f16' }],
  [GgmlType.BF16, { qv: 4, scales: false, kernel: 'bf16' }],
  [GgmlType.F32, { qv: 8, scales: false, kernel: 'f32' }],
]);

export interface GpuWeightPart {
  buffer: GPUBuffer;
  /** First row of the whole weight held by this part. */
  rowStart: number;
  rows: number;
  /** Bytes of the quants section (at offset 0). */
  quantsBytes: number;
  /** Offset and size of the scales section (a 16-byte placeholder for types without scales). */
  scalesOffset: number;
  scalesBytes: number;
}

/**
 * Bindings 0 (quants) and 1 (scales) of a weight part: the same two sections for every kernel
 * that reads a GPU weight (linear, embedding).
 */
export function weightPartEntries(part: GpuWeightPart): GPUBindGroupEntry[] {
  return [
    { binding: 0, resource: { buffer: part.buffer, offset: 0, size: part.quantsBytes } },
    { binding: 1, resource: { buffer: part.buffer, offset: part.scalesOffset, size: part.scalesBytes } },
  ];
}

export interface GpuWeight {
  name: string;
  /** Type of the GPU layout (after any --quantization-encoding conversion). */
  type: GgmlType;
  /** Type the file stored. */
  sourceType: GgmlType;
  rows: number;
  cols: number;
  /** Row ranges, each in its own buffer, in row order. */
  parts: GpuWeightPart[];
  /** GPU bytes of all parts. */
  bytes: number;
}

export type WeightEncoding = 'q4_0' | 'float32';

export interface UploadOptions {
  /** --quantization-encoding: 'q4_0' re-quantizes F16/F32/BF16; 'float32' dequantizes anything. */
  encoding?: WeightEncoding;
  /** Largest binding a part's quants may use (default and cap: the device limit). Tests pass a small one. */
  maxBindingSize?: number;
}

type UploadContext = Pick<GpuContext, 'device' | 'limits'>;

/** The GPU layout type for a file type under an encoding. */
export function gpuTypeFor(type: GgmlType, encoding?: WeightEncoding): GgmlType {
  if (!GPU_LAYOUTS.has(type)) {
    throw new EngineError('unsupported-model', `tensor type ${typeName(type)} has no GPU kernel`);
  }
  if (encoding === 'float32') return GgmlType.F32;
  if (encoding === 'q4_0' && (type === GgmlType.F32 || type === GgmlType.F16 || type === GgmlType.BF16)) {
    return GgmlType.Q4_0;
  }
  return type;
}

/** Bytes of one row of `type` in the file. */
function fileRowBytes(type: GgmlType, cols: number): number {
  const t = SUPPORTED_TYPES.get(type)!;
  return (cols / t.blockSize) * t.bytesPerBlock;
}

export function uploadWeight(
  ctx: UploadContext,
  name: string,
  type: GgmlType,
  bytes: Uint8Array,
  rows: number,
  cols: number,
  opts: UploadOptions = {},
): GpuWeight {
  return uploadConcatenated(ctx, name, [{ type, bytes, rows }], cols, opts);
}

/** Concatenate several matrices' rows into one weight (QKV in one mat-vec, gate+up in one). */
export function uploadConcatenated(
  ctx: UploadContext,
  name: string,
  pieces: { type: GgmlType; bytes: Uint8Array; rows: number }[],
  cols: number,
  opts: UploadOptions = {},
): GpuWeight {
  const plan = planUpload(ctx, name, pieces, cols, opts);
  for (const p of pieces) {
    const want = fileRowBytes(p.type, cols) * p.rows;
    if (p.bytes.byteLength < want) {
      destroyWeight(plan.weight);
      throw new EngineError(
        'bad-gguf',
        `${name}: ${p.rows} rows × ${cols} ${typeName(p.type)} need ${want} bytes, got ${p.bytes.byteLength}`,
      );
    }
  }
  for (const slice of plan.slices) {
    const rb = fileRowBytes(slice.type, cols);
    const p = pieces[slice.piece];
    writeSlice(
      ctx.device,
      plan,
      slice,
      p.bytes.subarray(slice.pieceRow * rb, (slice.pieceRow + slice.rows) * rb),
    );
  }
  return plan.weight;
}

/** A matrix whose rows are read when needed: `read(row, n)` gives rows [row, row + n) as in the file. */
export interface StreamedMatrix {
  type: GgmlType;
  rows: number;
  read(row: number, n: number): Promise<Uint8Array>;
}

/**
 * uploadConcatenated for matrices read a slice of rows at a time (≈ 4 MiB, from the model file):
 * the source bytes of a tensor never exist whole on the CPU, not even the 0.4 GB head of an 8B.
 */
export async function streamConcatenated(
  ctx: UploadContext,
  name: string,
  pieces: StreamedMatrix[],
  cols: number,
  opts: UploadOptions = {},
): Promise<GpuWeight> {
  const plan = planUpload(ctx, name, pieces, cols, opts);
  try {
    for (const slice of plan.slices) {
      const src = await pieces[slice.piece].read(slice.pieceRow, slice.rows);
      const want = fileRowBytes(slice.type, cols) * slice.rows;
      if (src.byteLength !== want) {
        throw new EngineError(
          'bad-gguf',
          `${name}: read ${src.byteLength} bytes for ${slice.rows} rows, not ${want}`,
        );
      }
      writeSlice(ctx.device, plan, slice, src);
    }
  } catch (e) {
    destroyWeight(plan.weight);
    throw e;
  }
  return plan.weight;
}

/** One repack slice: `rows` rows of piece `piece` from its row `pieceRow`, into part `part` at row `partRow`. */
interface UploadSlice {
  piece: number;
  type: GgmlType;
  pieceRow: number;
  rows: number;
  part: GpuWeightPart;
  partRow: number;
}

interface UploadPlan {
  weight: GpuWeight;
  slices: UploadSlice[];
  quantsRowBytes: number;
  scalesRowBytes: number;
}

/**
 * Checks the shapes, creates the (empty) part buffers and cuts the rows into repack slices. Rows per
 * slice are bounded by the largest per-row footprint of the source bytes, the f32 intermediate of a
 * conversion and the GPU layout, so every transient array stays ≈ SLICE_BYTES.
 */
function planUpload(
  ctx: UploadContext,
  name: string,
  pieces: { type: GgmlType; rows: number }[],
  cols: number,
  opts: UploadOptions,
): UploadPlan {
  if (pieces.length === 0) throw new EngineError('bad-argument', `${name}: no matrices to upload`);
  const sourceType = pieces[0].type;
  const gpuType = gpuTypeFor(sourceType, opts.encoding);
  for (const p of pieces) {
    if (gpuTypeFor(p.type, opts.encoding) !== gpuType) {
      throw new EngineError(
        'unsupported-model',
        `${name}: cannot concatenate ${typeName(p.type)} rows with ${typeName(sourceType)} rows; convert them to one type (--quantization-encoding float32)`,
      );
    }
  }
  const blockSize = SUPPORTED_TYPES.get(sourceType)!.blockSize;
  if (!Number.isInteger(cols) || cols <= 0 || cols % UNIT !== 0 || cols % blockSize !== 0) {
    throw new EngineError(
      'unsupported-model',
      `${name}: ${cols} columns is not a multiple of ${Math.max(UNIT, blockSize)}; the GPU kernels need whole 32-weight units`,
    );
  }
  for (const p of pieces) {
    if (!Number.isInteger(p.rows) || p.rows <= 0) {
      throw new EngineError('bad-gguf', `${name}: ${p.rows} rows × ${cols} ${typeName(p.type)}: no rows`);
    }
  }
  const rows = pieces.reduce((s, p) => s + p.rows, 0);
  const layout = GPU_LAYOUTS.get(gpuType)!;
  const units = cols / UNIT;
  const quantsRowBytes = units * layout.qv * 16;
  const scalesRowBytes = layout.scales ? units * 4 : 0;

  const limit = Math.min(
    opts.maxBindingSize ?? ctx.limits.maxStorageBufferBindingSize,
    ctx.limits.maxStorageBufferBindingSize,
  );
  const maxBuffer = ctx.limits.maxBufferSize;
  const rowsPerPart = Math.min(
    Math.floor(limit / quantsRowBytes),
    Math.floor((maxBuffer - SECTION_ALIGN - 16) / (quantsRowBytes + scalesRowBytes)),
  );
  if (rowsPerPart < 1) {
    throw new EngineError(
      'gpu-limits',
      `${name}: one row needs ${quantsRowBytes + scalesRowBytes} bytes but a GPU binding holds ${limit}; this GPU cannot hold the tensor`,
    );
  }

  const converting = pieces.some((p) => p.type !== gpuType);
  const rowFootprint = Math.max(
    quantsRowBytes + scalesRowBytes,
    ...pieces.map((p) => fileRowBytes(p.type, cols)),
    converting ? cols * 4 : 0,
  );
  const sliceRows = Math.max(1, Math.floor(SLICE_BYTES / rowFootprint));
  const parts: GpuWeightPart[] = [];
  const slices: UploadSlice[] = [];
  // Walk the pieces' rows in order while filling parts.
  let piece = 0;
  let pieceRow = 0;
  for (let rowStart = 0; rowStart < rows; rowStart += rowsPerPart) {
    const partRows = Math.min(rowsPerPart, rows - rowStart);
    const quantsBytes = partRows * quantsRowBytes;
    const scalesOffset = Math.ceil(quantsBytes / SECTION_ALIGN) * SECTION_ALIGN;
    const scalesBytes = Math.max(16, partRows * scalesRowBytes);
    const buffer = ctx.device.createBuffer({
      label: parts.length === 0 && rowsPerPart >= rows ? name : `${name}[${parts.length}]`,
      size: scalesOffset + scalesBytes,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
    });
    const part = { buffer, rowStart, rows: partRows, quantsBytes, scalesOffset, scalesBytes };
    parts.push(part);
    for (let r = 0; r < partRows; ) {
      const p = pieces[piece];
      const n = Math.min(sliceRows, partRows - r, p.rows - pieceRow);
      slices.push({ piece, type: p.type, pieceRow, rows: n, part, partRow: r });
      r += n;
      pieceRow += n;
      if (pieceRow === p.rows) {
        piece++;
        pieceRow = 0;
      }
    }
  }
  const weight: GpuWeight = {
    name,
    type: gpuType,
    sourceType,
    rows,
    cols,
    parts,
    bytes: parts.reduce((s, p) => s + p.buffer.size, 0),
  };
  return { weight, slices, quantsRowBytes, scalesRowBytes };
}

/** Repacks one slice's file bytes into the GPU layout and writes them into its part. */
function writeSlice(device: GPUDevice, plan: UploadPlan, slice: UploadSlice, src: Uint8Array): void {
  const { weight, quantsRowBytes, scalesRowBytes } = plan;
  const packed = repackRows(slice.type, weight.type, src, slice.rows, weight.cols);
  const { buffer, scalesOffset } = slice.part;
  device.queue.writeBuffer(buffer, slice.partRow * quantsRowBytes, packed.quants as Uint8Array<ArrayBuffer>);
  if (packed.scales) {
    device.queue.writeBuffer(
      buffer,
      scalesOffset + slice.partRow * scalesRowBytes,
      packed.scales as Float32Array<ArrayBuffer>,
    );
  }
}

export function destroyWeight(w: GpuWeight): void {
  for (const p of w.parts) p.buffer.destroy();
}

// ---------------------------------------------------------------------------------------------
// Repacking (CPU): n rows of file bytes → GPU layout bytes
// ---------------------------------------------------------------------------------------------

let f16Table: Float32Array | undefined;
function f16(bits: number): number {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table[bits];
}

/** Repack `n` rows of `srcType` file bytes into the `gpuType` layout (converting if they differ). */
export function repackRows(
  srcType: GgmlType,
  gpuType: GgmlType,
  src: Uint8Array,
  n: number,
  cols: number,
): { quants: Uint8Array; scales: Float32Array | null } {
  if (srcType !== gpuType) {
    const values = dequantize(srcType, src, n * cols);
    if (gpuType === GgmlType.F32) return repackRows(GgmlType.F32, GgmlType.F32, u8(values), n, cols);
    return repackRows(gpuType, gpuType, quantize(gpuType, values), n, cols);
  }
  const units = (n * cols) / UNIT;
  switch (gpuType) {
    case GgmlType.F32:
    case GgmlType.F16:
    case GgmlType.BF16:
      // Row-major element order is already the unit-major layout.
      return { quants: src, scales: null };
    case GgmlType.Q4_0:
    case GgmlType.Q8_0: {
      const qBytes = gpuType === GgmlType.Q4_0 ? 16 : 32;
      const blockBytes = qBytes + 2;
      const quants = new Uint8Array(units * qBytes);
      const scales = new Float32Array(units);
      for (let b = 0; b < units; b++) {
        const o = b * blockBytes;
        scales[b] = f16(src[o] | (src[o + 1] << 8));
        quants.set(src.subarray(o + 2, o + blockBytes), b * qBytes);
      }
      return { quants, scales };
    }
    case GgmlType.Q6_K:
      return { quants: repackQ6K(src, units / 8), scales: null };
    default:
      throw new EngineError('unsupported-model', `tensor type ${typeName(gpuType)} has no GPU kernel`);
  }
}

function u8(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * q6_K file blocks (ql[128], qh[64], int8 sc[16], f16 d) → 8 units of 32 bytes each. Element e of a
 * block has the 6-bit value q[e] (see dequantize in reference/ops.ts) and scale d·sc[e >> 4].
 */
function repackQ6K(src: Uint8Array, blocks: number): Uint8Array {
  const out = new Uint8Array(blocks * 256);
  const words = new Uint32Array(out.buffer);
  const floats = new Float32Array(out.buffer);
  const q = new Uint8Array(256);
  for (let b = 0; b < blocks; b++) {
    const base = 210 * b;
    const d = f16(src[base + 208] | (src[base + 209] << 8));
    for (let half = 0; half < 2; half++) {
      const ql = base + 64 * half;
      const qh = base + 128 + 32 * half;
      const y = 128 * half;
      for (let l = 0; l < 32; l++) {
        const h = src[qh + l];
        q[y + l] = (src[ql + l] & 0xf) | ((h & 3) << 4);
        q[y + l + 32] = (src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4);
        q[y + l + 64] = (src[ql + l] >> 4) | (((h >> 4) & 3) << 4);
        q[y + l + 96] = (src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4);
      }
    }
    for (let u = 0; u < 8; u++) {
      const e = 32 * u;
      const o = 256 * b + 32 * u; // byte offset of the unit
      for (let j = 0; j < 16; j++) out[o + j] = (q[e + j] & 0xf) | ((q[e + j + 16] & 0xf) << 4);
      let hi0 = 0;
      let hi1 = 0;
      for (let i = 0; i < 16; i++) {
        hi0 |= (q[e + i] >> 4) << (2 * i);
        hi1 |= (q[e + 16 + i] >> 4) << (2 * i);
      }
      const w = o / 4;
      words[w + 4] = hi0 >>> 0;
      words[w + 5] = hi1 >>> 0;
      const sc0 = (src[base + 192 + 2 * u] << 24) >> 24;
      const sc1 = (src[base + 192 + 2 * u + 1] << 24) >> 24;
      floats[w + 6] = d * sc0;
      floats[w + 7] = d * sc1;
    }
  }
  return out;
}
