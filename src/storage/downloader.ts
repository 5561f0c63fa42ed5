/**
 * Streaming download of one model file into the cache, chunk by chunk, resumable.
 *
 * - Size (and ETag / published sha-256) come from a HEAD probe before any body is read.
 * - The body is cut into `chunkSize` pieces; each is hashed (sha-256) and stored as a Blob, then the
 *   manifest is updated: an interrupted download keeps every complete chunk.
 * - Resume asks for `bytes=<end of last complete chunk>-` from the ORIGINAL URL (a Hugging Face
 *   `resolve` URL re-resolves to a fresh signed CDN URL). A server that ignores Range (200) restarts
 *   from byte 0 without concatenating; a wrong Content-Range restarts too.
 * - Nothing wrong is kept: bytes that do not start with `GGUF` are rejected before the first chunk
 *   is stored; a short body is never marked complete; a published sha-256 is checked over the whole
 *   file; `validate` (the GGUF header's own size) runs before the manifest says `complete`.
 */
import { EngineError } from '../engine/errors';
import {
  DEFAULT_CHUNK_SIZE,
  decideResponse,
  describeStart,
  formatBytes,
  hasGgufMagic,
  type ModelManifest,
  newManifest,
  ProgressMeter,
  planDownload,
  publishedSha256,
  type RemoteInfo,
} from './manifest';
import type { ModelStore } from './model-store';
import { Sha256, sha256Hex } from './sha256';

export interface DownloadProgress {
  phase: 'download' | 'verify';
  loadedBytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  etaSeconds?: number;
  /** Bytes that were already cached when this download started. */
  resumedFrom: number;
}

export interface DownloadOptions {
  chunkSize?: number;
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Tries per failure streak (a committed chunk resets the count). */
  maxRetries?: number;
  retryDelayMs?: (attempt: number) => number;
  onProgress?: (p: DownloadProgress) => void;
  /** A chunk was stored (`bytes` undefined for chunks already cached); `available` = usable bytes from the start. */
  onChunk?: (index: number, bytes: Uint8Array | undefined, available: number) => void;
  /** Stored chunks were dropped and the download starts over from byte 0. */
  onRestart?: (reason: string) => void;
  /** The manifest exists (size known), before any body byte is stored. */
  onManifest?: (m: ModelManifest) => void;
  /** Last check before the file is marked complete (e.g. the GGUF header fits the size). */
  validate?: (m: ModelManifest) => Promise<void>;
}

const defaultDelay = (attempt: number) => Math.min(8000, 500 * 2 ** (attempt - 1));

function isAbort(e: unknown, signal?: AbortSignal): boolean {
  return !!signal?.aborted || (e as { name?: string } | null)?.name === 'AbortError';
}

function interrupted(m: ModelManifest | undefined): EngineError {
  const kept = m ? m.chunks.reduce((a, c) => a + c.size, 0) : 0;
  return new EngineError(
    'interrupted',
    kept > 0
      ? `Download stopped; ${formatBytes(kept)} are kept and the next load resumes from there.`
      : 'Download stopped.',
  );
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new DOMException('aborted', 'AbortError'));
      },
      { once: true },
    );
  });

/** Size, ETag and published sha-256 without downloading the body (HEAD, falling back to a 1-byte Range GET). */
export async function probeRemote(
  url: string,
  opts: { fetch?: typeof fetch; signal?: AbortSignal } = {},
): Promise<RemoteInfo & { ok: boolean; status: number }> {
  const f = opts.fetch ?? fetch;
  let res: Response;
  try {
    res = await f(url, { method: 'HEAD', cache: 'no-store', signal: opts.signal });
  } catch (e) {
    if (isAbort(e, opts.signal)) throw interrupted(undefined);
    throw new EngineError(
      'network',
      `Could not reach ${url} (${e instanceof Error ? `${e.message}${e.cause instanceof Error ? `: ${e.cause.message}` : ''}` : e}). Check the address and your connection; the server must allow cross-origin requests (CORS).`,
    );
  }
  const etag = res.headers.get('etag') ?? undefined;
  const expectedSha256 = publishedSha256(res.headers);
  const len = res.headers.get('content-length');
  const size = res.ok && len && /^\d+$/.test(len) ? Number(len) : undefined;
  return { ok: res.ok, status: res.status, size, etag, expectedSha256 };
}

export async function downloadToStore(
  url: string,
  store: ModelStore,
  opts: DownloadOptions = {},
): Promise<ModelManifest> {
  const f = opts.fetch ?? fetch;
  const chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const maxRetries = opts.maxRetries ?? 5;
  const delay = opts.retryDelayMs ?? defaultDelay;
  const signal = opts.signal;

  const stored = await store.getManifest(url);
  // A complete model needs no network at all (offline loads).
  if (stored?.complete && planDownload(stored, {}, stored.chunkSize).kind === 'complete') return stored;

  // A failed HEAD is asked again twice (a connection reset by a proxy or a closing keep-alive
  // socket); an unreachable host still fails within seconds, so offline says so quickly.
  let probe: Awaited<ReturnType<typeof probeRemote>>;
  for (let attempt = 0; ; attempt++) {
    try {
      probe = await probeRemote(url, { fetch: f, signal });
      break;
    } catch (e) {
      if (attempt >= 2 || !(e instanceof EngineError) || e.code !== 'network') throw e;
      await sleep(delay(attempt), signal).catch(() => {
        throw interrupted(stored);
      });
    }
  }
  if (!probe.ok && probe.status !== 405) {
    const d = decideResponse(0, undefined, probe.status, new Headers());
    if (d.kind === 'fail') throw new EngineError('network', `${url}: ${d.reason}.`);
  }
  const remote: RemoteInfo = { size: probe.size, etag: probe.etag, expectedSha256: probe.expectedSha256 };
  const plan = planDownload(stored, remote, chunkSize);
  let m: ModelManifest | undefined = stored;
  if (plan.kind === 'fresh' && m) {
    await store.delete(m.id);
    m = undefined;
  }
  if (!m && remote.size !== undefined) {
    m = newManifest(url, { ...remote, size: remote.size }, chunkSize);
    await store.putManifest(m);
  }
  if (m && plan.kind === 'resume' && m.chunks.length > plan.keepChunks)
    await store.truncate(m, plan.keepChunks);
  if (m) opts.onManifest?.(m);

  const resumedFrom = plan.kind === 'resume' ? plan.offset : 0;
  const meter = new ProgressMeter();
  let hasher: Sha256 | undefined;

  /** Restart the whole-file hash from what is stored (after a resume or a restart). */
  const rehash = async (man: ModelManifest) => {
    hasher = man.expectedSha256 ? new Sha256() : undefined;
    if (!hasher) return;
    for (const c of man.chunks) {
      const blob = await store.getChunk(man.id, c.index);
      const bytes = blob ? new Uint8Array(await blob.arrayBuffer()) : undefined;
      if (!bytes || (await sha256Hex(bytes)) !== c.sha256) {
        await store.truncate(man, c.index);
        break;
      }
      hasher.update(bytes);
    }
  };
  if (m) {
    await rehash(m);
    for (const c of m.chunks) opts.onChunk?.(c.index, undefined, c.offset + c.size);
  }

  const committedBytes = () => (m ? m.chunks.reduce((a, c) => a + c.size, 0) : 0);
  let lastProgress = 0;
  const progress = (loaded: number, force = false) => {
    const t = performance.now();
    meter.add(t, loaded);
    if (!force && t - lastProgress < 100) return;
    lastProgress = t;
    const total = m?.size ?? remote.size ?? 0;
    opts.onProgress?.({
      phase: 'download',
      loadedBytes: loaded,
      totalBytes: total,
      bytesPerSecond: meter.bytesPerSecond(),
      etaSeconds: meter.etaSeconds(total),
      resumedFrom,
    });
  };

  const restart = async (reason: string) => {
    if (m && m.chunks.length > 0) {
      await store.truncate(m, 0);
      await rehash(m);
    }
    opts.onRestart?.(reason);
  };

  let attempts = 0;
  const failOrWait = async (reason: string) => {
    attempts++;
    if (attempts > maxRetries) {
      throw new EngineError(
        'network',
        `Download of ${url} failed ${attempts} times in a row (${reason}). ${m?.chunks.length ? `${formatBytes(committedBytes())} are kept; ` : ''}try again later.`,
      );
    }
    await sleep(delay(attempts), signal);
  };

  try {
    for (;;) {
      const offset = committedBytes();
      if (m && offset === m.size && m.size > 0) break;
      let res: Response;
      try {
        res = await f(url, {
          headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
          cache: 'no-store',
          signal,
        });
      } catch (e) {
        if (isAbort(e, signal)) throw interrupted(m);
        await failOrWait(e instanceof Error ? e.message : String(e));
        continue;
      }
      const d = decideResponse(offset, m?.size, res.status, res.headers);
      if (d.kind === 'retry') {
        await res.body?.cancel().catch(() => {});
        await failOrWait(d.reason);
        continue;
      }
      if (d.kind === 'fail') {
        await res.body?.cancel().catch(() => {});
        throw new EngineError('network', `${url}: ${d.reason}.`);
      }
      if (d.kind === 'already-complete') break;
      if (d.kind === 'restart') {
        await res.body?.cancel().catch(() => {});
        await restart(d.reason);
        // A server that keeps sending unusable ranges must not loop forever.
        await failOrWait(d.reason);
        continue;
      }
      if (d.kind === 'restart-with-body') await restart('the server ignored the Range request');
      if (!m) {
        const size = d.total ?? remote.size;
        if (size === undefined) {
          await res.body?.cancel().catch(() => {});
          throw new EngineError(
            'network',
            `${url} did not say how big the file is (no Content-Length), so it cannot be cached safely. Download it and open the file instead.`,
          );
        }
        m = newManifest(
          url,
          {
            size,
            etag: res.headers.get('etag') ?? remote.etag,
            expectedSha256: publishedSha256(res.headers) ?? remote.expectedSha256,
          },
          chunkSize,
        );
        hasher = m.expectedSha256 ? new Sha256() : undefined;
        await store.putManifest(m);
        opts.onManifest?.(m);
      }
      if (m.size < 32) {
        throw new EngineError('bad-gguf', `${url} is ${m.size} bytes: too small to be a GGUF model.`);
      }
      const man = m;
      if (!res.body) throw new EngineError('network', `${url}: the response has no body.`);
      const reader = res.body.getReader();
      let pending: Uint8Array[] = [];
      let pendingLen = 0;
      const start = committedBytes();
      const take = (n: number): Uint8Array => {
        const out = new Uint8Array(n);
        let at = 0;
        while (at < n) {
          const p = pending[0];
          const k = Math.min(p.length, n - at);
          out.set(p.subarray(0, k), at);
          at += k;
          if (k === p.length) pending.shift();
          else pending[0] = p.subarray(k);
        }
        pendingLen -= n;
        return out;
      };
      const commit = async (bytes: Uint8Array) => {
        const index = man.chunks.length;
        const offsetOf = index * man.chunkSize;
        const sha256 = await sha256Hex(bytes);
        await store.putChunk(man, { index, offset: offsetOf, size: bytes.length, sha256 }, bytes);
        hasher?.update(bytes);
        attempts = 0;
        opts.onChunk?.(index, bytes, offsetOf + bytes.length);
      };
      let streamError: unknown;
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (start === 0 && man.chunks.length === 0 && pendingLen < 4 && pendingLen + value.length >= 4) {
            const head = new Uint8Array(4);
            let at = 0;
            for (const p of [...pending, value]) {
              const k = Math.min(p.length, 4 - at);
              head.set(p.subarray(0, k), at);
              at += k;
              if (at === 4) break;
            }
            if (!hasGgufMagic(head)) {
              await reader.cancel().catch(() => {});
              throw new EngineError(
                'bad-gguf',
                `${url} is not a GGUF file: it starts with ${describeStart(value)}. The address may lead to a web page (an error or a login) instead of the file; use a direct download link (on Hugging Face: …/resolve/main/<file>.gguf).`,
              );
            }
          }
          pending.push(value);
          pendingLen += value.length;
          if (committedBytes() + pendingLen > man.size) {
            await reader.cancel().catch(() => {});
            await restart('the server sent more bytes than announced');
            throw new EngineError('network', `${url} sent more than the announced ${man.size} bytes.`);
          }
          while (pendingLen >= man.chunkSize) await commit(take(man.chunkSize));
          progress(committedBytes() + pendingLen);
        }
      } catch (e) {
        if (e instanceof EngineError) throw e;
        if (isAbort(e, signal)) throw interrupted(man);
        streamError = e;
      }
      const got = committedBytes() + pendingLen;
      if (streamError === undefined && got === man.size) {
        if (pendingLen > 0) await commit(take(pendingLen));
        pending = [];
        progress(man.size, true);
        break;
      }
      // Cut off (socket closed, network error, or a body shorter than announced): keep the
      // complete chunks, drop the partial one, resume.
      pending = [];
      pendingLen = 0;
      const why =
        streamError !== undefined
          ? `the connection broke (${streamError instanceof Error ? streamError.message : streamError})`
          : `the server sent ${got} of ${man.size} bytes`;
      await failOrWait(why);
    }

    if (!m) throw new EngineError('internal', 'download ended without a manifest');
    const done: ModelManifest = m;
    if (committedBytes() !== done.size) {
      throw new EngineError('network', `${url}: only ${committedBytes()} of ${done.size} bytes arrived.`);
    }
    opts.onProgress?.({
      phase: 'verify',
      loadedBytes: done.size,
      totalBytes: done.size,
      bytesPerSecond: 0,
      resumedFrom,
    });
    if (hasher && done.expectedSha256) {
      const got = hasher.digestHex();
      if (got !== done.expectedSha256) {
        await store.delete(done.id);
        throw new EngineError(
          'network',
          `${done.name} does not match its published sha-256 (got ${got.slice(0, 12)}…, expected ${done.expectedSha256.slice(0, 12)}…); it was discarded. Load it again.`,
        );
      }
    }
    if (opts.validate) {
      try {
        await opts.validate(done);
      } catch (e) {
        await store.delete(done.id).catch(() => {});
        throw e;
      }
    }
    done.complete = true;
    await store.putManifest(done);
    return done;
  } catch (e) {
    if (e instanceof EngineError && e.code === 'bad-gguf' && m) await store.delete(m.id).catch(() => {});
    throw e;
  }
}
