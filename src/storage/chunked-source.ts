/**
 * A RandomAccessSource over a cached model's chunk Blobs. During a first download it is handed to
 * the loader before the file is complete: `read()` waits until the bytes it needs have arrived, so
 * tensors go to the GPU while the rest of the file is still on the wire (the GGUF loader reads in
 * file order). Each chunk is checked against the sha-256 stored with it the first time it is read.
 */
import { EngineError } from '../engine/errors';
import type { RandomAccessSource } from '../engine/source';
import type { ModelManifest } from './manifest';
import type { ModelStore } from './model-store';
import { sha256Hex } from './sha256';

/** How many bytes of the file exist so far; readers wait on it. */
export class ByteGate {
  private waiters: { need: number; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private error: unknown;
  constructor(public available = 0) {}

  advance(available: number): void {
    this.available = available;
    this.waiters = this.waiters.filter((w) => {
      if (w.need > this.available) return true;
      w.resolve();
      return false;
    });
  }

  /** The download failed: wake every reader with the error. */
  fail(e: unknown): void {
    this.error = e;
    for (const w of this.waiters) w.reject(e);
    this.waiters = [];
  }

  waitFor(need: number): Promise<void> {
    if (need <= this.available) return Promise.resolve();
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.waiters.push({ need, resolve, reject }));
  }
}

export class ChunkedSource implements RandomAccessSource {
  readonly size: number;
  readonly name: string;
  readonly chunkSize: number;
  /** A few recently used chunks (the loader reads forward, often several tensors per chunk). */
  private recent = new Map<number, Uint8Array>();
  private verified = new Set<number>();

  constructor(
    private readonly store: ModelStore,
    /** Live manifest: the downloader appends chunks to this object. */
    private readonly manifest: ModelManifest,
    readonly gate = new ByteGate(manifest.size),
    private readonly keep = 3,
  ) {
    this.size = manifest.size;
    this.name = manifest.name;
    this.chunkSize = manifest.chunkSize;
  }

  /** Bytes of a chunk the downloader just stored and hashed: no need to read them back. */
  offer(index: number, bytes: Uint8Array): void {
    this.verified.add(index);
    this.remember(index, bytes);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    await this.gate.waitFor(offset + length);
    const first = Math.floor(offset / this.chunkSize);
    const last = Math.floor((offset + Math.max(length, 1) - 1) / this.chunkSize);
    if (first === last) {
      const c = await this.chunk(first);
      const at = offset - first * this.chunkSize;
      return c.subarray(at, at + length);
    }
    const out = new Uint8Array(length);
    for (let k = first; k <= last; k++) {
      const c = await this.chunk(k);
      const cStart = k * this.chunkSize;
      const from = Math.max(offset, cStart);
      const to = Math.min(offset + length, cStart + c.length);
      out.set(c.subarray(from - cStart, to - cStart), from - offset);
    }
    return out;
  }

  private remember(index: number, bytes: Uint8Array): void {
    this.recent.delete(index);
    this.recent.set(index, bytes);
    while (this.recent.size > this.keep) this.recent.delete(this.recent.keys().next().value as number);
  }

  private async chunk(index: number): Promise<Uint8Array> {
    const hit = this.recent.get(index);
    if (hit) return hit;
    const stored = await this.store.getChunk(this.manifest, index);
    if (!stored) {
      await this.dropFrom(index);
      throw new EngineError(
        'storage',
        `Part ${index + 1} of the cached ${this.name} is missing; load the model again to download the rest.`,
      );
    }
    const bytes = new Uint8Array(await stored.data.arrayBuffer());
    if (!this.verified.has(index)) {
      if ((await sha256Hex(bytes)) !== stored.sha256) {
        await this.dropFrom(index);
        throw new EngineError(
          'storage',
          `Part ${index + 1} of the cached ${this.name} is corrupt; it was removed. Load the model again to download it.`,
        );
      }
      this.verified.add(index);
    }
    this.remember(index, bytes);
    return bytes;
  }

  private async dropFrom(index: number): Promise<void> {
    await this.store.truncate(this.manifest, index).catch(() => {});
  }
}
