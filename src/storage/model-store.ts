/**
 * Models in the cache: one manifest record per model and one record per chunk (its bytes as a Blob
 * and their sha-256), in one key-value store. Only `complete` manifests are usable; partial ones
 * are kept for resuming. Recording a chunk is two puts of constant size, whatever the file's size.
 */
import { EngineError } from '../engine/errors';
import { formatBytes } from '../engine/format-bytes';
import type { KeyValueStore } from './kv';
import {
  chunkLength,
  contiguousBytes,
  type ModelManifest,
  type StoredChunk,
  upgradeManifest,
} from './manifest';

const MANIFEST = 'm:';
const CHUNK = 'c:';

const manifestKey = (id: string) => MANIFEST + id;
/** `c:000012:<id>`: the index first so the id may contain any character. */
const chunkKey = (id: string, index: number) => `${CHUNK}${String(index).padStart(6, '0')}:${id}`;
function parseChunkKey(key: string): { index: number; id: string } | undefined {
  const m = /^c:(\d{6}):([\s\S]*)$/.exec(key);
  return m ? { index: Number(m[1]), id: m[2] } : undefined;
}

export function isQuotaError(e: unknown): boolean {
  const name = (e as { name?: string } | null)?.name;
  return name === 'QuotaExceededError' || (e instanceof Error && /quota/i.test(e.message));
}

export interface StorageUse {
  /** Bytes in our chunk records (complete and partial models). */
  modelBytes: number;
  /** `navigator.storage.estimate()`, when available (Chrome's quota figure is not the real limit). */
  usage?: number;
  quota?: number;
  persistent: boolean;
}

export class ModelStore {
  constructor(readonly kv: KeyValueStore) {}

  get persistent(): boolean {
    return this.kv.persistent;
  }

  async getManifest(id: string): Promise<ModelManifest | undefined> {
    return (await this.readManifest(id)).manifest;
  }

  /**
   * The manifest of `id` in the current format. An entry that cannot be used (malformed, or written
   * with an invalid chunk size) is deleted, and `discarded` says why.
   */
  async readManifest(id: string): Promise<{ manifest?: ModelManifest; discarded?: string }> {
    let raw: unknown;
    try {
      raw = await this.kv.get<unknown>(manifestKey(id));
    } catch {
      return {}; // fail soft: an unreadable cache is an empty cache
    }
    if (raw === undefined) return {};
    const { manifest, discard } = upgradeManifest(raw);
    if (manifest) return { manifest };
    await this.delete(id).catch(() => {});
    return { discarded: `The cached copy of ${id} was discarded: ${discard}.` };
  }

  async putManifest(m: ModelManifest): Promise<void> {
    m.updatedAt = Date.now();
    try {
      await this.kv.set(manifestKey(m.id), m);
    } catch (e) {
      throw await this.writeFailed(m, e);
    }
  }

  /** Store chunk `index` (chunks arrive in file order) and count it in the manifest. */
  async putChunk(m: ModelManifest, index: number, bytes: Uint8Array, sha256: string): Promise<void> {
    if (index !== m.storedChunks || m.legacyChunkSha256) {
      throw new EngineError('internal', `chunk ${index} written out of order (have ${m.storedChunks})`);
    }
    if (bytes.length !== chunkLength(m, index)) {
      throw new EngineError(
        'internal',
        `chunk ${index} has ${bytes.length} bytes, not ${chunkLength(m, index)}`,
      );
    }
    const record: StoredChunk = {
      size: bytes.length,
      sha256,
      data: new Blob([bytes as Uint8Array<ArrayBuffer>]),
    };
    try {
      await this.kv.set(chunkKey(m.id, index), record);
    } catch (e) {
      throw await this.writeFailed(m, e);
    }
    m.storedChunks = index + 1;
    await this.putManifest(m);
  }

  /**
   * Stored chunk `index` of `m` and the hash to check it against, or undefined when it is missing
   * or not the size it must have. Reads both formats (format 1 kept bare Blobs, hashes in the manifest).
   */
  async getChunk(m: ModelManifest, index: number): Promise<StoredChunk | undefined> {
    if (index >= m.storedChunks) return undefined;
    const v = await this.kv.get<unknown>(chunkKey(m.id, index)).catch(() => undefined);
    const want = chunkLength(m, index);
    if (v instanceof Blob) {
      const sha256 = m.legacyChunkSha256?.[index];
      return sha256 !== undefined && v.size === want ? { size: v.size, sha256, data: v } : undefined;
    }
    const c = v as Partial<StoredChunk> | undefined;
    if (!c || !(c.data instanceof Blob) || typeof c.sha256 !== 'string') return undefined;
    return c.data.size === want && c.size === want ? (c as StoredChunk) : undefined;
  }

  /** Forget chunks from `from` on (a restart, or a corrupt chunk) and mark the model partial. */
  async truncate(m: ModelManifest, from: number): Promise<void> {
    const drop = await this.chunkKeysOf(m.id, (i) => i >= from);
    m.storedChunks = Math.min(m.storedChunks, from);
    if (m.legacyChunkSha256) m.legacyChunkSha256 = m.legacyChunkSha256.slice(0, m.storedChunks);
    m.complete = false;
    await this.putManifest(m);
    await this.kv.delMany(drop).catch(() => {});
  }

  /** Every manifest, complete or partial, newest first. Chunks without a manifest are removed. */
  async list(): Promise<ModelManifest[]> {
    let keys: string[];
    try {
      keys = await this.kv.keys();
    } catch {
      return [];
    }
    const out: ModelManifest[] = [];
    const ids = new Set<string>();
    const unusable: string[] = [];
    for (const k of keys) {
      if (!k.startsWith(MANIFEST)) continue;
      const raw = await this.kv.get<unknown>(k).catch(() => undefined);
      const m = raw === undefined ? undefined : upgradeManifest(raw).manifest;
      if (m) {
        out.push(m);
        ids.add(m.id);
      } else if (raw !== undefined) unusable.push(k);
    }
    const orphans = keys.filter((k) => {
      const c = parseChunkKey(k);
      return c !== undefined && !ids.has(c.id);
    });
    if (orphans.length || unusable.length) await this.kv.delMany([...unusable, ...orphans]).catch(() => {});
    return out.sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async delete(id: string): Promise<void> {
    const drop = await this.chunkKeysOf(id, () => true);
    await this.kv.delMany([manifestKey(id), ...drop]);
  }

  async use(): Promise<StorageUse> {
    const models = await this.list();
    const modelBytes = models.reduce((a, m) => a + contiguousBytes(m), 0);
    const out: StorageUse = { modelBytes, persistent: this.kv.persistent };
    try {
      const est = await navigator.storage?.estimate?.();
      if (est) {
        out.usage = est.usage;
        out.quota = est.quota;
      }
    } catch {
      // estimate() is a hint only
    }
    return out;
  }

  /** True when every byte is stored and the manifest says so. */
  static usable(m: ModelManifest | undefined): boolean {
    return !!m && m.complete && contiguousBytes(m) === m.size;
  }

  private async chunkKeysOf(id: string, keep: (index: number) => boolean): Promise<string[]> {
    const keys = await this.kv.keys().catch(() => [] as string[]);
    return keys.filter((k) => {
      const c = parseChunkKey(k);
      return c !== undefined && c.id === id && keep(c.index);
    });
  }

  /** A failed write: on a full disk, free what this model took and say how much is needed. */
  private async writeFailed(m: ModelManifest, e: unknown): Promise<EngineError> {
    if (e instanceof EngineError) return e;
    if (isQuotaError(e)) {
      await this.delete(m.id).catch(() => {});
      return new EngineError(
        'storage-full',
        `The browser refused to store more data: ${m.name} needs ${formatBytes(m.size)} of free storage. ` +
          'Delete cached models, free disk space, or leave private browsing (it allows far less), then load again.',
        { cause: e },
      );
    }
    const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
    return new EngineError('storage', `Could not write to the model cache (${msg}).`, { cause: e });
  }
}
