/**
 * GPU weight layouts: GGUF tensor bytes → our buffers, repacked per tensor as it streams in. They
 * take no more GPU memory than the file (≤ 1.01× its tensor bytes, plus < 300 bytes of alignment
 * per part): scales stay f16 (unpack2x16float), and each block type is split into aligned arrays.
 *
 * Every matrix [R, C] (ggml ne = [C, R]; C a multiple of 32) is cut into **units** of 32
 * consecutive weights of one row; unit (r, u) has index r·U + u (U = C/32). Each part buffer holds
 * two sections that the kernels bind separately (bindings 0 and 1):
 *
 *   part buffer  ┌────────────────────────────────────────────┬──pad──┬──────────────────────────┐
 *                │ quants: QV vec4<u32> per unit, unit-major   │ → 256 │ aux: array<u32> (below)   │
 *                │ [u(0,0)][u(0,1)]…[u(0,U−1)][u(1,0)]…        │       │ 16-byte placeholder if —  │
 *                └────────────────────────────────────────────┴───────┴──────────────────────────┘
 *
 *   type  QV  one unit (32 weights) in quants                  aux (R = the part's rows)            bytes/32 (file)
 *   q4_0   1  the block's 16 nibble bytes (byte j: el. j | j+16) d: f16 bits, 2 per u32, ⌈U/2⌉ words/row  18 (18)
 *   q8_0   2  the block's 32 int8                               d: as q4_0                            34 (34)
 *   q6_K   1  low nibbles like q4_0                             hi: 2 u32/unit [R·U·2] │ sc: int8 ×2    26.25 (26.25)
 *                                                               per unit [R·U/2] │ d: f16 per 256, 2 per
 *                                                               u32, ⌈U/16⌉ words/row
 *   q4_K   1  nibbles like q4_0 (the file's 64-element           sm: the block's 12 bytes of packed     18 (18)
 *             interleave undone)                                6-bit scales/mins verbatim [R·U/8·3] │
 *                                                               dm: f16 d | dmin << 16 [R·U/8]
 *   q5_K   1  low nibbles like q4_0                             hi: 1 u32/unit [R·U] │ sm │ dm as q4_K  22 (22)
 *   q4_1   1  nibbles like q4_0                                 dm: f16 d | m << 16, 1 u32/unit [R·U]  20 (20)
 *   q5_0   1  low 4 bits like q4_0                              hi: fifth bits regrouped, 1 u32/unit  22 (22)
 *                                                               [R·U] │ d: as q4_0
 *   q5_1   1  low 4 bits like q4_0                              hi: as q5_0 │ dm: as q4_1            24 (24)
 *   iq4_nl 1  nibbles (level indices) like q4_0                 d: as q4_0                            18 (18)
 *   iq4_xs 1  the sub-block's 16 nibble bytes                   the block's first 8 bytes verbatim:   17 (17)
 *                                                               2 u32 per 256 weights [R·U/8·2]
 *   f16    4  halves verbatim, 2 per u32 (unpack2x16float)      —                                     64
 *   bf16   4  bf16 verbatim, 2 per u32 (<< 16 is the f32)       —                                     64
 *   f32    8  floats verbatim                                   —                                     128
 *
 * q6_K hi words: word 0 holds the top 2 bits of elements 0..15, word 1 of 16..31; element 16h + 4i
 * + j (i, j < 4) sits at bits 8j + 2i of word h, so `(hi >> 2i) & 0x03030303` puts the top bits of
 * elements 16h + 4i .. 16h + 4i + 3 in the four bytes (the order the integer dot product wants).
 * q5_K hi word of a unit: the 5th bit of element 16h + 4i + j at bit 8j + 4h + i, so
 * `(hi >> (4h + i)) & 0x01010101` puts those of elements 16h + 4i .. + 3 in the four bytes.
 * Per-row word counts are rounded up (⌈U/2⌉, ⌈U/16⌉) so every row starts on a word: rows can be
 * written slice by slice. A thread reading unit u of a row then u + TPR reads consecutive 16-byte
 * vectors across a thread group. The exact decoders are shaders/linear_decode_*.wgsl.
 *
 * Tensors larger than a binding (or a buffer) are split by rows into parts; the kernels run once per
 * part. Upload streams: rows are read (streamConcatenated), repacked (Repacker: word operations
 * into reused scratch) and written with queue.writeBuffer in slices of ≈ 4 MiB; slice k + 1 is
 * being read while slice k is repacked and written, so at most two slices of source bytes and one
 * of packed bytes are on the CPU, and every 256 MiB the upload waits for the GPU to take what was
 * written (the implementation's staging memory stays bounded).
 */
import { EngineError } from '../errors';
import { GgmlType, Q4_0_ENCODING_SOURCES, SUPPORTED_TYPES, typeName } from '../gguf/types';
import { quantize } from '../quant/quantize';
import { dequantize } from '../reference/ops';
import type { GpuContext } from './device';

/** Weights per unit of every GPU layout. */
export const UNIT = 32;
/** Storage-buffer offsets must be multiples of this (minStorageBufferOffsetAlignment ≤ 256). */
const SECTION_ALIGN = 256;
const SLICE_BYTES = 4 << 20;

/**
 * What the aux section holds: nothing, f16 scales (2 per u32), q6_K's hi | sc | d arrays, q4_K's
 * sm | dm arrays or q5_K's hi | sm | dm arrays; f16 d and m pairs (one u32 per unit: q4_1); q5_0's
 * hi | d; q5_1's hi | dm; iq4_xs's two words per 256.
 */
export type AuxKind = 'none' | 'f16' | 'q6k' | 'q4k' | 'q5k' | 'dm' | 'q5' | 'q5dm' | 'iq4xs';

/** vec4<u32> per unit in quants and the aux section's kind, per GPU layout type. */
export const GPU_LAYOUTS: ReadonlyMap<GgmlType, { qv: number; aux: AuxKind; kernel: string }> = new Map([
  [GgmlType.Q4_0, { qv: 1, aux: 'f16', kernel: 'q4_0' }],
  [GgmlType.Q8_0, { qv: 2, aux: 'f16', kernel: 'q8_0' }],
  [GgmlType.Q6_K, { qv: 1, aux: 'q6k', kernel: 'q6_k' }],
  [GgmlType.Q4_K, { qv: 1, aux: 'q4k', kernel: 'q4_k' }],
  [GgmlType.Q5_K, { qv: 1, aux: 'q5k', kernel: 'q5_k' }],
  [GgmlType.Q4_1, { qv: 1, aux: 'dm', kernel: 'q4_1' }],
  [GgmlType.Q5_0, { qv: 1, aux: 'q5', kernel: 'q5_0' }],
  [GgmlType.Q5_1, { qv: 1, aux: 'q5dm', kernel: 'q5_1' }],
  [GgmlType.IQ4_NL, { qv: 1, aux: 'f16', kernel: 'iq4_nl' }],
  [GgmlType.IQ4_XS, { qv: 1, aux: 'iq4xs', kernel: 'iq4_xs' }],
  [GgmlType.F16, { qv: 4, aux: 'none', kernel: 'f16' }],
  [GgmlType.BF16, { qv: 4, aux: 'none', kernel: 'bf16' }],
  [GgmlType.F32, { qv: 8, aux: 'none', kernel: 'f32' }],
]);

/**
 * Bytes per row of each array of the aux section, in section order; array k of a part of R rows
 * starts at Σ_{j<k} R · rowBytes[j]. Every entry is a multiple of 4.
 */
export function auxRowBytes(aux: AuxKind, units: number): number[] {
  if (aux === 'f16') return [Math.ceil(units / 2) * 4];
  if (aux === 'q6k') return [units * 8, units * 2, Math.ceil(units / 16) * 4];
  // q4_K / q5_K rows are whole 256-blocks (units a multiple of 8): 12 bytes of packed scales and
  // 4 of f16 d, dmin per block; q5_K adds one word of 5th bits per unit in front.
  if (aux === 'q4k') return [(units / 8) * 12, (units / 8) * 4];
  if (aux === 'q5k') return [units * 4, (units / 8) * 12, (units / 8) * 4];
  if (aux === 'dm') return [units * 4];
  if (aux === 'q5') return [units * 4, Math.ceil(units / 2) * 4];
  if (aux === 'q5dm') return [units * 4, units * 4];
  if (aux === 'iq4xs') return [units]; // 8 bytes per 8 units (U is a multiple of 8)
  return [];
}

export interface GpuWeightPart {
  buffer: GPUBuffer;
  /** GPU layout type of this part's rows (the weight's `type` unless its pieces mix types). */
  type: GgmlType;
  /** First row of the whole weight held by this part. */
  rowStart: number;
  rows: number;
  /** Bytes of the quants section (at offset 0). */
  quantsBytes: number;
  /** Offset and size of the aux section (binding 1; a 16-byte placeholder for types without one). */
  scalesOffset: number;
  scalesBytes: number;
  /** Bytes per row of the quants section and of each aux array (auxRowBytes of the part's type). */
  quantsRowBytes: number;
  auxRows: number[];
}

/**
 * Bindings 0 (quants) and 1 (aux) of a weight part: the same two sections for every kernel
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
  /**
   * Type of the GPU layout (after any --quantization-encoding conversion): of every part, or of the
   * first piece's where concatenated pieces mix integer layouts (see `partTypes`).
   */
  type: GgmlType;
  /** Type the file stored (of the first piece). */
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
  /** --quantization-encoding: 'q4_0' re-quantizes Q4_0_ENCODING_SOURCES; 'float32' dequantizes anything. */
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
  if (encoding === 'q4_0' && Q4_0_ENCODING_SOURCES.has(type)) return GgmlType.Q4_0;
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
  const { slices } = plan;
  const read = (i: number) => {
    const p = pieces[slices[i].piece].read(slices[i].pieceRow, slices[i].rows);
    p.catch(() => {}); // awaited below; a slice still in flight when another fails must not go unhandled
    return p;
  };
  try {
    // Slice i + 1 is being read while slice i is repacked and written (at most two on the CPU).
    let next = slices.length > 0 ? read(0) : null;
    for (let i = 0; i < slices.length; i++) {
      const slice = slices[i];
      const src = await next!;
      next = i + 1 < slices.length ? read(i + 1) : null;
      const want = fileRowBytes(slice.type, cols) * slice.rows;
      if (src.byteLength !== want) {
        throw new EngineError(
          'bad-gguf',
          `${name}: read ${src.byteLength} bytes for ${slice.rows} rows, not ${want}`,
        );
      }
      writeSlice(ctx.device, plan, slice, src);
      await boundStaging(ctx.device, want);
    }
  } catch (e) {
    destroyWeight(plan.weight);
    throw e;
  }
  return plan.weight;
}

/**
 * writeBuffer copies into staging memory that the implementation frees once the GPU has taken it:
 * after every STAGING_FLUSH_BYTES written, submit them and wait until the GPU has, so a model
 * loaded faster than the GPU takes it never holds more than that in staging.
 */
const STAGING_FLUSH_BYTES = 256 << 20;
const unflushed = new WeakMap<GPUDevice, number>();
async function boundStaging(device: GPUDevice, bytes: number): Promise<void> {
  const pending = (unflushed.get(device) ?? 0) + bytes;
  if (pending < STAGING_FLUSH_BYTES) {
    unflushed.set(device, pending);
    return;
  }
  unflushed.set(device, 0);
  device.queue.submit([]);
  await device.queue.onSubmittedWorkDone();
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
}

/**
 * Checks the shapes, creates the (empty) part buffers and cuts the rows into repack slices. Rows per
 * slice are bounded by the largest per-row footprint of the source bytes, the f32 intermediate of a
 * conversion and the GPU layout, so every transient array stays ≈ SLICE_BYTES. Pieces of different
 * integer layouts (a llama-quantize mix: q4_K q and k with a q6_K v) go into parts of their own
 * type: a part never mixes types, and Linear runs each part with its type's kernel.
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
  const pieceTypes = pieces.map((p) => gpuTypeFor(p.type, opts.encoding));
  for (const [i, p] of pieces.entries()) {
    // Only the integer layouts mix (every part then runs the integer mat-vec and its fusions).
    const mixable =
      GPU_LAYOUTS.get(pieceTypes[i])!.aux !== 'none' && GPU_LAYOUTS.get(gpuType)!.aux !== 'none';
    if (pieceTypes[i] !== gpuType && !mixable) {
      throw new EngineError(
        'unsupported-model',
        `${name}: cannot concatenate ${typeName(p.type)} rows with ${typeName(sourceType)} rows; convert them to one type (--quantization-encoding float32)`,
      );
    }
  }
  for (const p of pieces) {
    const blockSize = SUPPORTED_TYPES.get(p.type)!.blockSize;
    if (!Number.isInteger(cols) || cols <= 0 || cols % UNIT !== 0 || cols % blockSize !== 0) {
      throw new EngineError(
        'unsupported-model',
        `${name}: ${cols} columns is not a multiple of ${Math.max(UNIT, blockSize)}; the GPU kernels need whole 32-weight units`,
      );
    }
    if (!Number.isInteger(p.rows) || p.rows <= 0) {
      throw new EngineError('bad-gguf', `${name}: ${p.rows} rows × ${cols} ${typeName(p.type)}: no rows`);
    }
  }
  const rows = pieces.reduce((s, p) => s + p.rows, 0);
  const units = cols / UNIT;
  const limit = Math.min(
    opts.maxBindingSize ?? ctx.limits.maxStorageBufferBindingSize,
    ctx.limits.maxStorageBufferBindingSize,
  );
  const maxBuffer = ctx.limits.maxBufferSize;

  // Runs of consecutive pieces with one GPU type: [first piece, end piece).
  const runs: [number, number][] = [];
  for (let i = 0; i < pieces.length; i++) {
    if (i > 0 && pieceTypes[i] === pieceTypes[i - 1]) runs[runs.length - 1][1] = i + 1;
    else runs.push([i, i + 1]);
  }
  const single = runs.length === 1;
  const parts: GpuWeightPart[] = [];
  const slices: UploadSlice[] = [];
  let rowStart = 0;
  for (const [first, end] of runs) {
    const type = pieceTypes[first];
    const layout = GPU_LAYOUTS.get(type)!;
    const quantsRowBytes = units * layout.qv * 16;
    const auxRows = auxRowBytes(layout.aux, units);
    const scalesRowBytes = auxRows.reduce((a, b) => a + b, 0);
    const rowsPerPart = Math.min(
      Math.floor(limit / Math.max(quantsRowBytes, scalesRowBytes)),
      Math.floor((maxBuffer - SECTION_ALIGN - 16) / (quantsRowBytes + scalesRowBytes)),
    );
    if (rowsPerPart < 1) {
      throw new EngineError(
        'gpu-limits',
        `${name}: one row needs ${quantsRowBytes + scalesRowBytes} bytes but a GPU binding holds ${limit}; this GPU cannot hold the tensor`,
      );
    }
    const runPieces = pieces.slice(first, end);
    const converting = runPieces.some((p) => p.type !== type);
    const rowFootprint = Math.max(
      quantsRowBytes + scalesRowBytes,
      ...runPieces.map((p) => fileRowBytes(p.type, cols)),
      converting ? cols * 4 : 0,
    );
    const sliceRows = Math.max(1, Math.floor(SLICE_BYTES / rowFootprint));
    const runRows = runPieces.reduce((s, p) => s + p.rows, 0);
    // Walk the run's pieces' rows in order while filling parts.
    let piece = first;
    let pieceRow = 0;
    for (let runRow = 0; runRow < runRows; runRow += rowsPerPart) {
      const partRows = Math.min(rowsPerPart, runRows - runRow);
      const quantsBytes = partRows * quantsRowBytes;
      const scalesOffset = Math.ceil(quantsBytes / SECTION_ALIGN) * SECTION_ALIGN;
      const scalesBytes = Math.max(16, partRows * scalesRowBytes);
      const buffer = ctx.device.createBuffer({
        label: parts.length === 0 && single && rowsPerPart >= rows ? name : `${name}[${parts.length}]`,
        size: scalesOffset + scalesBytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST,
      });
      const part: GpuWeightPart = {
        buffer,
        type,
        rowStart: rowStart + runRow,
        rows: partRows,
        quantsBytes,
        scalesOffset,
        scalesBytes,
        quantsRowBytes,
        auxRows,
      };
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
    rowStart += runRows;
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
  return { weight, slices };
}

/**
 * Time spent repacking since the process started (the bench's `repackMBPerS`): file bytes of the
 * slices that needed a repack (quantized layouts, conversions) and the milliseconds it took.
 */
export const repackTotals = { sourceBytes: 0, ms: 0 };

/** One Repacker (its scratch: about one slice) per device, freed with the device. */
const repackers = new WeakMap<GPUDevice, Repacker>();

/** Repacks one slice's file bytes into its part's GPU layout and writes them into the part. */
function writeSlice(device: GPUDevice, plan: UploadPlan, slice: UploadSlice, src: Uint8Array): void {
  const { buffer, scalesOffset, rows, type, quantsRowBytes, auxRows } = slice.part;
  let repacker = repackers.get(device);
  if (!repacker) {
    repacker = new Repacker();
    repackers.set(device, repacker);
  }
  // The packed arrays are the repacker's scratch: writeBuffer copies them before returning.
  const t0 = performance.now();
  const packed = repacker.repack(slice.type, type, src, slice.rows, plan.weight.cols);
  if (packed.quants !== src) {
    repackTotals.ms += performance.now() - t0;
    repackTotals.sourceBytes += src.byteLength;
  }
  device.queue.writeBuffer(buffer, slice.partRow * quantsRowBytes, packed.quants as Uint8Array<ArrayBuffer>);
  let arrayOffset = scalesOffset;
  for (const [k, rowBytes] of auxRows.entries()) {
    device.queue.writeBuffer(
      buffer,
      arrayOffset + slice.partRow * rowBytes,
      packed.aux[k] as Uint8Array<ArrayBuffer>,
    );
    arrayOffset += rows * rowBytes;
  }
}

/** The GPU layout types of a weight's parts, in row order, once each (more than one: a mix). */
export function partTypes(w: GpuWeight): GgmlType[] {
  return [...new Set(w.parts.map((p) => p.type))];
}

export function destroyWeight(w: GpuWeight): void {
  for (const p of w.parts) p.buffer.destroy();
}

// ---------------------------------------------------------------------------------------------
// Repacking (CPU): n rows of file bytes → GPU layout bytes
// ---------------------------------------------------------------------------------------------

/**
 * Repack `n` rows of `srcType` file bytes into the `gpuType` layout (converting if they differ):
 * the quants section's bytes and each aux array's bytes (auxRowBytes order) for these rows, in
 * arrays of their own (the upload path reuses one Repacker's scratch instead).
 */
export function repackRows(
  srcType: GgmlType,
  gpuType: GgmlType,
  src: Uint8Array,
  n: number,
  cols: number,
): { quants: Uint8Array; aux: Uint8Array[] } {
  const out = new Repacker().repack(srcType, gpuType, src, n, cols);
  return { quants: out.quants.slice(), aux: out.aux.map((a) => a.slice()) };
}

function u8(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The repack reads and writes 16/32-bit words in the host's order; GPUs and every WebGPU host are little-endian. */
const LITTLE_ENDIAN = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

/**
 * The repack, written for speed (≥ 1 GB/s of file bytes on one core for q4_0 and q6_K,
 * scripts/bench/repack.ts): whole 32-bit words, no allocation per block, and scratch arrays that
 * live as long as the Repacker (one slice's worth, reused slice after slice). The arrays it returns
 * are views of that scratch: valid until the next `repack` call.
 *
 * Block sizes (18, 34, 210 bytes) are 2 mod 4, so every other block starts on a 2-byte boundary.
 * Instead of assembling words from halves, the source is seen through two word views: `a` (the
 * bytes as they are, 4-aligned) and `b` (the same bytes 2 bytes later): a field at an offset
 * ≡ 2 (mod 4) is a whole word of `b`.
 */
export class Repacker {
  private a = new ArrayBuffer(0);
  private b = new ArrayBuffer(0);
  private outs: ArrayBuffer[] = [];

  constructor() {
    if (!LITTLE_ENDIAN) {
      throw new EngineError(
        'unsupported-model',
        'this host is big-endian; the GPU weight layouts need a little-endian host',
      );
    }
  }

  /** Scratch array k of at least `bytes` bytes (grown, never shrunk), as a view of exactly `bytes`. */
  private out(k: number, bytes: number): Uint8Array {
    if ((this.outs[k]?.byteLength ?? -1) < bytes) this.outs[k] = new ArrayBuffer(Math.ceil(bytes / 4) * 4);
    return new Uint8Array(this.outs[k], 0, bytes);
  }

  /** `src` as words: a view when it is 4-aligned, else an aligned copy (one more word, zero-padded). */
  private aligned(src: Uint8Array): Uint32Array {
    if (src.byteOffset % 4 === 0 && src.byteLength % 4 === 0) {
      return new Uint32Array(src.buffer as ArrayBuffer, src.byteOffset, src.byteLength / 4);
    }
    const words = Math.ceil((src.byteLength + 2) / 4);
    if (this.a.byteLength < words * 4) this.a = new ArrayBuffer(words * 4);
    new Uint8Array(this.a).set(src);
    return new Uint32Array(this.a, 0, words);
  }

  /** Word views of `src` as is (`a`) and shifted 2 bytes later (`b`: src byte i is b byte i + 2). */
  private views(src: Uint8Array): { a: Uint32Array; b: Uint32Array } {
    const words = Math.ceil((src.byteLength + 2) / 4);
    if (this.b.byteLength < words * 4) this.b = new ArrayBuffer(words * 4);
    new Uint8Array(this.b).set(src, 2);
    return { a: this.aligned(src), b: new Uint32Array(this.b, 0, words) };
  }

  repack(
    srcType: GgmlType,
    gpuType: GgmlType,
    src: Uint8Array,
    n: number,
    cols: number,
  ): { quants: Uint8Array; aux: Uint8Array[] } {
    if (srcType !== gpuType) {
      const values = dequantize(srcType, src, n * cols);
      if (gpuType === GgmlType.F32) return this.repack(GgmlType.F32, GgmlType.F32, u8(values), n, cols);
      return this.repack(gpuType, gpuType, quantize(gpuType, values), n, cols);
    }
    const units = cols / UNIT;
    switch (gpuType) {
      case GgmlType.F32:
      case GgmlType.F16:
      case GgmlType.BF16:
        // Row-major element order is already the unit-major layout.
        return { quants: src, aux: [] };
      case GgmlType.Q4_0:
      case GgmlType.IQ4_NL: // the same block: f16 d, 16 nibble bytes (level indices)
        return this.blocks32(src, n, units, 4);
      case GgmlType.Q8_0:
        return this.blocks32(src, n, units, 8);
      case GgmlType.Q6_K:
        return this.q6k(src, n, units);
      // Less common types: the straightforward repacks (fresh arrays per slice).
      case GgmlType.Q4_K:
      case GgmlType.Q5_K:
        return repackQ45K(gpuType, src, n, units);
      case GgmlType.Q4_1:
      case GgmlType.Q5_0:
      case GgmlType.Q5_1:
        return repackQ4Q5(gpuType, src, n, units);
      case GgmlType.IQ4_XS:
        return repackIq4Xs(src, n, units);
      default:
        throw new EngineError('unsupported-model', `tensor type ${typeName(gpuType)} has no GPU kernel`);
    }
  }

  /**
   * q4_0 / q8_0 (blocks of f16 d, then `qWords` words of quants): the quants verbatim, unit after
   * unit; d's f16 bits, ⌈U/2⌉ words per row (a row with odd U ends with a zero half).
   */
  private blocks32(src: Uint8Array, n: number, units: number, qWords: number) {
    const blockBytes = 4 * qWords + 2;
    const quantsBytes = n * units * 4 * qWords;
    const rowHalves = 2 * Math.ceil(units / 2);
    const quants = new Uint32Array(this.out(0, quantsBytes).buffer, 0, quantsBytes / 4);
    const scales8 = this.out(1, n * rowHalves * 2);
    const scales = new Uint16Array(scales8.buffer, 0, n * rowHalves);
    if (units % 2 === 0) {
      // Two blocks are 2·qWords + 1 whole words, and an even U starts every row on a pair:
      // [d0 | q0 (shifted by a half word) | d1 | q1 (aligned)].
      const a = this.aligned(src);
      const pairWords = 2 * qWords + 1;
      let q = 0;
      let w = 0;
      for (let p = 0, pairs = (n * units) / 2; p < pairs; p++, w += pairWords) {
        scales[2 * p] = a[w] & 0xffff;
        scales[2 * p + 1] = a[w + qWords] >>> 16;
        for (let k = 0; k < qWords; k++) quants[q++] = (a[w + k] >>> 16) | (a[w + k + 1] << 16);
        for (let k = 1; k <= qWords; k++) quants[q++] = a[w + qWords + k];
      }
      return { quants: new Uint8Array(quants.buffer, 0, quantsBytes), aux: [scales8] };
    }
    const { a, b } = this.views(src);
    const a16 = new Uint16Array(a.buffer, a.byteOffset, a.length * 2);
    let blk = 0;
    let q = 0;
    for (let r = 0; r < n; r++) {
      const row = r * rowHalves;
      for (let u = 0; u < units; u++, blk++) {
        const off = blk * blockBytes; // even
        scales[row + u] = a16[off >> 1];
        // The quants start at off + 2: a word of `a` when that is ≡ 0 (mod 4), else of `b`.
        const from = (off + 2) & 2 ? b : a;
        let w = (off + 2 + ((off + 2) & 2)) >> 2;
        for (let k = 0; k < qWords; k++) quants[q++] = from[w++];
      }
      scales[row + units] = 0;
    }
    return { quants: new Uint8Array(quants.buffer, 0, quantsBytes), aux: [scales8] };
  }

  /**
   * q6_K file rows (blocks of ql[128], qh[64], int8 sc[16], f16 d) → quants (low nibbles, like
   * q4_0), hi (2 words per unit), sc (the two int8 scales of each unit, verbatim) and d (the block's
   * f16 bits, ⌈U/16⌉ words per row). Unit u of a block (half h = u >> 2, quarter k = u & 3) holds
   * elements 128h + 32k + l (l < 32): the low nibble is nibble k >> 1 of ql[64h + 32(k & 1) + l],
   * the top two bits are bits 2k of qh[32h + l] (dequantize in reference/ops.ts), so each output
   * word comes from whole source words with masks and shifts.
   */
  private q6k(src: Uint8Array, n: number, units: number) {
    const blocksPerRow = units / 8;
    const { a, b } = this.views(src);
    const unitsAll = n * units;
    const quants = new Uint32Array(this.out(0, unitsAll * 16).buffer, 0, unitsAll * 4);
    const hi = new Uint32Array(this.out(1, unitsAll * 8).buffer, 0, unitsAll * 2);
    const sc = new Uint32Array(this.out(2, unitsAll * 2).buffer, 0, unitsAll / 2);
    const rowHalves = 2 * Math.ceil(units / 16);
    const d8 = this.out(3, n * rowHalves * 2);
    const d = new Uint16Array(d8.buffer, 0, n * rowHalves);
    let blk = 0;
    for (let r = 0; r < n; r++) {
      const row = r * rowHalves;
      for (let rb = 0; rb < blocksPerRow; rb++, blk++) {
        const off = 210 * blk;
        // Every field of a block sits at a multiple of 4 from its start.
        const v = off & 2 ? b : a;
        const w = (off + (off & 2)) >> 2;
        for (let h = 0; h < 2; h++) {
          const ql = w + 16 * h; // words of ql[64h ..]: quarters 0, 2 read [0, 8), quarters 1, 3 [8, 16)
          const o = 4 * (8 * blk + 4 * h); // quants words of unit 4h
          for (let j = 0; j < 4; j++) {
            const l0 = v[ql + j];
            const l1 = v[ql + j + 4];
            const l2 = v[ql + j + 8];
            const l3 = v[ql + j + 12];
            quants[o + j] = (l0 & 0x0f0f0f0f) | ((l1 & 0x0f0f0f0f) << 4);
            quants[o + 4 + j] = (l2 & 0x0f0f0f0f) | ((l3 & 0x0f0f0f0f) << 4);
            quants[o + 8 + j] = ((l0 >>> 4) & 0x0f0f0f0f) | (l1 & 0xf0f0f0f0);
            quants[o + 12 + j] = ((l2 >>> 4) & 0x0f0f0f0f) | (l3 & 0xf0f0f0f0);
          }
          // hi word g of quarter k: bits 8j + 2i hold the top bits of element 16g + 4i + j, i.e.
          // bits 2k of qh[32h + 16g + 4i + j].
          const qh = w + 32 + 8 * h;
          const hw = 2 * (8 * blk + 4 * h);
          for (let g = 0; g < 2; g++) {
            const q0 = v[qh + 4 * g];
            const q1 = v[qh + 4 * g + 1];
            const q2 = v[qh + 4 * g + 2];
            const q3 = v[qh + 4 * g + 3];
            for (let k = 0; k < 4; k++) {
              const s = 2 * k;
              hi[hw + 2 * k + g] =
                ((q0 >>> s) & 0x03030303) |
                (((q1 >>> s) & 0x03030303) << 2) |
                (((q2 >>> s) & 0x03030303) << 4) |
                (((q3 >>> s) & 0x03030303) << 6);
            }
          }
        }
        // sc[16] verbatim (two per unit, in unit order), d's f16 bits: the low half of word 52.
        const so = 4 * blk;
        sc[so] = v[w + 48];
        sc[so + 1] = v[w + 49];
        sc[so + 2] = v[w + 50];
        sc[so + 3] = v[w + 51];
        d[row + rb] = v[w + 52] & 0xffff;
      }
      if (blocksPerRow & 1) d[row + blocksPerRow] = 0;
    }
    return {
      quants: new Uint8Array(quants.buffer, 0, unitsAll * 16),
      aux: [new Uint8Array(hi.buffer, 0, unitsAll * 8), new Uint8Array(sc.buffer, 0, unitsAll * 2), d8],
    };
  }
}

/**
 * q4_K / q5_K file rows (blocks of f16 d, f16 dmin, scales[12], [q5_K: qh[32]], qs[128]) → our
 * arrays for `n` rows of `units` units: quants (nibbles like q4_0: byte j = element j | element
 * j + 16 << 4), [q5_K: hi, one word per unit], sm (the 12 scale bytes verbatim) and dm (d, dmin
 * verbatim). Element 32u + e of a block (unit u) is nibble (qs[32·(u >> 1) + e] >> 4·(u & 1)) & 15
 * plus 16 if bit u of qh[e] is set (q5_K); see dequantize in reference/ops.ts.
 */
function repackQ45K(
  type: GgmlType,
  src: Uint8Array,
  n: number,
  units: number,
): { quants: Uint8Array; aux: Uint8Array[] } {
  const five = type === GgmlType.Q5_K;
  const blockBytes = five ? 176 : 144;
  const qsAt = five ? 48 : 16;
  const blocks = (n * units) / 8;
  const quants = new Uint8Array(n * units * 16);
  const hi = five ? new Uint32Array(n * units) : undefined;
  const sm = new Uint8Array(blocks * 12);
  const dm = new Uint8Array(blocks * 4);
  for (let b = 0; b < blocks; b++) {
    const base = blockBytes * b;
    dm.set(src.subarray(base, base + 4), 4 * b);
    sm.set(src.subarray(base + 4, base + 16), 12 * b);
    for (let u = 0; u < 8; u++) {
      const qs = base + qsAt + 32 * (u >> 1);
      const shift = 4 * (u & 1);
      const o = 16 * (8 * b + u);
      for (let j = 0; j < 16; j++) {
        quants[o + j] = ((src[qs + j] >> shift) & 0xf) | (((src[qs + j + 16] >> shift) & 0xf) << 4);
      }
      if (hi) {
        let word = 0;
        for (let e = 0; e < 32; e++) {
          const bit = (src[base + 16 + e] >> u) & 1;
          const h = e >> 4;
          const i = (e >> 2) & 3;
          const j = e & 3;
          word |= bit << (8 * j + 4 * h + i);
        }
        hi[8 * b + u] = word >>> 0;
      }
    }
  }
  return { quants, aux: hi ? [new Uint8Array(hi.buffer), sm, dm] : [sm, dm] };
}

/**
 * q5 high bits of one unit, regrouped for the integer dot product: the file's qh has element e's
 * fifth bit at bit e; ours has element 4i + j at bit 8j + i and element 16 + 4i + j at bit
 * 8j + 4 + i (i, j < 4), so `(hi >> i) & 0x01010101` (resp. `>> 4 + i`) gives the fifth bits of
 * elements 4i..4i+3 (resp. 16 + 4i..) in the four bytes.
 */
export function regroupQ5High(qh: number): number {
  let word = 0;
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      word |= ((qh >>> (4 * i + j)) & 1) << (8 * j + i);
      word |= ((qh >>> (16 + 4 * i + j)) & 1) << (8 * j + 4 + i);
    }
  }
  return word >>> 0;
}

/**
 * q4_1 / q5_0 / q5_1 file rows → quants (the 16 nibble bytes verbatim, as q4_0) and aux:
 * q4_1 [dm]: the block's f16 d and m, one u32 per unit; q5_0 [hi | d]: regrouped high bits (one
 * u32 per unit), then f16 d two per u32 (⌈U/2⌉ words per row); q5_1 [hi | dm].
 */
function repackQ4Q5(
  type: GgmlType,
  src: Uint8Array,
  n: number,
  units: number,
): { quants: Uint8Array; aux: Uint8Array[] } {
  const hasMin = type !== GgmlType.Q5_0;
  const hasHigh = type !== GgmlType.Q4_1;
  const blockBytes = type === GgmlType.Q4_1 ? 20 : type === GgmlType.Q5_0 ? 22 : 24;
  const qsOffset = blockBytes - 16;
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const quants = new Uint8Array(n * units * 16);
  const hi = new Uint32Array(hasHigh ? n * units : 0);
  const dm = new Uint8Array(hasMin ? n * units * 4 : 0);
  const rowHalves = 2 * Math.ceil(units / 2);
  const d = new Uint8Array(hasMin ? 0 : n * rowHalves * 2);
  for (let r = 0; r < n; r++) {
    for (let u = 0; u < units; u++) {
      const b = r * units + u;
      const o = b * blockBytes;
      quants.set(src.subarray(o + qsOffset, o + blockBytes), 16 * b);
      if (hasMin) dm.set(src.subarray(o, o + 4), 4 * b);
      else {
        const h = 2 * (r * rowHalves + u);
        d[h] = src[o];
        d[h + 1] = src[o + 1];
      }
      if (hasHigh) hi[b] = regroupQ5High(view.getUint32(o + (hasMin ? 4 : 2), true));
    }
  }
  const hiBytes = new Uint8Array(hi.buffer);
  if (type === GgmlType.Q4_1) return { quants, aux: [dm] };
  if (type === GgmlType.Q5_0) return { quants, aux: [hiBytes, d] };
  return { quants, aux: [hiBytes, dm] };
}

/**
 * iq4_xs file rows (blocks of f16 d, u16 scales_h, scales_l[4], qs[128]) → quants (each 32-weight
 * sub-block's 16 nibble bytes, as iq4_nl) and aux: the block's first 8 bytes verbatim, two u32 per
 * 256 weights (word 0 = d | scales_h << 16, word 1 = scales_l): 17 bytes per 32 weights, as the file.
 */
function repackIq4Xs(src: Uint8Array, n: number, units: number): { quants: Uint8Array; aux: Uint8Array[] } {
  const blocks = (n * units) / 8;
  const quants = new Uint8Array(n * units * 16);
  const aux = new Uint8Array(blocks * 8);
  for (let b = 0; b < blocks; b++) {
    aux.set(src.subarray(136 * b, 136 * b + 8), 8 * b);
    quants.set(src.subarray(136 * b + 8, 136 * b + 136), 128 * b);
  }
  return { quants, aux: [aux] };
}
