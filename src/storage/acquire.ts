/**
 * Getting a model's bytes, wherever they are: a local file, the cache, or a download into the cache
 * that the loader may read while it arrives. One function, so that the engine host only loads.
 *
 * - A complete cached model is used without the network (offline loads).
 * - One download per model across tabs and workers (a Web Lock named after the model): a second
 *   tab waits, then usually finds the model cached.
 * - A first download hands back a ChunkedSource over the chunks stored so far; its reads wait for
 *   the bytes they need, so weights go to the GPU while the rest of the file is on the wire.
 * - A file is marked complete only after `validate` read it back (the GGUF header fits its size).
 */
import { EngineError } from '../engine/errors';
import { BlobSource, type RandomAccessSource } from '../engine/source';
import { ByteGate, ChunkedSource } from './chunked-source';
import { type DownloadProgress, downloadToStore } from './downloader';
import { contiguousBytes, fileChanged, type ModelManifest } from './manifest';
import { ModelStore } from './model-store';
import { probeRemote } from './resumable-download';

/** What to load (the worker API's ModelSourceSpec has this shape). */
export type AcquireSpec =
  | { kind: 'url'; url: string; refresh?: boolean }
  | { kind: 'file'; file: Blob & { name: string } }
  | { kind: 'cache'; id: string };

export type AcquireProgress =
  | { phase: 'waiting' | 'probe'; loadedBytes: number; totalBytes: number }
  | DownloadProgress;

export interface AcquireDeps {
  /** The cache (opened only when the spec needs it). */
  store: () => Promise<ModelStore>;
  /** Stops the wait for the lock and the download. */
  signal: AbortSignal;
  fetch?: typeof fetch;
  chunkSize?: number;
  /** Tests only: chunks below 64 KiB. */
  allowSmallChunks?: boolean;
  retryDelayMs?: (attempt: number) => number;
  /** Timeouts of the download (tests shorten them). */
  answerTimeoutMs?: number;
  stallTimeoutMs?: number;
  onProgress?: (p: AcquireProgress) => void;
  /** Read a fully downloaded file before it is marked complete; throw when it is not a usable model. */
  validate?: (source: RandomAccessSource) => Promise<void>;
}

export interface AcquiredModel {
  source: RandomAccessSource;
  /** Cache id (the URL) for cached and downloaded models; undefined for local files. */
  id?: string;
  /** The bytes come from the cache, no download. */
  fromCache: boolean;
  /**
   * Settles once the file is complete in the cache (at once when nothing downloads). It never
   * rejects: a failed download resolves with its error, so no rejection goes unhandled when the
   * load that started it has already failed for another reason and stopped listening.
   */
  done: Promise<{ error?: unknown }>;
  /** The download's error, as soon as it failed (a reader waiting on the bytes fails with it too). */
  readonly error: unknown;
  /**
   * The load reading this source failed with `loadError` (after the caller aborted the signal):
   * wait for the download to stop, and drop a download whose bytes are not a model.
   */
  settle(loadError: EngineError): Promise<void>;
}

/**
 * Holds the Web Lock for downloading model `id` (locks are shared by every tab and worker of the
 * origin) and resolves with its release. Calls `onWait` first when another holder has it. Where Web
 * Locks do not exist (Node: one process, no tabs) there is nothing to exclude.
 */
export async function downloadLock(id: string, signal: AbortSignal, onWait: () => void): Promise<() => void> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return () => {};
  const name = `llama3-webgpu download ${id}`;
  const hold = (options: LockOptions) =>
    new Promise<(() => void) | undefined>((resolve, reject) => {
      locks
        .request(name, options, (lock) =>
          lock ? new Promise<void>((release) => resolve(() => release())) : resolve(undefined),
        )
        .catch(reject);
    });
  const now = await hold({ ifAvailable: true });
  if (now) return now;
  onWait();
  try {
    const later = await hold({ signal });
    if (later) return later;
  } catch (e) {
    if (!signal.aborted) throw e;
  }
  throw new EngineError('interrupted', 'Loading stopped.');
}

const nothingToWaitFor = (source: RandomAccessSource, id: string | undefined, fromCache: boolean) =>
  ({
    source,
    id,
    fromCache,
    done: Promise.resolve({}),
    error: undefined,
    settle: async () => {},
  }) satisfies AcquiredModel;

export async function acquireModel(spec: AcquireSpec, deps: AcquireDeps): Promise<AcquiredModel> {
  if (spec.kind === 'file') {
    if (!spec.file.name.toLowerCase().endsWith('.gguf') && spec.file.size < 4) {
      throw new EngineError('bad-gguf', `${spec.file.name} is not a GGUF file.`);
    }
    return nothingToWaitFor(new BlobSource(spec.file, spec.file.name), undefined, false);
  }
  const signal = deps.signal;
  const store = await deps.store();
  const report = (p: AcquireProgress) => {
    try {
      deps.onProgress?.(p);
    } catch {
      // a broken progress callback must not break the load
    }
  };
  const id = spec.kind === 'url' ? spec.url : spec.id;
  let m = await store.getManifest(id);
  if (spec.kind === 'cache' || (ModelStore.usable(m) && !(spec.kind === 'url' && spec.refresh))) {
    if (m && ModelStore.usable(m)) return nothingToWaitFor(new ChunkedSource(store, m), id, true);
    throw new EngineError(
      'storage',
      `${m?.name ?? id} is not fully in the cache; load it from its URL to finish the download.`,
    );
  }
  const url = spec.url;
  // One download per model across tabs: a second tab waits, then usually finds it cached.
  const releaseLock = await downloadLock(id, signal, () =>
    report({ phase: 'waiting', loadedBytes: 0, totalBytes: 0 }),
  );
  let handedOver = false;
  try {
    m = await store.getManifest(id);
    if (m && ModelStore.usable(m)) {
      if (!spec.refresh) return nothingToWaitFor(new ChunkedSource(store, m), id, true);
      // "Download again": the old copy goes first, so the two versions' chunks never meet.
      await store.delete(id);
    }
    report({ phase: 'probe', loadedBytes: 0, totalBytes: 0 });
    const gate = new ByteGate(0);
    let live: ChunkedSource | undefined;
    let manifestReady!: (m: ModelManifest) => void;
    const firstManifest = new Promise<ModelManifest>((resolve) => {
      manifestReady = resolve;
    });
    let error: unknown;
    const download = downloadToStore(url, store, {
      chunkSize: deps.chunkSize,
      allowSmallChunks: deps.allowSmallChunks,
      fetch: deps.fetch,
      retryDelayMs: deps.retryDelayMs,
      answerTimeoutMs: deps.answerTimeoutMs,
      stallTimeoutMs: deps.stallTimeoutMs,
      signal,
      onManifest: (man) => {
        report({
          phase: 'download',
          loadedBytes: contiguousBytes(man),
          totalBytes: man.size,
          bytesPerSecond: 0,
          resumedFrom: 0,
        });
        manifestReady(man);
      },
      onProgress: report,
      onChunk: (i, bytes, available) => {
        if (bytes) live?.offer(i, bytes);
        gate.advance(available);
      },
      onRestart: () => gate.advance(0),
      validate: deps.validate ? (man) => deps.validate!(new ChunkedSource(store, man)) : undefined,
    });
    // Every path below handles the download's outcome exactly once, here: `done` never rejects.
    const done = download.then(
      () => ({}),
      (e: unknown) => {
        error = e;
        gate.fail(e);
        return { error: e };
      },
    );
    handedOver = true;
    void done.then(releaseLock);
    const first = await Promise.race([firstManifest, done]);
    if ('error' in first) throw first.error;
    if (!('id' in first)) throw new EngineError('internal', 'the download ended before its manifest existed');
    live = new ChunkedSource(store, first, gate);
    return {
      source: live,
      id,
      fromCache: false,
      done,
      get error() {
        return error;
      },
      settle: async (loadError) => {
        await done;
        if (loadError.code === 'bad-gguf') await store.delete(id).catch(() => {});
      },
    };
  } finally {
    if (!handedOver) releaseLock();
  }
}

/** What `checkForUpdate` found: the file at the model's URL is not the one in the cache. */
export interface RemoteChange {
  /** "the file changed size (1.2 MiB → 1.3 MiB)", "the file changed on the server (its ETag differs)". */
  reason: string;
  cachedSize: number;
  remoteSize?: number;
}

/**
 * Asks the server (one HEAD, `timeoutMs`) whether the file behind cached model `id` changed. Any
 * failure (offline, timeout, an error status) answers undefined: it never blocks or fails a load.
 */
export async function checkForUpdate(
  store: ModelStore,
  id: string,
  opts: { fetch?: typeof fetch; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<RemoteChange | undefined> {
  const m = await store.getManifest(id);
  if (!m || !ModelStore.usable(m)) return undefined;
  try {
    const p = await probeRemote(m.url, {
      fetch: opts.fetch,
      timeoutMs: opts.timeoutMs ?? 5000,
      signal: opts.signal,
    });
    if (!p.ok) return undefined;
    const reason = fileChanged(m, p);
    if (!reason) return undefined;
    return { reason, cachedSize: m.size, remoteSize: p.size };
  } catch {
    return undefined;
  }
}
