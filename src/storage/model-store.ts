/**
 * Models in the cache: one manifest record per model and one Blob record per chunk, in one
 * key-value store. Only `complete` manifests are usable; partial ones are kept for resuming.
 */
import { EngineError } from '../engine/errors';
import type { KeyValueStore } from './kv';
import { type ChunkRecord, contiguousBytes, formatBytes, type ModelManifest } from './manifest';

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
    try {
      return await this.kv.get<ModelManifest>(manifestKey(id));
    } catch {
      return undefined; // fail soft: an unreadable cache is an empty cache
    }
  }

  async putManifest(m: ModelManifest): Promise<void> {
    m.updatedAt = Date.now();
    try {
      await this.kv.set(manifestKey(m.id), m);
    } catch (e) {
      throw await this.writeFailed(m, e);
    }
  }

  /** Store chunk `rec.index` and append it to the manifest (chunks arrive in file order). */
  async putChunk(m: ModelManifest, rec: ChunkRecord, bytes: Uint8Array): Promise<void> {
    if (rec.index !== m.chunks.length) {
      throw new EngineError('internal', `chunk ${rec.index} written out of order (have ${m.chunks.length})`);
    }
    try {
      await this.kv.set(chunkKey(m.id, rec.index), new Blob([bytes as Uint8Array<ArrayBuffer>]));
    } catch (e) {
      throw await this.writeFailed(m, e);
    }
    m.chunks.push(rec);
    await this.putManifest(m);
  }

  /** The stored Blob of chunk `index`, or undefined when it is missing. */
  async getChunk(id: string, index: number): Promise<Blob | undefined> {
    const v = await this.kv.get<Blob>(chunkKey(id, index));
    return v instanceof Blob ? v : undefined;
  }

  /** Forget chunks from `from` on (a restart, or a corrupt chunk) and mark the model partial. */
  async truncate(m: ModelManifest, from: number): Promise<void> {
    const drop = await this.chunkKeysOf(m.id, (i) => i >= from);
    m.chunks = m.chunks.slice(0, from);
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
    for (const k of keys) {
      if (!k.startsWith(MANIFEST)) continue;
      const m = await this.kv.get<ModelManifest>(k).catch(() => undefined);
      if (m) {
        out.push(m);
        ids.add(m.id);
      }
    }
    const orphans = keys.filter((k) => {
      const c = parseChunkKey(k);
      return c !== undefined && !ids.has(c.id);
    });
    if (orphans.length) await this.kv.delMany(orphans).catch(() => {});
    return out.sort((a, b) => b.updatedAt - a.updatedAt);
  }

  async delete(id: string): Promise<void> {
    const drop = await this.chunkKeysOf(id, () => true);
    await this.kv.delMany([manifestKey(id), ...drop]);
  }

  async use(): Promise<StorageUse> {
    const models = await this.list();
    const modelBytes = models.reduce((a, m) => a + m.chunks.reduce((b, c) => b + c.size, 0), 0);
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
