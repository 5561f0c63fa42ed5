/**
 * A small GGUF v3 writer: used to generate test models and hostile variants of them. It writes what
 * it is given without judging it (tests need malformed files too); the reader is the paranoid side.
 */
import { type GgmlType, GgufValueType, tensorBytes, type GgufValue } from './types';

export interface GgufKv {
  key: string;
  type: GgufValueType;
  value: GgufValue;
  /** Element type when `type` is ARRAY (nested arrays: ARRAY, with `value` arrays of arrays). */
  arrayType?: GgufValueType;
}

export interface GgufTensorIn {
  name: string;
  /** ggml ne, fastest-varying first: a matrix is [cols, rows]. */
  dims: number[];
  type: GgmlType;
  /** Raw bytes in the file's encoding for `type`. */
  data: Uint8Array;
}

const enc = new TextEncoder();

class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private ensure(n: number) {
    if (this.length + n <= this.buf.length) return;
    let cap = this.buf.length;
    while (cap < this.length + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) {
    this.ensure(1);
    this.view.setUint8(this.length, v);
    this.length += 1;
  }
  i8(v: number) {
    this.ensure(1);
    this.view.setInt8(this.length, v);
    this.length += 1;
  }
  u16(v: number) {
    this.ensure(2);
    this.view.setUint16(this.length, v, true);
    this.length += 2;
  }
  i16(v: number) {
    this.ensure(2);
    this.view.setInt16(this.length, v, true);
    this.length += 2;
  }
  u32(v: number) {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  i32(v: number) {
    this.ensure(4);
    this.view.setInt32(this.length, v, true);
    this.length += 4;
  }
  f32(v: number) {
    this.ensure(4);
    this.view.setFloat32(this.length, v, true);
    this.length += 4;
  }
  f64(v: number) {
    this.ensure(8);
    this.view.setFloat64(this.length, v, true);
    this.length += 8;
  }
  u64(v: number | bigint) {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  i64(v: number | bigint) {
    this.ensure(8);
    this.view.setBigInt64(this.length, BigInt(v), true);
    this.length += 8;
  }
  bytes(b: Uint8Array) {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  str(s: string) {
    const b = enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number) {
    while (this.length % alignment) this.u8(0);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeValue(w: ByteWriter, type: GgufValueType, value: GgufValue, arrayType?: GgufValueType) {
  switch (type) {
    case GgufValueType.UINT8:
      return w.u8(value as number);
    case GgufValueType.INT8:
      return w.i8(value as number);
    case GgufValueType.UINT16:
      return w.u16(value as number);
    case GgufValueType.INT16:
      return w.i16(value as number);
    case GgufValueType.UINT32:
      return w.u32(value as number);
    case GgufValueType.INT32:
      return w.i32(value as number);
    case GgufValueType.FLOAT32:
      return w.f32(value as number);
    case GgufValueType.BOOL:
      return w.u8(value ? 1 : 0);
    case GgufValueType.STRING:
      return w.str(value as string);
    case GgufValueType.UINT64:
      return w.u64(value as number | bigint);
    case GgufValueType.INT64:
      return w.i64(value as number | bigint);
    case GgufValueType.FLOAT64:
      return w.f64(value as number);
    case GgufValueType.ARRAY: {
      const arr = value as GgufValue[];
      const et = arrayType ?? GgufValueType.STRING;
      w.u32(et);
      w.u64(arr.length);
      // Nested arrays: each element is itself written as (type, count, values); inner element
      // type is inferred (strings or int32) since GGUF files in practice only nest simple arrays.
      for (const v of arr) {
        if (et === GgufValueType.ARRAY) {
          const inner = v as GgufValue[];
          const innerType = typeof inner[0] === 'string' ? GgufValueType.STRING : GgufValueType.INT32;
          writeValue(w, GgufValueType.ARRAY, inner, innerType);
        } else writeValue(w, et, v);
      }
      return;
    }
    default:
      throw new Error(`writeGguf: unknown value type ${type}`);
  }
}

/** Serializes a GGUF v3 file. Tensor data is placed in order, each aligned to `alignment`. */
export function writeGguf(kvs: GgufKv[], tensors: GgufTensorIn[], alignment = 32): Uint8Array {
  const w = new ByteWriter();
  w.bytes(enc.encode('GGUF'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kvs.length);
  for (const kv of kvs) {
    w.str(kv.key);
    w.u32(kv.type);
    writeValue(w, kv.type, kv.value, kv.arrayType);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    offset = Math.ceil(offset / alignment) * alignment;
    offsets.push(offset);
    offset += t.data.length;
  }
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offsets[i]);
  });
  w.pad(alignment);
  const dataStart = w.length;
  tensors.forEach((t, i) => {
    while (w.length < dataStart + offsets[i]) w.u8(0);
    const n = t.dims.reduce((a, b) => a * b, 1);
    if (t.data.length !== tensorBytes(t.type, n)) {
      throw new Error(`writeGguf: ${t.name} has ${t.data.length} bytes, expected ${tensorBytes(t.type, n)}`);
    }
    w.bytes(t.data);
  });
  return w.result();
}
