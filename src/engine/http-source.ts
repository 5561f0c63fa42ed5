/**
 * A RandomAccessSource over HTTP Range requests (browser, worker and Node: only `fetch`). Lets the
 * GGUF reader inspect a remote model's header without downloading it, and the loader read tensors
 * from a URL directly.
 *
 * Rules (docs/gguf.md; notes/reliability.md "HTTP and Hugging Face"):
 * - every request carries `cache: 'no-store'`: the HTTP cache rewrites ranges and refuses 206s;
 * - a server that answers a ranged request with 200 ignores ranges: reported, body cancelled,
 *   never read whole;
 * - `Content-Range` may be hidden by CORS: then the size comes from a HEAD's `Content-Length`;
 * - reads go to the original URL each time, so an expired signed redirect is simply re-resolved;
 * - a changed total size between requests means the file changed on the server: reported;
 * - every request is an idempotent GET/HEAD, so a transient failure (a dropped or reset connection,
 *   e.g. an idle keep-alive socket the server closed; HTTP 408/429/5xx; a short body) is retried
 *   after a pause, twice by default, before it is reported.
 */
import { EngineError } from './errors';
import type { RandomAccessSource } from './source';

export interface HttpRangeSourceOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Pause before each retry of a transient failure; its length is the number of retries. */
  retryDelaysMs?: readonly number[];
}

const DEFAULT_RETRY_DELAYS_MS = [250, 1000];

/** Errors the same request may well not meet again: worth another try. */
const transient = new WeakSet<object>();
function markTransient(e: EngineError): EngineError {
  transient.add(e);
  return e;
}
const isTransientStatus = (status: number) => status === 408 || status === 429 || status >= 500;

/** Runs `attempt`, again after each delay while it fails transiently; never once `signal` aborted. */
async function withRetries<T>(
  delaysMs: readonly number[],
  signal: AbortSignal | null | undefined,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await attempt();
    } catch (e) {
      const delay = delaysMs[i];
      if (delay === undefined || !transient.has(e as object) || signal?.aborted) throw e;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/** The URL without query and fragment: signed URLs carry secrets that do not belong in messages. */
function labelOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}`;
  } catch {
    return url.split(/[?#]/)[0];
  }
}

function statusHint(status: number): string {
  if (status === 404) return ': the file does not exist; check the URL';
  if (status === 401 || status === 403) return ': access denied; the model may be gated or the link expired';
  if (status === 429) return ': rate limited; try again later';
  if (status >= 500) return ': server error; try again later';
  return '';
}

const CONTENT_RANGE = /^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i;

/** Parses `Content-Range: bytes a-b/total` (or `bytes * /total`); undefined when absent or unparsable. */
function parseContentRange(h: string | null): { start?: number; end?: number; total?: number } | undefined {
  if (!h) return undefined;
  const m = CONTENT_RANGE.exec(h.trim());
  if (!m) return undefined;
  return {
    start: m[1] === undefined ? undefined : Number(m[1]),
    end: m[2] === undefined ? undefined : Number(m[2]),
    total: m[3] === '*' ? undefined : Number(m[3]),
  };
}

export class HttpRangeSource implements RandomAccessSource {
  private constructor(
    readonly url: string,
    readonly size: number,
    readonly name: string,
    private readonly init: RequestInit,
    private readonly fetchFn: typeof fetch,
    private readonly retryDelaysMs: readonly number[],
  ) {}

  /**
   * Learns the size with one `Range: bytes=0-0` request (its `Content-Range` total), falling back
   * to a HEAD's `Content-Length` when `Content-Range` is unreadable. `init` is passed to every
   * request (headers are merged with our Range header; `signal` cancels).
   */
  static async open(
    url: string,
    init: RequestInit = {},
    opts: HttpRangeSourceOptions = {},
  ): Promise<HttpRangeSource> {
    const fetchFn = opts.fetch ?? globalThis.fetch.bind(globalThis);
    const retryDelaysMs = opts.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
    const name = labelOf(url);
    const size = await withRetries(retryDelaysMs, init.signal, () => probeSize(fetchFn, url, name, init));
    if (!Number.isSafeInteger(size)) throw new EngineError('network', `${name}: implausible size ${size}`);
    return new HttpRangeSource(url, size, name, init, fetchFn, retryDelaysMs);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`read ${offset}+${length}: offset and length must be non-negative integers`);
    }
    if (offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    if (length === 0) return new Uint8Array(0);
    return withRetries(this.retryDelaysMs, this.init.signal, () => this.readOnce(offset, length));
  }

  private async readOnce(offset: number, length: number): Promise<Uint8Array> {
    const range = `bytes=${offset}-${offset + length - 1}`;
    const res = await send(this.fetchFn, this.url, this.name, this.init, range);
    if (res.status === 200) {
      await res.body?.cancel();
      throw ignoresRange(this.name, range, res);
    }
    if (res.status !== 206) {
      await res.body?.cancel();
      throw httpError(
        res,
        `${this.name}: HTTP ${res.status} ${res.statusText} for Range ${range}${statusHint(res.status)}`,
      );
    }
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr && (cr.start !== offset || (cr.total !== undefined && cr.total !== this.size))) {
      await res.body?.cancel();
      throw new EngineError(
        'network',
        `${this.name}: asked for ${range} of ${this.size} bytes, got Content-Range ` +
          `${res.headers.get('content-range')}: the file changed on the server; reload it`,
      );
    }
    let body: ArrayBuffer;
    try {
      body = await res.arrayBuffer();
    } catch (e) {
      throw networkError(this.name, e);
    }
    if (body.byteLength !== length) {
      throw markTransient(
        new EngineError(
          'network',
          `${this.name}: short read: ${body.byteLength} of ${length} bytes for Range ${range}; the connection may have dropped`,
        ),
      );
    }
    return new Uint8Array(body);
  }
}

/**
 * The file's size from one `Range: bytes=0-0` request (its `Content-Range` total), or from a HEAD's
 * `Content-Length` when `Content-Range` is unreadable.
 */
async function probeSize(
  fetchFn: typeof fetch,
  url: string,
  name: string,
  init: RequestInit,
): Promise<number> {
  const res = await send(fetchFn, url, name, init, 'bytes=0-0');
  let size: number | undefined;
  if (res.status === 206) {
    size = parseContentRange(res.headers.get('content-range'))?.total;
    await res.body?.cancel();
  } else if (res.status === 416) {
    // Even byte 0 is out of range: an empty file (`Content-Range: bytes */0`).
    size = parseContentRange(res.headers.get('content-range'))?.total ?? 0;
    await res.body?.cancel();
  } else if (res.status === 200) {
    await res.body?.cancel();
    throw ignoresRange(name, 'bytes=0-0', res);
  } else {
    await res.body?.cancel();
    throw httpError(res, `${name}: HTTP ${res.status} ${res.statusText}${statusHint(res.status)}`);
  }
  if (size === undefined) {
    // Content-Range hidden (CORS without Access-Control-Expose-Headers) or `*`: ask with HEAD.
    const head = await send(fetchFn, url, name, { ...init, method: 'HEAD' });
    const len = head.headers.get('content-length');
    await head.body?.cancel();
    if (isTransientStatus(head.status))
      throw httpError(head, `${name}: HTTP ${head.status} ${head.statusText} for HEAD`);
    if (!head.ok || len === null || !/^\d+$/.test(len)) {
      throw new EngineError(
        'network',
        `${name}: cannot learn the file size (no readable Content-Range on a ranged request, and HEAD gave ` +
          `HTTP ${head.status} with Content-Length ${len ?? 'absent'}); the server must expose one of them`,
      );
    }
    size = Number(len);
  }
  return size;
}

function ignoresRange(name: string, range: string, res: Response): EngineError {
  return new EngineError(
    'network',
    `${name} ignores HTTP Range requests (it answered "Range: ${range}" with 200 and the whole file, ` +
      `Content-Length ${res.headers.get('content-length') ?? 'unknown'}); reading parts of it is impossible: ` +
      'use a server with Range support or download the whole file',
  );
}

/** An HTTP error status; transient (retried) for 408, 429 and 5xx. */
function httpError(res: Response, message: string): EngineError {
  const e = new EngineError('network', message);
  return isTransientStatus(res.status) ? markTransient(e) : e;
}

/** A failed request or body: transient unless the caller cancelled it. */
function networkError(name: string, e: unknown): EngineError {
  if (e instanceof EngineError) return e;
  if (e instanceof Error && e.name === 'AbortError') {
    return new EngineError('interrupted', `${name}: request cancelled`, { cause: e });
  }
  const msg =
    e instanceof Error ? `${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}` : String(e);
  return markTransient(
    new EngineError('network', `${name}: request failed: ${msg}; check the connection and the URL`, {
      cause: e,
    }),
  );
}

async function send(
  fetchFn: typeof fetch,
  url: string,
  name: string,
  init: RequestInit,
  range?: string,
): Promise<Response> {
  const headers = new Headers(init.headers);
  if (range) headers.set('Range', range);
  try {
    return await fetchFn(url, { ...init, headers, cache: 'no-store' });
  } catch (e) {
    throw networkError(name, e);
  }
}
