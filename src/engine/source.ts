/**
 * Where model bytes come from. The engine never needs a whole file in memory: it reads the GGUF
 * header and then each tensor's bytes through one of these.
 *
 * - RandomAccessSource: File/Blob, a Node file handle, HTTP Range, IndexedDB chunks.
 */
export interface RandomAccessSource {
  /** Total size in bytes. */
  readonly size: number;
  /** Human label for messages ("tiny.gguf", a URL). */
  readonly name: string;
  /** Exactly `length` bytes at `offset`; rejects if the range is past the end. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** A source over bytes already in memory (tests, small files). */
export class MemorySource implements RandomAccessSource {
  readonly size: number;
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = 'memory',
  ) {
    this.size = bytes.byteLength;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    return this.bytes.subarray(offset, offset + length);
  }
}

/** A source over a Blob/File (browser and Node ≥ 20). Reads slices; never the whole Blob. */
export class BlobSource implements RandomAccessSource {
  readonly size: number;
  constructor(
    private readonly blob: Blob,
    readonly name = blob instanceof File ? blob.name : 'blob',
  ) {
    this.size = blob.size;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    return new Uint8Array(await this.blob.slice(offset, offset + length).arrayBuffer());
  }
}
