/**
 * Storage behind a tiny interface that fails soft: IndexedDB through idb-keyval's custom store when
 * it works, memory otherwise (private modes, blocked storage, Node tests). Callers see
 * `persistent` and tell the user when the cache will not survive a reload.
 */
import { createStore, del, delMany, get, keys, set, type UseStore } from 'idb-keyval';

export interface KeyValueStore {
  /** False when the data lives in memory only. */
  readonly persistent: boolean;
  get<T>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown): Promise<void>;
  del(key: string): Promise<void>;
  delMany(keys: string[]): Promise<void>;
  keys(): Promise<string[]>;
}

export class MemoryKeyValueStore implements KeyValueStore {
  readonly persistent = false;
  readonly map = new Map<string, unknown>();
  async get<T>(key: string): Promise<T | undefined> {
    return this.map.get(key) as T | undefined;
  }
  async set(key: string, value: unknown): Promise<void> {
    this.map.set(key, value);
  }
  async del(key: string): Promise<void> {
    this.map.delete(key);
  }
  async delMany(keys: string[]): Promise<void> {
    for (const k of keys) this.map.delete(k);
  }
  async keys(): Promise<string[]> {
    return [...this.map.keys()];
  }
}

export class IdbKeyValueStore implements KeyValueStore {
  readonly persistent = true;
  constructor(private readonly store: UseStore) {}
  get<T>(key: string): Promise<T | undefined> {
    return get<T>(key, this.store);
  }
  set(key: string, value: unknown): Promise<void> {
    return set(key, value, this.store);
  }
  del(key: string): Promise<void> {
    return del(key, this.store);
  }
  delMany(k: string[]): Promise<void> {
    return delMany(k, this.store);
  }
  async keys(): Promise<string[]> {
    return (await keys(this.store)).map(String);
  }
}

export const DB_NAME = 'llama3-webgpu';
export const STORE_NAME = 'models';

/** IndexedDB when it opens and answers, memory otherwise. */
export async function openKeyValueStore(): Promise<KeyValueStore> {
  if (typeof indexedDB === 'undefined') return new MemoryKeyValueStore();
  try {
    const store = new IdbKeyValueStore(createStore(DB_NAME, STORE_NAME));
    // A blocked or broken database fails here, not in the middle of a download.
    await store.keys();
    return store;
  } catch {
    return new MemoryKeyValueStore();
  }
}
