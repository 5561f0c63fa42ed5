/**
 * Download of one model file into the browser's cache, chunk by chunk, resumable: the shared
 * recipe (resumable-download.ts) writing into IndexedDB chunk records.
 *
 * - The body is cut into `chunkSize` pieces; each is hashed (sha-256) and stored with its hash,
 *   then the manifest's chunk count moves on: an interrupted download keeps every complete chunk,
 *   and a chunk costs the same to record whatever the file's size.
 * - Resume starts at the end of the last complete chunk (a partial chunk is fetched again).
 * - `validate` (the GGUF header's own size) runs before the manifest says `complete`.
 */
import { EngineError } from '../engine/errors';
import { checkChunkSize, chunkLength, type ModelManifest, newManifest, planDownload } from './manifest';
import type { ModelStore } from './model-store';
import {
  type DownloadProgress,
  type DownloadSink,
  downloadResumable,
  type KnownRemoteInfo,
  probeRemote,
  type ResumableOptions,
} from './resumable-download';
import { sha256Hex } from './sha256';

export type { DownloadProgress };
export { probeRemote };

export interface DownloadOptions
  extends Omit<ResumableOptions, 'unreachableHint' | 'maxRetries' | 'retryDelayMs'> {
  /** Bytes per chunk record: 64 KiB … 256 MiB (default 32 MiB). */
  chunkSize?: number;
  /** Tests only: allow chunks down to 1 KiB, to cross chunk boundaries with small files. */
  allowSmallChunks?: boolean;
  /** Tries per failure streak (a committed chunk resets the count). */
  maxRetries?: number;
  retryDelayMs?: (attempt: number) => number;
  /** A chunk was stored (`bytes` undefined for chunks already cached); `available` = usable bytes from the start. */
  onChunk?: (index: number, bytes: Uint8Array | undefined, available: number) => void;
  /** The manifest exists (size known), before any body byte is stored. */
  onManifest?: (m: ModelManifest) => void;
  /** Last check before the file is marked complete (e.g. the GGUF header fits the size). */
  validate?: (m: ModelManifest) => Promise<void>;
}

export const BROWSER_UNREACHABLE_HINT = 'check the address and your connection';

/** Chunk records in a ModelStore: whole chunks are committed, a partial one is only held in memory. */
class ChunkSink implements DownloadSink {
  m?: ModelManifest;
  private pending: Uint8Array[] = [];
  private pendingLen = 0;

  constructor(
    private readonly url: string,
    private readonly store: ModelStore,
    private readonly chunkSize: number,
    private readonly opts: DownloadOptions,
    /** Why an unusable cache entry was discarded before this download, to tell with the restart. */
    private discarded?: string,
  ) {}

  private committed(): number {
    return this.m ? Math.min(this.m.size, this.m.storedChunks * this.m.chunkSize) : 0;
  }

  async prepare(remote: Parameters<DownloadSink['prepare']>[0]) {
    const { manifest, discarded } = await this.store.readManifest(this.url);
    let m = manifest;
    let restarted = discarded ?? this.discarded;
    this.discarded = undefined;
    const plan = planDownload(m, remote, this.chunkSize);
    if (m && plan.kind === 'fresh') {
      if (plan.discard) restarted = `${plan.reason}: starting over`;
      await this.store.delete(m.id);
      m = undefined;
    }
    if (m && plan.kind === 'resume' && m.storedChunks > plan.keepChunks) {
      await this.store.truncate(m, plan.keepChunks);
    }
    this.m = m;
    if (!m) return { offset: 0, restarted };
    this.opts.onManifest?.(m);
    for (let i = 0; i < m.storedChunks; i++)
      this.opts.onChunk?.(i, undefined, i * m.chunkSize + chunkLength(m, i));
    const file: KnownRemoteInfo = {
      size: m.size,
      etag: m.etag,
      lastModified: m.lastModified,
      expectedSha256: m.expectedSha256,
    };
    return { offset: this.committed(), file, restarted };
  }

  async begin(file: KnownRemoteInfo): Promise<void> {
    if (this.m) {
      // The same entry starts over with the file's new size and validators (its chunks are gone).
      Object.assign(this.m, {
        size: file.size,
        etag: file.etag,
        lastModified: file.lastModified,
        expectedSha256: file.expectedSha256,
        storedChunks: 0,
        complete: false,
      });
    } else {
      this.m = newManifest(this.url, file, this.chunkSize);
    }
    await this.store.putManifest(this.m);
    this.opts.onManifest?.(this.m);
  }

  async replay(onBytes: (bytes: Uint8Array) => void): Promise<number> {
    const m = this.m;
    if (!m) return 0;
    for (let i = 0; i < m.storedChunks; i++) {
      const c = await this.store.getChunk(m, i);
      const bytes = c ? new Uint8Array(await c.data.arrayBuffer()) : undefined;
      if (!c || !bytes || (await sha256Hex(bytes)) !== c.sha256) {
        await this.store.truncate(m, i);
        break;
      }
      onBytes(bytes);
    }
    return this.committed();
  }

  async write(bytes: Uint8Array): Promise<void> {
    const m = this.m;
    if (!m) throw new EngineError('internal', 'chunk written before the manifest exists');
    this.pending.push(bytes);
    this.pendingLen += bytes.length;
    while (this.pendingLen >= m.chunkSize) await this.commit(this.take(m.chunkSize));
    if (this.pendingLen > 0 && this.committed() + this.pendingLen === m.size)
      await this.commit(this.take(this.pendingLen));
  }

  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const p = this.pending[0];
      const k = Math.min(p.length, n - at);
      out.set(p.subarray(0, k), at);
      at += k;
      if (k === p.length) this.pending.shift();
      else this.pending[0] = p.subarray(k);
    }
    this.pendingLen -= n;
    return out;
  }

  private async commit(bytes: Uint8Array): Promise<void> {
    const m = this.m as ModelManifest;
    const index = m.storedChunks;
    await this.store.putChunk(m, index, bytes, await sha256Hex(bytes));
    this.opts.onChunk?.(index, bytes, this.committed());
  }

  async rollback(): Promise<number> {
    this.pending = [];
    this.pendingLen = 0;
    return this.committed();
  }

  async reset(): Promise<void> {
    await this.rollback();
    if (this.m && this.m.storedChunks > 0) await this.store.truncate(this.m, 0);
  }

  async complete(): Promise<void> {
    const m = this.m;
    if (!m || this.committed() !== m.size) {
      throw new EngineError('network', `${this.url}: only ${this.committed()} of ${m?.size} bytes arrived.`);
    }
    await this.opts.validate?.(m);
    m.complete = true;
    await this.store.putManifest(m);
  }

  async discard(): Promise<void> {
    await this.rollback();
    await this.store.delete(this.url);
  }
}

export async function downloadToStore(
  url: string,
  store: ModelStore,
  opts: DownloadOptions = {},
): Promise<ModelManifest> {
  const chunkSize = checkChunkSize(opts.chunkSize, { allowSmall: opts.allowSmallChunks });
  const { manifest: stored, discarded } = await store.readManifest(url);
  // A complete model needs no network at all (offline loads).
  if (stored && planDownload(stored, {}, stored.chunkSize).kind === 'complete') return stored;
  const sink = new ChunkSink(url, store, chunkSize, opts, discarded);
  await downloadResumable(url, sink, { ...opts, unreachableHint: BROWSER_UNREACHABLE_HINT });
  if (!sink.m) throw new EngineError('internal', 'download ended without a manifest');
  return sink.m;
}
