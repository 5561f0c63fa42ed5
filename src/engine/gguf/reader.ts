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
  fileSize: number;
  maxHeaderBytes: number;
  maxArrayLength: number;
}

/**
 * Memory bound: the values the header becomes (JS strings, arrays, Maps, tensor infos) may take at
 * most MAX_AMPLIFICATION × the header's bytes, plus AMPLIFICATION_SLACK. Real headers take about 2×
 * (the Llama 3 vocabulary: ~32-byte strings for ~15-byte tokens). Without the bound a 63 MB header
 * of one-byte values or tiny nested arrays became over 1 GB (8–22×): each element costs at least an
 * 8-byte slot, an array ~48 bytes, a bigint ~32. Costs are V8's on 64-bit, estimated from below.
 */
const MAX_AMPLIFICATION = 4;
const AMPLIFICATION_SLACK = 4 << 20;
const SLOT = 8; // one element of a JS array, or a Map entry's value
const MAP_ENTRY = 32;
const ARRAY_OBJECT = 48; // JSArray + its elements' header
const BIGINT = 24;
const TENSOR_INFO = 160; // the TensorInfo object, its dims array, its entry in the name index

/** What a decoded string of `bytes` UTF-8 bytes costs in the JS heap (strings ≤ 1 byte are shared). */
function stringCost(bytes: number): number {
  return bytes <= 1 ? 0 : 16 + ((bytes + 7) & ~7);
}

/** The header parser over one growing window of file bytes. `base` is the file offset of `buf[0]`. */
class HeaderParser {
  buf: Uint8Array = new Uint8Array(0);
  dv: DataView = new DataView(this.buf.buffer);
  base = 0;
  end = 0;
  /** Absolute read position. */
  pos = 0;
  /** Start of the first item not yet committed: the window must keep bytes from here. */
  committed = 0;
  /** Estimated bytes of JS memory the parsed values take (see MAX_AMPLIFICATION), and at `committed`. */
  cost = 0;
  private committedCost = 0;
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
  setWindow(base: number, bytes: Uint8Array) {
    this.buf = bytes;
    this.dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.base = base;
    this.end = base + bytes.byteLength;
  }

  /** Appends bytes to the window, dropping what lies before the first uncommitted item. */
  append(more: Uint8Array) {
    const keep = this.buf.subarray(this.committed - this.base);
    const next = new Uint8Array(keep.byteLength + more.byteLength);
    next.set(keep, 0);
    next.set(more, keep.byteLength);
    this.setWindow(this.committed, next);
  }

  /** Marks everything parsed so far as done: a later NeedMore re-parses from here. */
  private commit() {
    this.committed = this.pos;
    this.committedCost = this.cost;
  }

  /** Back to the start of the item that did not fit, forgetting what its partial parse cost. */
  rewind() {
    this.pos = this.committed;
    this.cost = this.committedCost;
  }

  /**
   * Adds `bytes` to the memory estimate; past MAX_AMPLIFICATION × the bytes parsed (counting `ahead`
   * bytes about to be parsed) the header is refused before the memory is allocated.
   */
  private charge(bytes: number, ahead = 0) {
    this.cost += bytes;
    const allowed = MAX_AMPLIFICATION * (this.pos + ahead) + AMPLIFICATION_SLACK;
    if (this.cost > allowed) {
      const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;
      throw bad(
        `${this.ctx}: the header's first ${mb(this.pos + ahead)} would take about ${mb(this.cost)} of ` +
          `memory, more than ${MAX_AMPLIFICATION}× its size (real GGUF headers take about 2×): ` +
          'the file is corrupt or built to exhaust memory',
      );
    }
  }

  /** Bytes that may still exist after `pos`: bounded by the file size and the header limit. */
  private available(): number {
    return Math.min(this.limits.fileSize, this.limits.maxHeaderBytes) - this.pos;
  }

  private need(n: number, what: string) {
    if (this.pos + n > this.end) this.short(n, what);
  }

  private short(n: number, what: string): never {
    const at = this.pos;
    const { fileSize, maxHeaderBytes } = this.limits;
    if (at + n > fileSize) {
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
    throw new NeedMore(at + n);
  }

  /** Checks that `count` items of at least `minBytes` each can still fit, before allocating for them. */
  private checkCount(count: number, minBytes: number, what: string) {
    const avail = this.available();
    if (count * minBytes > avail) {
      const where =
        this.limits.fileSize <= this.limits.maxHeaderBytes
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
      this.commit();
    }
    while (this.metadata.size < this.nKv) {
      const i = this.metadata.size;
      this.ctx = `metadata entry ${i} of ${this.nKv}`;
      const key = this.string('key');
      this.ctx = `metadata ${q(key)}`;
      const type = this.u32('value type');
      const value = this.value(type, 0, 'value');
      // Arrays charged themselves as they were parsed.
      this.charge(stringCost(key.length) + 2 * MAP_ENTRY + (Array.isArray(value) ? 0 : scalarCost(value)));
      const prev = this.kvIndex.get(key);
      if (prev !== undefined) {
        throw bad(`metadata key ${q(key)} appears twice (entries ${prev} and ${i}); keys must be unique`);
      }
      this.kvIndex.set(key, i);
      this.metadata.set(key, value);
      this.commit();
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
      this.charge(TENSOR_INFO + stringCost(name.length) + SLOT * nDims);
      const prev = this.tensorIndex.get(name);
      if (prev !== undefined) {
        throw bad(
          `tensor name ${q(name)} appears twice (tensor infos ${prev} and ${i}); names must be unique`,
        );
      }
      this.tensorIndex.set(name, i);
      this.tensorsRel.push({ name, dims, type, offset, byteLength, elements });
      this.commit();
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
    // Fixed-size elements are charged before they are allocated, strings and nested arrays one by
    // one as they are parsed (their slots are at most 1× the bytes checkCount found).
    const variable = et === GgufValueType.STRING || et === GgufValueType.ARRAY;
    const perElement = SLOT + (et === GgufValueType.UINT64 || et === GgufValueType.INT64 ? BIGINT : 0);
    this.charge(
      ARRAY_OBJECT + (variable ? 0 : count * perElement),
      variable ? 0 : count * MIN_VALUE_BYTES[et],
    );
    const out: GgufValue[] = new Array(count);
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
        this.charge(SLOT + stringCost(len));
        out[i] = decodeUtf8(this.buf, o + 8, o + 8 + len);
      }
      return out;
    }
    if (et === GgufValueType.ARRAY || et === GgufValueType.BOOL) {
      for (let i = 0; i < count; i++) {
        out[i] = this.value(et, depth + 1, `${what}[${i}]`);
        if (variable) this.charge(SLOT);
      }
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
        for (let i = 0; i < count; i++) out[i] = dv.getUint8(o++);
        break;
      case GgufValueType.INT8:
        for (let i = 0; i < count; i++) out[i] = dv.getInt8(o++);
        break;
      case GgufValueType.UINT16:
        for (let i = 0; i < count; i++, o += 2) out[i] = dv.getUint16(o, true);
        break;
      case GgufValueType.INT16:
        for (let i = 0; i < count; i++, o += 2) out[i] = dv.getInt16(o, true);
        break;
      case GgufValueType.UINT32:
        for (let i = 0; i < count; i++, o += 4) out[i] = dv.getUint32(o, true);
        break;
      case GgufValueType.INT32:
        for (let i = 0; i < count; i++, o += 4) out[i] = dv.getInt32(o, true);
        break;
      case GgufValueType.FLOAT32:
        for (let i = 0; i < count; i++, o += 4) out[i] = dv.getFloat32(o, true);
        break;
      case GgufValueType.UINT64:
        for (let i = 0; i < count; i++, o += 8) out[i] = dv.getBigUint64(o, true);
        break;
      case GgufValueType.INT64:
        for (let i = 0; i < count; i++, o += 8) out[i] = dv.getBigInt64(o, true);
        break;
      case GgufValueType.FLOAT64:
        for (let i = 0; i < count; i++, o += 8) out[i] = dv.getFloat64(o, true);
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
      if (end > fileSize) {
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

/** What a scalar metadata value costs in the JS heap beyond its slot. */
function scalarCost(v: GgufValue): number {
  if (typeof v === 'string') return stringCost(v.length);
  if (typeof v === 'bigint') return BIGINT;
  return typeof v === 'number' ? 16 : 0; // a double may be boxed
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
      p.rewind(); // to the start of the item that did not fit
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
  p.setWindow(0, await readExact(source, 0, readLen));
  await drive(p, async (upTo) => {
    // `upTo` is within the file and the header limit (the parser checked): read at least to it.
    readLen = Math.min(Math.max(upTo - p.end, readLen * 2), size - p.end);
    const more = await readExact(source, p.end, readLen);
    p.append(more);
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

/** The bytes of one tensor, checked against the source's size first. */
export async function readTensorBytes(source: RandomAccessSource, t: TensorInfo): Promise<Uint8Array> {
  checkTensorBounds(source, t);
  return readExact(source, t.offset, t.byteLength);
}
