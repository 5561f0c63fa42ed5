/**
 * The one download recipe, shared by the browser's cache (chunks in IndexedDB, downloader.ts) and
 * the CLI's cache folder (a `.part` file, src/node/download.ts). Where the bytes go is a
 * `DownloadSink`; everything about HTTP is here:
 *
 * - A HEAD probe gives the size and the validators (ETag, Last-Modified, published sha-256) before
 *   any body is read. A reset connection is asked again twice; a host that refuses or does not
 *   exist fails at once (offline says so quickly).
 * - The sink compares what it holds with those validators: a changed file starts over from byte 0,
 *   so two versions' bytes are never mixed. Otherwise it says where to resume.
 * - `Range: bytes=<offset>-` resumes, always from the ORIGINAL URL (a Hugging Face `resolve` URL
 *   re-resolves to a fresh signed CDN link). A 206 must start at the offset and agree on the total;
 *   a 200 restarts from 0 (never concatenated); a 416 at the end means everything is there.
 * - The server is not trusted: no answer within `answerTimeoutMs`, or fewer than `stallBytes` in
 *   `stallTimeoutMs` (a trickle), ends the attempt; reading stops at the file's size, so a server
 *   that sends more is never buffered beyond it. Failed attempts are retried with a growing pause
 *   (a stored chunk resets the count), then one error names the URL and what happened.
 * - The first bytes must be `GGUF`; a short body is never complete; a published sha-256 is checked
 *   over the whole file; the sink's own last check runs before it marks the file complete.
 *
 * No Node built-ins, no DOM beyond fetch/AbortController: both hosts run it.
 */
import { EngineError } from '../engine/errors';
import { formatBytes } from '../engine/format-bytes';
import {
  decideResponse,
  describeStart,
  fileChanged,
  hasGgufMagic,
  ProgressMeter,
  type RemoteInfo,
  remoteInfoFrom,
} from './manifest';
import { Sha256 } from './sha256';

export type KnownRemoteInfo = RemoteInfo & { size: number };

export interface DownloadProgress {
  phase: 'download' | 'verify';
  loadedBytes: number;
  totalBytes: number;
  bytesPerSecond: number;
  etaSeconds?: number;
  /** Bytes that were already stored when this download started. */
  resumedFrom: number;
}

/** Where the bytes go. Calls come strictly one at a time, in this order per attempt. */
export interface DownloadSink {
  /**
   * Compare what is stored with what the server says now (`remote`, from the HEAD probe) and drop
   * what no longer matches. Returns the offset to resume from (0: nothing kept) and the file the
   * kept bytes belong to; `restarted` says why stored bytes were dropped, if they were.
   */
  prepare(remote: RemoteInfo): Promise<{ offset: number; file?: KnownRemoteInfo; restarted?: string }>;
  /** The size is known and nothing is stored: remember the file's size and validators. */
  begin(file: KnownRemoteInfo): Promise<void>;
  /**
   * Feed the stored bytes, in order, to `onBytes` (the whole-file hash after a resume). Stops at the
   * first stored piece that fails its own check, drops it and what follows, and returns the bytes fed.
   */
  replay(onBytes: (bytes: Uint8Array) => void): Promise<number>;
  /** Append body bytes at the current end. */
  write(bytes: Uint8Array): Promise<void>;
  /** The attempt ended early: forget what is not safely stored; returns the offset to resume from. */
  rollback(): Promise<number>;
  /** Drop every stored byte: the next request starts at byte 0. */
  reset(reason: string): Promise<void>;
  /** Every byte arrived and the whole-file checks passed: the sink's last check, then mark complete. */
  complete(): Promise<void>;
  /** A check failed or the bytes are not a model: remove everything. */
  discard(): Promise<void>;
}

export interface ResumableOptions {
  fetch?: typeof fetch;
  signal?: AbortSignal;
  /** Failed attempts in a row before giving up (a stored piece resets the count); default 5. */
  maxRetries?: number;
  /** Pause before retry `attempt` (1, 2, …); default 0.5 s doubling to 8 s. */
  retryDelayMs?: (attempt: number) => number;
  /** The response headers must arrive within this (default 30 s). */
  answerTimeoutMs?: number;
  /** At least `stallBytes` (default 16 KiB) must arrive in every `stallTimeoutMs` (default 30 s). */
  stallTimeoutMs?: number;
  stallBytes?: number;
  /** What to do when the server cannot be reached at all, appended to that error. */
  unreachableHint?: string;
  /** Tests only: the page's origin and online state (by default the real ones). */
  place?: RequestPlace;
  onProgress?: (p: DownloadProgress) => void;
  /** Stored bytes were dropped and the download starts over from byte 0. */
  onRestart?: (reason: string) => void;
}

export const retrySchedule =
  (baseMs = 500, maxMs = 8000) =>
  (attempt: number): number =>
    Math.min(maxMs, baseMs * 2 ** (attempt - 1));

/** probeRemote's errors that the user must act on (offline, host not found, CORS): not retried. */
const notWorthRetrying = new WeakSet<Error>();

/** Errors that say the host cannot be reached at all: retrying at once will not help. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH']);

function errorCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let i = 0; i < 4 && cur && typeof cur === 'object'; i++) {
    const c = (cur as { code?: unknown }).code;
    if (typeof c === 'string') return c;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/** "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9" (Node), "Failed to fetch" (browsers). */
export function describeNetworkError(e: unknown): string {
  const code = errorCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : '';
  return [code, cause || msg].filter(Boolean).join(': ');
}

const isAbort = (e: unknown) => (e as { name?: string } | null)?.name === 'AbortError';

/** One request's own abort: the caller's signal, or a deadline of ours (`why` says which). */
class Attempt {
  readonly ac = new AbortController();
  why?: string;
  private timer?: ReturnType<typeof setTimeout>;
  private readonly onOuter = () => this.ac.abort();
  constructor(private readonly outer?: AbortSignal) {
    if (outer?.aborted) this.ac.abort();
    else outer?.addEventListener('abort', this.onOuter, { once: true });
  }
  /** Abort with `why` unless `disarm`/`arm` comes first. */
  arm(ms: number, why: string): void {
    this.disarm();
    this.timer = setTimeout(() => {
      this.why = why;
      this.ac.abort();
    }, ms);
  }
  disarm(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
  close(): void {
    this.disarm();
    this.outer?.removeEventListener('abort', this.onOuter);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new DOMException('aborted', 'AbortError'));
    const onAbort = () => {
      clearTimeout(t);
      reject(new DOMException('aborted', 'AbortError'));
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

const seconds = (ms: number) => `${ms >= 1000 ? Math.round(ms / 100) / 10 : ms / 1000} s`;

export interface ProbeResult extends RemoteInfo {
  ok: boolean;
  status: number;
}

/**
 * Size and validators of `url` without its body (HEAD). Throws EngineError('network') naming the
 * URL when the server cannot be reached or does not answer within `timeoutMs`.
 */
export async function probeRemote(
  url: string,
  opts: {
    fetch?: typeof fetch;
    signal?: AbortSignal;
    timeoutMs?: number;
    unreachableHint?: string;
    /** Tests only: the page's origin and online state (by default the real ones). */
    place?: RequestPlace;
  } = {},
): Promise<ProbeResult> {
  const f = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const attempt = new Attempt(opts.signal);
  attempt.arm(timeoutMs, `no answer within ${seconds(timeoutMs)}`);
  try {
    const res = await f(url, { method: 'HEAD', cache: 'no-store', signal: attempt.ac.signal });
    await res.body?.cancel().catch(() => {});
    return { ok: res.ok, status: res.status, ...remoteInfoFrom(res.headers, res.ok) };
  } catch (e) {
    if (opts.signal?.aborted) throw new EngineError('interrupted', 'Download stopped.');
    attempt.close();
    const why = attempt.why
      ? { what: attempt.why, hint: true }
      : await explainUnreachable(url, e, { fetch: f, ...opts.place });
    const hint = opts.unreachableHint && why.hint ? `; ${opts.unreachableHint}` : '';
    const err = new EngineError('network', `could not download ${url} (${why.what})${hint}`, { cause: e });
    // Offline, no such host, CORS: asking again at once gets the same answer.
    if (!why.hint) notWorthRetrying.add(err);
    throw err;
  } finally {
    attempt.close();
  }
}

/** Where a request is made from: a page's origin (cross-origin requests need CORS) and whether it is online. */
export interface RequestPlace {
  /** The requesting page's origin; none in Node (no CORS there). */
  origin?: string;
  /** navigator.onLine: false when the browser knows it has no network. */
  onLine?: boolean;
}

const placeHere = (): RequestPlace => ({
  origin: (globalThis as { location?: { origin?: string } }).location?.origin,
  onLine: (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine,
});

/**
 * Why a request to `url` got no answer, in words a person can act on: offline, host not found,
 * connection refused, blocked by CORS, or the platform's own words. `hint` says whether the
 * caller's generic advice (check the address, the connection) still applies.
 *
 * Browsers say only "Failed to fetch" for a missing host, a closed port and CORS alike. CORS is
 * named only when it is the likely cause: the request was cross-origin, and the same URL answers
 * a `no-cors` HEAD (an opaque answer: the server is there, it just does not allow this page).
 */
export async function explainUnreachable(
  url: string,
  e: unknown,
  opts: { fetch?: typeof fetch } & RequestPlace = {},
): Promise<{ what: string; hint: boolean }> {
  const place = { ...placeHere(), ...opts };
  if (place.onLine === false) {
    return {
      what: 'you are offline: this device has no network connection; connect and try again',
      hint: false,
    };
  }
  let target: URL | undefined;
  try {
    target = new URL(url);
  } catch {
    return { what: describeNetworkError(e), hint: true };
  }
  const code = errorCode(e);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') {
    return {
      what: `host not found: no address for ${target.hostname}; check the spelling of the URL`,
      hint: false,
    };
  }
  if (code === 'ECONNREFUSED') {
    return { what: `connection refused: nothing answers at ${target.host}`, hint: true };
  }
  if (code !== undefined || !place.origin || target.origin === place.origin) {
    return { what: describeNetworkError(e), hint: true };
  }
  // A browser's cross-origin "Failed to fetch": is the server there at all?
  try {
    await (opts.fetch ?? fetch)(url, {
      method: 'HEAD',
      mode: 'no-cors',
      cache: 'no-store',
      signal: AbortSignal.timeout(5000),
    });
  } catch {
    return {
      what: `cannot reach ${target.host}: the host was not found, refused the connection, or the network is down`,
      hint: true,
    };
  }
  return {
    what:
      `blocked by CORS: ${target.origin} answers, but does not allow pages from other sites to read ` +
      'its files (no Access-Control-Allow-Origin header); download the file and open it here, or use a URL that allows it (Hugging Face does)',
    hint: false,
  };
}

/**
 * Download `url` into `sink`, resuming what it holds. Resolves with the file's size and validators
 * once the sink marked it complete; rejects with one EngineError that says what happened.
 */
export async function downloadResumable(
  url: string,
  sink: DownloadSink,
  opts: ResumableOptions = {},
): Promise<KnownRemoteInfo> {
  const f = opts.fetch ?? fetch;
  const signal = opts.signal;
  const maxRetries = opts.maxRetries ?? 5;
  const delay = opts.retryDelayMs ?? retrySchedule();
  const answerTimeoutMs = opts.answerTimeoutMs ?? 30_000;
  const stallTimeoutMs = opts.stallTimeoutMs ?? 30_000;
  const stallBytes = opts.stallBytes ?? 16 * 1024;
  const stopped = (kept: number) =>
    new EngineError(
      'interrupted',
      kept > 0
        ? `Download stopped; ${formatBytes(kept)} are kept and the next load resumes from there.`
        : 'Download stopped.',
    );

  // A failed HEAD is asked again twice (a connection reset by a proxy or a closing keep-alive
  // socket); a host that refuses or does not exist fails at once.
  let probe: ProbeResult;
  for (let tries = 0; ; tries++) {
    try {
      probe = await probeRemote(url, {
        fetch: f,
        signal,
        timeoutMs: answerTimeoutMs,
        unreachableHint: opts.unreachableHint,
        place: opts.place,
      });
      break;
    } catch (e) {
      const code = errorCode((e as { cause?: unknown }).cause);
      if (
        !(e instanceof EngineError) ||
        e.code !== 'network' ||
        tries >= 2 ||
        UNREACHABLE.has(code ?? '') ||
        notWorthRetrying.has(e)
      )
        throw e;
      await sleep(delay(tries + 1), signal).catch(() => {
        throw stopped(0);
      });
    }
  }
  if (!probe.ok && probe.status !== 405 && probe.status !== 501) {
    const d = decideResponse(0, undefined, probe.status, new Headers());
    if (d.kind === 'fail') throw new EngineError('network', `${url}: ${d.reason}.`);
  }
  const remote: RemoteInfo = {
    size: probe.size,
    etag: probe.etag,
    lastModified: probe.lastModified,
    expectedSha256: probe.expectedSha256,
  };

  const prepared = await sink.prepare(remote);
  if (prepared.restarted) opts.onRestart?.(prepared.restarted);
  let file: KnownRemoteInfo | undefined = prepared.file;
  if (!file && remote.size !== undefined) {
    file = { ...remote, size: remote.size };
    await sink.begin(file);
  }
  let hasher: Sha256 | undefined;
  /** Bytes the hasher has seen: the stored prefix, unless a rollback dropped some of them. */
  let hashed = 0;
  let offset = prepared.offset;
  /** The whole-file hash from the stored bytes (at the start, and after a rollback dropped some). */
  const startHash = async () => {
    hasher = file?.expectedSha256 ? new Sha256() : undefined;
    hashed = 0;
    if (hasher && offset > 0) {
      const h = hasher;
      offset = await sink.replay((b) => h.update(b));
      hashed = offset;
    }
  };
  await startHash();
  const resumedFrom = offset;

  const meter = new ProgressMeter();
  let lastProgress = 0;
  const progress = (loaded: number, force = false) => {
    const t = performance.now();
    meter.add(t, loaded);
    if (!opts.onProgress || (!force && t - lastProgress < 100)) return;
    lastProgress = t;
    const total = file?.size ?? 0;
    opts.onProgress({
      phase: 'download',
      loadedBytes: loaded,
      totalBytes: total,
      bytesPerSecond: meter.bytesPerSecond(),
      etaSeconds: meter.etaSeconds(total),
      resumedFrom,
    });
  };
  /** Drop what is stored; `forget` also forgets the size and validators (the file changed). */
  const restart = async (reason: string, forget: boolean) => {
    await sink.reset(reason);
    offset = 0;
    if (forget) file = undefined;
    hasher = file?.expectedSha256 ? new Sha256() : undefined;
    hashed = 0;
    opts.onRestart?.(reason);
  };

  let failures = 0;
  const failOrWait = async (reason: string) => {
    failures++;
    if (failures > maxRetries) {
      const times = failures === 1 ? 'once' : `${failures} times in a row`;
      throw new EngineError(
        'network',
        `Download of ${url} failed ${times} (${reason}). ${offset > 0 ? `${formatBytes(offset)} are kept; try again later.` : 'Try again later.'}`,
      );
    }
    await sleep(delay(failures), signal);
  };

  const notGguf = (what: string) =>
    new EngineError(
      'bad-gguf',
      `${url} is not a GGUF file: the server sent ${what}. The address may lead to a web page (an error or a login) instead of the file; use a direct download link (on Hugging Face: …/resolve/main/<file>.gguf).`,
    );

  /** Check the first four bytes of the file, then hand the bytes to the sink and the hash. */
  let head = new Uint8Array(0);
  const store = async (value: Uint8Array, at: number) => {
    if (at < 4) {
      const joined = new Uint8Array(Math.min(4, head.length + value.length));
      joined.set(head.subarray(0, joined.length));
      joined.set(value.subarray(0, joined.length - head.length), head.length);
      head = joined;
      if (head.length === 4 && !hasGgufMagic(head))
        throw notGguf(`bytes that start with ${describeStart(value)}`);
    }
    await sink.write(value);
    hasher?.update(value);
    hashed += value.length;
  };

  /**
   * Stream one response body into the sink, never past the file's `size`. At least `stallBytes`
   * must arrive in every `stallTimeoutMs` of network time (the sink's writes do not count).
   */
  const readBody = async (
    attempt: Attempt,
    body: ReadableStream<Uint8Array>,
    size: number,
  ): Promise<{ done: true } | { done: false; why: string }> => {
    const reader = body.getReader();
    const stall = `the server sent less than ${formatBytes(stallBytes)} in ${seconds(stallTimeoutMs)}: too slow or stalled`;
    let got = offset;
    let windowBytes = 0;
    let windowLeft = stallTimeoutMs;
    let armedAt = performance.now();
    attempt.arm(windowLeft, stall);
    try {
      for (;;) {
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await reader.read();
        } catch (e) {
          if (signal?.aborted) throw stopped(offset);
          return { done: false, why: attempt.why ?? `the connection broke (${describeNetworkError(e)})` };
        }
        attempt.disarm();
        if (attempt.why) return { done: false, why: attempt.why };
        if (r.done) break;
        windowLeft -= performance.now() - armedAt;
        let value = r.value;
        windowBytes += value.length;
        if (windowBytes >= stallBytes) {
          windowBytes = 0;
          windowLeft = stallTimeoutMs;
        }
        if (got + value.length > size) {
          // Never hold bytes past the end of the file, however many the server sends.
          value = value.subarray(0, size - got);
          await reader.cancel().catch(() => {});
          if (value.length > 0) await store(value, got);
          await restart('the server sent more bytes than the file has', false);
          throw new EngineError(
            'network',
            `${url} sent more than the file's ${size} bytes; reading stopped there and the download was discarded. The server is misbehaving: try again later.`,
          );
        }
        if (value.length > 0) {
          await store(value, got);
          got += value.length;
          progress(got);
        }
        armedAt = performance.now();
        attempt.arm(Math.max(0, windowLeft), stall);
      }
    } finally {
      attempt.disarm();
      await reader.cancel().catch(() => {});
    }
    return got === size ? { done: true } : { done: false, why: `the server sent ${got} of ${size} bytes` };
  };

  try {
    for (;;) {
      if (file && offset === file.size && file.size > 0) break;
      const attempt = new Attempt(signal);
      try {
        attempt.arm(answerTimeoutMs, `no answer within ${seconds(answerTimeoutMs)}`);
        let res: Response;
        try {
          res = await f(url, {
            headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
            cache: 'no-store',
            signal: attempt.ac.signal,
          });
        } catch (e) {
          if (signal?.aborted) throw stopped(offset);
          await failOrWait(attempt.why ?? describeNetworkError(e));
          continue;
        }
        attempt.disarm();
        const d = decideResponse(offset, file?.size, res.status, res.headers);
        if (d.kind !== 'accept' && d.kind !== 'restart-with-body') await res.body?.cancel().catch(() => {});
        if (d.kind === 'retry') {
          await failOrWait(d.reason);
          continue;
        }
        if (d.kind === 'fail') throw new EngineError('network', `${url}: ${d.reason}.`);
        if (d.kind === 'already-complete') {
          if (!file) {
            file = { ...remote, size: offset };
            await sink.begin(file);
          }
          break;
        }
        if (d.kind === 'restart') {
          await restart(d.reason, true);
          // A server that keeps sending unusable ranges must not loop forever.
          await failOrWait(d.reason);
          continue;
        }
        const now = remoteInfoFrom(res.headers);
        // A resumed range of a file that changed since its first bytes were stored: never mix them.
        const changed = file && offset > 0 ? fileChanged(file, { etag: now.etag }) : undefined;
        if (changed) {
          await res.body?.cancel().catch(() => {});
          await restart(changed, true);
          continue;
        }
        if (d.kind === 'restart-with-body') await restart('the server ignored the Range request', false);
        if (!file) {
          if (d.total === undefined) {
            await res.body?.cancel().catch(() => {});
            if (/^\s*text\/html/i.test(res.headers.get('content-type') ?? ''))
              throw notGguf('a web page (text/html)');
            throw new EngineError(
              'network',
              `${url} did not say how big the file is (no Content-Length), so it cannot be cached safely. Download it and open the file instead.`,
            );
          }
          file = {
            size: d.total,
            etag: now.etag ?? remote.etag,
            lastModified: now.lastModified ?? remote.lastModified,
            expectedSha256: now.expectedSha256 ?? remote.expectedSha256,
          };
          await sink.begin(file);
          hasher = file.expectedSha256 ? new Sha256() : undefined;
          hashed = 0;
        }
        if (file.size < 32) {
          await res.body?.cancel().catch(() => {});
          throw new EngineError('bad-gguf', `${url} is ${file.size} bytes: too small to be a GGUF model.`);
        }
        if (!res.body) throw new EngineError('network', `${url}: the response has no body.`);
        if (offset === 0) head = new Uint8Array(0);
        const result = await readBody(attempt, res.body, file.size);
        if (result.done) {
          offset = file.size;
          break;
        }
        const before = offset;
        offset = await sink.rollback();
        if (hasher && offset !== hashed) await startHash();
        if (offset > before) failures = 0; // progress was made: the budget is for failures in a row
        await failOrWait(result.why);
      } finally {
        attempt.close();
      }
    }

    if (!file) throw new EngineError('internal', 'download ended without knowing the file size');
    const done: KnownRemoteInfo = file;
    progress(done.size, true);
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
        await sink.discard();
        throw new EngineError(
          'network',
          `${url} does not match its published sha-256 (got ${got.slice(0, 12)}…, expected ${done.expectedSha256.slice(0, 12)}…); it was discarded. Load it again.`,
        );
      }
    }
    try {
      await sink.complete();
    } catch (e) {
      await sink.discard().catch(() => {});
      throw e;
    }
    return done;
  } catch (e) {
    if (e instanceof EngineError && e.code === 'bad-gguf') await sink.discard().catch(() => {});
    if ((e instanceof EngineError && e.code === 'interrupted') || isAbort(e) || signal?.aborted) {
      throw stopped(await sink.rollback().catch(() => offset));
    }
    throw e;
  }
}
