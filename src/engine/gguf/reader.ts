/**
 * The GGUF header reader: paranoid, streaming, never the whole file in memory.
 *
 * One synchronous parser walks the header item by item (fixed header, each metadata entry, each
 * tensor info) over a window of bytes. When an item runs past the window it throws `NeedMore`; the
 * driver fetches more bytes (a bigger random-access read, or more chunks of a download), rewinds to
 * the start of that item and tries again. Windows grow geometrically, so the 8 MB Llama 3 header is
 * parsed in a handful of reads and each byte is re-parsed O(1) times on average.
 *
 * Every count and length is checked against the bytes that can still exist (the file size when
 * known, else the header limit) before anything is allocated; every failure is an EngineError
 * naming the field, the value and the allowed range. See docs/gguf.md for the rules.
 */
import { EngineError } from '../errors';
import { quoteText } from '../safe-text';
import type { RandomAccessSource } from '../source';
import {
  GGML_TYPE_TRAITS,
  type GgufFile,
  type GgufValue,
  GgufValueType,
  KNOWN_TYPE_NAMES,
  type TensorInfo,
  typeName,
} from './types';

export interface GgufReadOptions {
  /** First header window in bytes (default 1 MiB); each further read doubles it. */
  initialWindow?: number;
  /**
   * Largest header accepted, in bytes (default 64 MiB; the Llama 3 header is ~8 MB). Bounds memory
   * on hostile or non-GGUF input, above all on streams whose size is unknown.
   */
  maxHeaderBytes?: number;
  /** Largest metadata array accepted (default 4,194,304 elements; vocabularies have < 300k). */
  maxArrayLength?: number;
}

const DEFAULT_WINDOW = 1 << 20;
const DEFAULT_MAX_HEADER = 64 << 20;
const DEFAULT_MAX_ARRAY = 1 << 22;
const MAX_DIMS = 4; // GGML_MAX_DIMS
const MAX_ARRAY_DEPTH = 4; // arrays of arrays of ...: real files nest at most once
const MAX_ALIGNMENT = 1 << 20;
const DEFAULT_ALIGNMENT = 32;
/** Smallest encoding of one tensor info: name length u64, n_dims u32, one dim u64, type u32, offset u64. */
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8;
/** Smallest encoding of one metadata entry: key length u64, value type u32, a one-byte value. */
const MIN_KV_BYTES = 8 + 4 + 1;

const VALUE_TYPE_NAMES = [
  'uint8',
  'int8',
  'uint16',
  'int16',
  'uint32',
  'int32',
  'float32',
  'bool',
  'string',
  'array',
  'uint64',
  'int64',
  'float64',
];
/** Smallest encoding of one value of each type (string: its u64 length; array: type + count). */
const MIN_VALUE_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

function bad(message: string): EngineError {
  return new EngineError('bad-gguf', message);
}

/** Quotes a name from the file for a message: control characters escaped, cut to 100 characters. */
function q(s: string): string {
  return quoteText(s, 100);
}

/** Thrown inside the parser when the window ends before the item does; never escapes this module. */
class NeedMore {
  constructor(readonly upTo: number) {}
}

const utf8 = new TextDecoder('utf-8');

interface ParseLimits {
  fileSize: number | undefined;
  maxHeaderBytes: number;
  maxArrayLength: number;
}

/**
 * The header parser over one growing window of file bytes. `base` is the file offset of `buf[0]`;
 * `ended` says no bytes exist past the window (end of file or of the stream).
 */
class HeaderParser {
  buf: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(this.buf.buffer);
  base = 0;
  end = 0;
  ended = false;
  /** Absolute read position. */
  pos = 0;
  /** Start of the first item not yet committed: the window must keep bytes from here. */
  committed = 0;
  /** What is being parsed, for messages ("metadata "llama.block_count"", "tensor "output.weight""). */
  ctx = 'header';

  // Header state, committed item by item.
  version = 0;
  nTensors = -1;
  nKv = -1;
  metadata = new Map<string, GgufValue>();
  private kvIndex = new Map<string, number>();
  tensorsRel: TensorInfo[] = []; // offsets relative to the data section until `finish`
  private tensorIndex = new Map<string, number>();

  constructor(readonly limits: ParseLimits) {}

  /** Replaces the window with `bytes` (file offset `base`), keeping nothing else. */
  setWindow(base: number, bytes: Uint8Array, ended: boolean) {
    this.buf = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.base = base;
    this.end = base + bytes.byteLength;
    this.ended = ended;
  }

  /** Appends bytes to the window, dropping what lies before the first uncommitted item. */
  append(parts: Uint8Array[], ended: boolean) {
    const keep = this.buf.subarray(this.committed - this.base);
    let n = keep.byteLength;
    for (const p of parts) n += p.byteLength;
    const next = new Uint8Array(n);
    next.set(keep, 0);
    let at = keep.byteLength;
    for (const p of parts) {
      next.set(p, at);
      at += p.byteLength;
    }
    this.setWindow(this.committed, next, ended);
  }

  /** Bytes that may still exist after `pos`: bounded by the file size, the header limit, the stream end. */
  private available(): number {
    let limit = Math.min(this.limits.fileSize ?? Number.POSITIVE_INFINITY, this.limits.maxHeaderBytes);
    if (this.ended) limit = Math.min(limit, this.end);
    return limit - this.pos;
  }

  private need(n: number, what: string) {
    if (this.pos + n > this.end) this.short(n, what);
  }

  private short(n: number, what: string): never {
    const at = this.pos;
    const { fileSize, maxHeaderBytes } = this.limits;
    if (fileSize !== undefined && at + n > fileSize) {
      throw bad(
        `${this.ctx}: ${what} needs ${n} bytes at offset ${at}, but the file ends at byte ${fileSize} ` +
          `(${Math.max(0, fileSize - at)} bytes left): the file is truncated or corrupt`,
      );
    }
    if (at + n > maxHeaderBytes) {
      throw bad(
        `${this.ctx}: ${what} needs ${n} bytes at offset ${at}, past the ${maxHeaderBytes}-byte header limit: ` +
          'GGUF headers are a few MB, so the file is corrupt or not a GGUF model',
      );
    }
    if (this.ended) {
      throw bad(
        `${this.ctx}: ${what} needs ${n} bytes at offset ${at}, but the data ends at byte ${this.end}: ` +
          'the file is truncated',
      );
    }
    throw new NeedMore(at + n);
  }

  /** Checks that `count` items of at least `minBytes` each can still fit, before allocating for them. */
  private checkCount(count: number, minBytes: number, what: string) {
    const avail = this.available();
    if (count * minBytes > avail) {
      const where =
        this.limits.fileSize !== undefined || this.ended
          ? 'remain in the file'
          : `remain under the ${this.limits.maxHeaderBytes}-byte header limit`;
      throw bad(
        `${this.ctx}: ${what} is ${count}, which needs at least ${count * minBytes} bytes, but only ` +
          `${Math.max(0, avail)} bytes ${where}`,
      );
    }
  }

  private u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++ - this.base];
  }

  private u32(what: string): number {
    this.need(4, what);
    const v = this.dv.getUint32(this.pos - this.base, true);
    this.pos += 4;
    return v;
  }

  /** A u64 length/count/offset/dim as a number; above 2^53 − 1 it is an error, never a rounding. */
  private u64n(what: string): number {
    this.need(8, what);
    const o = this.pos - this.base;
    const lo = this.dv.getUint32(o, true);
    const hi = this.dv.getUint32(o + 4, true);
    if (hi > 0x1fffff) {
      const v = (BigInt(hi) << 32n) | BigInt(lo);
      throw bad(`${this.ctx}: ${what} is ${v}; allowed at most 2^53 − 1 (${Number.MAX_SAFE_INTEGER})`);
    }
    this.pos += 8;
    return hi * 0x100000000 + lo;
  }

  private string(what: string): string {
    const len = this.u64n(`${what} length`);
    this.need(len, what); // before slicing: a hostile length fails here, never allocates
    const s = this.pos - this.base;
    this.pos += len;
    return decodeUtf8(this.buf, s, s + len);
  }

  /** Parses as many items as the window holds; throws NeedMore (to be fed and retried) or EngineError. */
  run() {
    if (this.nKv < 0) {
      this.ctx = 'header';
      this.need(4, 'magic');
      const m = this.buf.subarray(this.pos - this.base, this.pos - this.base + 4);
      if (m[0] !== 0x47 || m[1] !== 0x47 || m[2] !== 0x55 || m[3] !== 0x46) throw badMagic(m);
      this.pos += 4;
      const version = this.u32('version');
      if (version === 1) {
        throw bad(
          'header: GGUF version 1 is not supported (files from before llama.cpp’s August 2023 format); ' +
            'convert the model again with a current llama.cpp',
        );
      }
      if (version === 0x02000000 || version === 0x03000000) {
        throw bad(
          'header: this is a big-endian GGUF file; only little-endian GGUF (versions 2 and 3) is supported',
        );
      }
      if (version !== 2 && version !== 3) {
        throw bad(`header: unknown GGUF version ${version}; this reader knows versions 2 and 3`);
      }
      const nTensors = this.u64n('tensor count');
      this.checkCount(nTensors, MIN_TENSOR_INFO_BYTES, 'tensor count');
      const nKv = this.u64n('metadata count');
      this.checkCount(nKv, MIN_KV_BYTES, 'metadata count');
      this.version = version;
      this.nTensors = nTensors;
      this.nKv = nKv;
      this.committed = this.pos;
    }
    while (this.metadata.size < this.nKv) {
      const i = this.metadata.size;
      this.ctx = `metadata entry ${i} of ${this.nKv}`;
      const key = this.string('key');
      this.ctx = `metadata ${q(key)}`;
      const type = this.u32('value type');
      const value = this.value(type, 0, 'value');
      const prev = this.kvIndex.get(key);
      if (prev !== undefined) {
        throw bad(`metadata key ${q(key)} appears twice (entries ${prev} and ${i}); keys must be unique`);
      }
      this.kvIndex.set(key, i);
      this.metadata.set(key, value);
      this.committed = this.pos;
    }
    while (this.tensorsRel.length < this.nTensors) {
      const i = this.tensorsRel.length;
      this.ctx = `tensor info ${i} of ${this.nTensors}`;
      const name = this.string('name');
      this.ctx = `tensor ${q(name)}`;
      const nDims = this.u32('n_dims');
      if (nDims < 1 || nDims > MAX_DIMS) throw bad(`${this.ctx}: n_dims is ${nDims}; allowed 1–${MAX_DIMS}`);
      const dims: number[] = [];
      let elements = 1;
      for (let d = 0; d < nDims; d++) {
        const ne = this.u64n(`dims[${d}]`);
        if (ne < 1) throw bad(`${this.ctx}: dims[${d}] is ${ne}; every dimension must be at least 1`);
        dims.push(ne);
        elements *= ne;
        if (elements > Number.MAX_SAFE_INTEGER) {
          throw bad(`${this.ctx}: element count of dims [${dims.join(', ')}…] exceeds 2^53 − 1`);
        }
      }
      const type = this.u32('type');
      const tr = GGML_TYPE_TRAITS.get(type);
      if (!tr) {
        throw new EngineError(
          'unsupported-model',
          `${this.ctx}: unknown tensor type id ${type} (known ggml types: ` +
            `${[...GGML_TYPE_TRAITS.keys()].map((t) => `${t} ${KNOWN_TYPE_NAMES[t]}`).join(', ')}); ` +
            'the file may come from a newer llama.cpp',
        );
      }
      if (dims[0] % tr.blockSize !== 0) {
        throw bad(
          `${this.ctx}: dims[0] is ${dims[0]}, not a multiple of the ${tr.name} block size ${tr.blockSize}: ` +
            'its byte size is undefined',
        );
      }
      const byteLength = (elements / tr.blockSize) * tr.bytesPerBlock;
      if (byteLength > Number.MAX_SAFE_INTEGER) {
        throw bad(`${this.ctx}: ${byteLength} bytes of ${tr.name} data exceed 2^53 − 1`);
      }
      const offset = this.u64n('offset');
      const prev = this.tensorIndex.get(name);
      if (prev !== undefined) {
        throw bad(
          `tensor name ${q(name)} appears twice (tensor infos ${prev} and ${i}); names must be unique`,
        );
      }
      this.tensorIndex.set(name, i);
      this.tensorsRel.push({ name, dims, type, offset, byteLength, elements });
      this.committed = this.pos;
    }
  }

  private value(type: number, depth: number, what: string): GgufValue {
    switch (type) {
      case GgufValueType.UINT8:
        return this.u8(what);
      case GgufValueType.INT8:
        this.need(1, what);
        return this.dv.getInt8(this.pos++ - this.base);
      case GgufValueType.UINT16:
        this.need(2, what);
        this.pos += 2;
        return this.dv.getUint16(this.pos - 2 - this.base, true);
      case GgufValueType.INT16:
        this.need(2, what);
        this.pos += 2;
        return this.dv.getInt16(this.pos - 2 - this.base, true);
      case GgufValueType.UINT32:
        return this.u32(what);
      case GgufValueType.INT32:
        this.need(4, what);
        this.pos += 4;
        return this.dv.getInt32(this.pos - 4 - this.base, true);
      case GgufValueType.FLOAT32:
        this.need(4, what);
        this.pos += 4;
        return this.dv.getFloat32(this.pos - 4 - this.base, true);
      case GgufValueType.BOOL: {
        const b = this.u8(what);
        if (b > 1) throw bad(`${this.ctx}: ${what} is a bool with byte ${b}; allowed 0 or 1`);
        return b === 1;
      }
      case GgufValueType.STRING:
        return this.string(what);
      case GgufValueType.ARRAY:
        return this.array(depth, what);
      case GgufValueType.UINT64:
        this.need(8, what);
        this.pos += 8;
        return this.dv.getBigUint64(this.pos - 8 - this.base, true);
      case GgufValueType.INT64:
        this.need(8, what);
        this.pos += 8;
        return this.dv.getBigInt64(this.pos - 8 - this.base, true);
      case GgufValueType.FLOAT64:
        this.need(8, what);
        this.pos += 8;
        return this.dv.getFloat64(this.pos - 8 - this.base, true);
      default:
        throw bad(
          `${this.ctx}: ${what} has unknown value type ${type}; allowed 0–12 (${VALUE_TYPE_NAMES.join(', ')})`,
        );
    }
  }

  private array(depth: number, what: string): GgufValue[] {
    if (depth >= MAX_ARRAY_DEPTH) {
      throw bad(`${this.ctx}: ${what} nests arrays ${depth + 1} deep; allowed at most ${MAX_ARRAY_DEPTH}`);
    }
    const et = this.u32(`${what} element type`);
    if (et > GgufValueType.FLOAT64) {
      throw bad(
        `${this.ctx}: ${what} has unknown array element type ${et}; allowed 0–12 (${VALUE_TYPE_NAMES.join(', ')})`,
      );
    }
    const count = this.u64n(`${what} count`);
    if (count > this.limits.maxArrayLength) {
      throw bad(
        `${this.ctx}: ${what} count is ${count}; allowed at most ${this.limits.maxArrayLength} elements`,
      );
    }
    this.checkCount(count, MIN_VALUE_BYTES[et], `${what} count`);
    const out: GgufValue[] = [];
    if (et === GgufValueType.STRING) {
      // The vocabulary's hot loop: `string()` inlined, messages built only on the error path.
      for (let i = 0; i < count; i++) {
        if (this.pos + 8 > this.end) this.short(8, `${what}[${i}] length`);
        const o = this.pos - this.base;
        if (this.dv.getUint32(o + 4, true) > 0x1fffff) this.u64n(`${what}[${i}] length`); // throws
        const len = this.dv.getUint32(o, true) + this.dv.getUint32(o + 4, true) * 0x100000000;
        this.pos += 8;
        if (this.pos + len > this.end) this.short(len, `${what}[${i}]`);
        this.pos += len;
        out.push(decodeUtf8(this.buf, o + 8, o + 8 + len));
      }
      return out;
    }
    if (et === GgufValueType.ARRAY || et === GgufValueType.BOOL) {
      for (let i = 0; i < count; i++) out.push(this.value(et, depth + 1, `${what}[${i}]`));
      return out;
    }
    // Fixed-size numbers: one bounds check for the whole run, then a tight loop.
    const size = MIN_VALUE_BYTES[et];
    this.need(count * size, `${what} data`);
    const dv = this.dv;
    let o = this.pos - this.base;
    this.pos += count * size;
    switch (et) {
      case GgufValueType.UINT8:
        for (let i = 0; i < count; i++) out.push(dv.getUint8(o++));
        break;
      case GgufValueType.INT8:
        for (let i = 0; i < count; i++) out.push(dv.getInt8(o++));
        break;
      case GgufValueType.UINT16:
        for (let i = 0; i < count; i++, o += 2) out.push(dv.getUint16(o, true));
        break;
      case GgufValueType.INT16:
        for (let i = 0; i < count; i++, o += 2) out.push(dv.getInt16(o, true));
        break;
      case GgufValueType.UINT32:
        for (let i = 0; i < count; i++, o += 4) out.push(dv.getUint32(o, true));
        break;
      case GgufValueType.INT32:
        for (let i = 0; i < count; i++, o += 4) out.push(dv.getInt32(o, true));
        break;
      case GgufValueType.FLOAT32:
        for (let i = 0; i < count; i++, o += 4) out.push(dv.getFloat32(o, true));
        break;
      case GgufValueType.UINT64:
        for (let i = 0; i < count; i++, o += 8) out.push(dv.getBigUint64(o, true));
        break;
      case GgufValueType.INT64:
        for (let i = 0; i < count; i++, o += 8) out.push(dv.getBigInt64(o, true));
        break;
      case GgufValueType.FLOAT64:
        for (let i = 0; i < count; i++, o += 8) out.push(dv.getFloat64(o, true));
        break;
    }
    return out;
  }

  /** After the last tensor info: alignment, data offset, and every tensor's placement. */
  finish(): GgufFile {
    const headerEnd = this.pos;
    const alignment = alignmentOf(this.metadata);
    const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
    const { fileSize } = this.limits;
    const tensors: TensorInfo[] = [];
    for (const t of this.tensorsRel) {
      const where = `tensor ${q(t.name)}`;
      if (t.offset % alignment !== 0) {
        throw bad(`${where}: data offset ${t.offset} is not a multiple of the alignment ${alignment}`);
      }
      const offset = dataOffset + t.offset;
      const end = offset + t.byteLength;
      if (end > Number.MAX_SAFE_INTEGER) throw bad(`${where}: data end ${end} exceeds 2^53 − 1`);
      if (fileSize !== undefined && end > fileSize) {
        throw bad(
          `${where}: data [${offset}, ${end}) (${t.byteLength} bytes of ${typeName(t.type)}) runs past ` +
            `the end of the file at ${fileSize} bytes: the file is truncated or corrupt`,
        );
      }
      tensors.push({ ...t, offset });
    }
    const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < byOffset.length; i++) {
      const a = byOffset[i - 1];
      const b = byOffset[i];
      if (a.offset + a.byteLength > b.offset) {
        throw bad(
          `tensor ${q(a.name)} [${a.offset}, ${a.offset + a.byteLength}) overlaps tensor ${q(b.name)} ` +
            `[${b.offset}, ${b.offset + b.byteLength})`,
        );
      }
    }
    return { version: this.version, metadata: this.metadata, tensors, dataOffset, alignment, fileSize };
  }
}

function alignmentOf(metadata: Map<string, GgufValue>): number {
  const v = metadata.get('general.alignment');
  if (v === undefined) return DEFAULT_ALIGNMENT;
  // ggml writes a u32; any integer type is accepted, the value is what matters.
  const n = typeof v === 'bigint' ? (v <= BigInt(MAX_ALIGNMENT) && v >= 0n ? Number(v) : -1) : v;
  if (n === -1 && typeof v === 'bigint') {
    throw bad(`metadata "general.alignment" is ${v}; allowed a power of two from 1 to ${MAX_ALIGNMENT}`);
  }
  if (typeof n !== 'number' || !Number.isInteger(n)) {
    throw bad(`metadata "general.alignment" must be an integer, got ${describeValue(v)}`);
  }
  if (n < 1 || n > MAX_ALIGNMENT || (n & (n - 1)) !== 0) {
    throw bad(`metadata "general.alignment" is ${n}; allowed a power of two from 1 to ${MAX_ALIGNMENT}`);
  }
  return n;
}

function describeValue(v: GgufValue): string {
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (typeof v === 'string') return `the string ${q(v)}`;
  return `${typeof v} ${String(v)}`;
}

function badMagic(m: Uint8Array): EngineError {
  const hex = [...m].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  const text = [...m].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.')).join('');
  const hint = m[0] === 0x3c || m[0] === 0x7b ? ' (this looks like an HTML or JSON page, not a model)' : '';
  return bad(
    `header: not a GGUF file: it starts with bytes ${hex} ("${text}"), expected "GGUF"${hint}; ` +
      'check that the URL or file is a .gguf model',
  );
}

const units: number[] = [];

/**
 * UTF-8 decode. Vocabularies are hundreds of thousands of short strings, where TextDecoder's
 * per-call cost dominates: decode those by hand, and hand anything long or not well-formed
 * (overlong, surrogates, truncated sequences) to TextDecoder, whose replacement rules are the standard.
 */
function decodeUtf8(b: Uint8Array, s: number, e: number): string {
  if (e - s > 64) return utf8.decode(b.subarray(s, e));
  units.length = 0;
  let i = s;
  while (i < e) {
    const c = b[i];
    if (c < 0x80) {
      units.push(c);
      i += 1;
    } else if (c >= 0xc2 && c < 0xe0 && i + 1 < e && (b[i + 1] & 0xc0) === 0x80) {
      units.push(((c & 0x1f) << 6) | (b[i + 1] & 0x3f));
      i += 2;
    } else if (
      c >= 0xe0 &&
      c < 0xf0 &&
      i + 2 < e &&
      (b[i + 1] & 0xc0) === 0x80 &&
      (b[i + 2] & 0xc0) === 0x80
    ) {
      const u = ((c & 0x0f) << 12) | ((b[i + 1] & 0x3f) << 6) | (b[i + 2] & 0x3f);
      if (u < 0x800 || (u >= 0xd800 && u < 0xe000)) return utf8.decode(b.subarray(s, e));
      units.push(u);
      i += 3;
    } else {
      return utf8.decode(b.subarray(s, e)); // 4-byte sequences and anything malformed
    }
  }
  return String.fromCharCode.apply(null, units);
}

function options(opts: GgufReadOptions | undefined): Required<GgufReadOptions> {
  const o = {
    initialWindow: opts?.initialWindow ?? DEFAULT_WINDOW,
    maxHeaderBytes: opts?.maxHeaderBytes ?? DEFAULT_MAX_HEADER,
    maxArrayLength: opts?.maxArrayLength ?? DEFAULT_MAX_ARRAY,
  };
  for (const [k, v] of Object.entries(o)) {
    if (!Number.isSafeInteger(v) || v < 1) {
      throw new EngineError('bad-argument', `GGUF reader option ${k} must be a positive integer, got ${v}`);
    }
  }
  return o;
}

/** Runs the parser, calling `feed(upTo)` whenever it needs the window to reach file offset `upTo`. */
async function drive(p: HeaderParser, feed: (upTo: number) => Promise<void>): Promise<void> {
  for (;;) {
    try {
      p.run();
      return;
    } catch (e) {
      if (!(e instanceof NeedMore)) throw e;
      p.pos = p.committed; // rewind to the start of the item that did not fit
      await feed(e.upTo);
    }
  }
}

/**
 * Reads the header of a GGUF file through random access. Reads grow from `initialWindow`, doubling,
 * and never go past the header by more than one window. Tensor offsets in the result are absolute
 * and checked against `source.size`.
 */
export async function readGguf(source: RandomAccessSource, opts?: GgufReadOptions): Promise<GgufFile> {
  const o = options(opts);
  const size = source.size;
  const p = new HeaderParser({
    fileSize: size,
    maxHeaderBytes: o.maxHeaderBytes,
    maxArrayLength: o.maxArrayLength,
  });
  let readLen = Math.min(o.initialWindow, size);
  p.setWindow(0, await readExact(source, 0, readLen), readLen === size);
  await drive(p, async (upTo) => {
    // `upTo` is within the file and the header limit (the parser checked): read at least to it.
    readLen = Math.min(Math.max(upTo - p.end, readLen * 2), size - p.end);
    const more = await readExact(source, p.end, readLen);
    p.append([more], p.end + readLen === size);
  });
  return p.finish();
}

async function readExact(source: RandomAccessSource, offset: number, length: number): Promise<Uint8Array> {
  const b = await source.read(offset, length);
  if (b.byteLength !== length) {
    throw new EngineError(
      'internal',
      `${source.name} returned ${b.byteLength} bytes for a ${length}-byte read at offset ${offset}`,
    );
  }
  return b;
}

export interface GgufStreamResult {
  file: GgufFile;
  /** File offset of the first byte `rest` yields: `file.dataOffset` (or the end of the stream when a
   * tensor-less file ends before its padding). */
  restOffset: number;
  /**
   * The rest of the stream, in file order, starting exactly at `restOffset`: first the bytes already
   * pulled past the header (a copy; if any), then the untouched remaining chunks.
   * It throws EngineError('bad-gguf') if the stream ends before the last tensor's data does, or
   * (when `fileSize` was given) delivers a different number of bytes. Stopping early (`break`,
   * `return()`) ends the underlying iterator too, which cancels a fetch body.
   */
  rest: AsyncIterableIterator<Uint8Array>;
}

/**
 * Parses the header from the first chunks of a stream (a download in progress), consuming only as
 * many chunks as the header needs, then hands back the rest of the stream. A downloader that must
 * store every byte wraps its chunk iterable in one that records each chunk before yielding it.
 *
 * Without `fileSize`, tensors cannot be checked against the end of the file here; `rest` checks it
 * when the stream ends.
 */
export async function readGgufStream(
  chunks: AsyncIterable<Uint8Array>,
  opts?: GgufReadOptions & { fileSize?: number },
): Promise<GgufStreamResult> {
  const o = options(opts);
  const fileSize = opts?.fileSize;
  if (fileSize !== undefined && (!Number.isSafeInteger(fileSize) || fileSize < 0)) {
    throw new EngineError(
      'bad-argument',
      `readGgufStream: fileSize must be a non-negative integer, got ${fileSize}`,
    );
  }
  const it = chunks[Symbol.asyncIterator]();
  let delivered = 0; // bytes taken from the stream so far
  let streamEnded = false;
  const p = new HeaderParser({
    fileSize,
    maxHeaderBytes: o.maxHeaderBytes,
    maxArrayLength: o.maxArrayLength,
  });

  /** Pulls chunks until the window reaches `target` or the stream ends. */
  const pull = async (target: number) => {
    const parts: Uint8Array[] = [];
    let end = p.end;
    while (end < target && !streamEnded) {
      const r = await it.next();
      if (r.done) {
        streamEnded = true;
        break;
      }
      const c = r.value;
      if (!(c instanceof Uint8Array)) {
        throw new EngineError('bad-argument', 'readGgufStream: every chunk must be a Uint8Array');
      }
      if (c.byteLength === 0) continue;
      delivered += c.byteLength;
      if (fileSize !== undefined && delivered > fileSize) {
        throw bad(`the stream delivered more than the expected ${fileSize} bytes`);
      }
      parts.push(c);
      end += c.byteLength;
    }
    p.append(parts, streamEnded || (fileSize !== undefined && delivered === fileSize));
  };

  try {
    await pull(Math.min(o.initialWindow, fileSize ?? o.initialWindow));
    // Grow geometrically: at least double the bytes held for the item that did not fit, so an item
    // of n bytes arriving in 1-byte chunks is re-parsed O(log n) times, not n.
    await drive(p, (upTo) =>
      pull(Math.max(upTo, Math.min(p.end + Math.max(p.end - p.committed, 64 << 10), o.maxHeaderBytes))),
    );
    const file = p.finish();
    if (p.end < file.dataOffset) await pull(file.dataOffset);
    if (file.tensors.length > 0 && p.end < file.dataOffset) {
      throw bad(
        `the stream ends at byte ${p.end}, before the tensor data starts at ${file.dataOffset}: truncated`,
      );
    }
    const restOffset = Math.min(file.dataOffset, p.end);
    // A copy, so the header window (megabytes of vocabulary bytes) can be freed while `rest` lives.
    const leftover = p.buf.slice(restOffset - p.base);
    const dataEnd = file.tensors.reduce((m, t) => Math.max(m, t.offset + t.byteLength), restOffset);
    return { file, restOffset, rest: restOf(it, leftover, p.end, dataEnd, fileSize, streamEnded) };
  } catch (e) {
    try {
      await it.return?.(); // cancel the download: its bytes are of no use now
    } catch {
      // the header error is the one worth reporting
    }
    if (e instanceof NeedMore)
      throw new EngineError('internal', 'GGUF reader: unexpected NeedMore', { cause: e });
    throw e;
  }
}

async function* restOf(
  it: AsyncIterator<Uint8Array>,
  leftover: Uint8Array,
  startEnd: number,
  dataEnd: number,
  fileSize: number | undefined,
  alreadyEnded: boolean,
): AsyncGenerator<Uint8Array> {
  let end = startEnd; // file offset just past the bytes taken from the stream
  let finished = alreadyEnded;
  try {
    if (leftover.byteLength > 0) yield leftover;
    while (!finished) {
      const r = await it.next();
      if (r.done) break;
      if (r.value.byteLength === 0) continue;
      end += r.value.byteLength;
      if (fileSize !== undefined && end > fileSize) {
        throw bad(`the stream delivered more than the expected ${fileSize} bytes`);
      }
      yield r.value;
    }
    finished = true;
    if (end < dataEnd) {
      throw bad(`the stream ended at byte ${end}, before the tensor data ends at byte ${dataEnd}: truncated`);
    }
    if (fileSize !== undefined && end !== fileSize) {
      throw bad(`the stream ended at byte ${end}, but the file should have ${fileSize} bytes: truncated`);
    }
  } finally {
    if (!finished) await it.return?.();
  }
}

/** The bytes of one tensor, checked against the source's size first. */
/**
 * Rows [row, row + n) of matrix tensor `t` (ggml ne = [cols, rows]) as stored in the file: a slice
 * of the tensor without reading the rest of it.
 */
export async function readTensorRows(
  source: RandomAccessSource,
  t: TensorInfo,
  row: number,
  n: number,
): Promise<Uint8Array> {
  const rows = t.dims.slice(1).reduce((a, d) => a * d, 1);
  if (!Number.isSafeInteger(row) || !Number.isSafeInteger(n) || row < 0 || n < 0 || row + n > rows) {
    throw new RangeError(`tensor ${q(t.name)}: rows [${row}, ${row + n}) outside its ${rows} rows`);
  }
  const rowBytes = t.byteLength / rows;
  if (!Number.isInteger(rowBytes)) {
    throw bad(`tensor ${q(t.name)}: ${t.byteLength} bytes do not split into ${rows} equal rows`);
  }
  checkTensorBounds(source, t);
  return readExact(source, t.offset + row * rowBytes, n * rowBytes);
}

function checkTensorBounds(source: RandomAccessSource, t: TensorInfo): void {
  if (
    !Number.isSafeInteger(t.offset) ||
    !Number.isSafeInteger(t.byteLength) ||
    t.offset < 0 ||
    t.byteLength < 0 ||
    t.offset + t.byteLength > source.size
  ) {
    throw bad(
      `tensor ${q(t.name)}: bytes [${t.offset}, ${t.offset + t.byteLength}) lie outside ${source.name} ` +
        `(${source.size} bytes): the file is truncated or is not the file this header came from`,
    );
  }
}

export async function readTensorBytes(source: RandomAccessSource, t: TensorInfo): Promise<Uint8Array> {
  checkTensorBounds(source, t);
  return readExact(source, t.offset, t.byteLength);
}

/**
 * A ReadableStream (a fetch body) as the AsyncIterable `readGgufStream` takes. Not every browser
 * iterates ReadableStream natively (Safari); this does, and `return()` (leaving early, or a header
 * error) cancels the stream, which aborts the download.
 */
export function readableChunks(stream: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
      const reader = stream.getReader();
      return {
        async next() {
          const r = await reader.read();
          if (r.done) {
            reader.releaseLock();
            return { done: true, value: undefined };
          }
          return { done: false, value: r.value };
        },
        async return() {
          await reader.cancel();
          return { done: true, value: undefined };
        },
      };
    },
  };
}
