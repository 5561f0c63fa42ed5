/**
 * A RandomAccessSource over HTTP Range requests (browser, worker and Node: only `fetch`). Lets the
 * GGUF reader inspect a remote model's header without downloading it, and the loader read tensors
 * from a URL directly.
 *
 * Rules (docs/gguf.md, "HTTP and local files"; each learnt from a browser or a host that broke it):
 * - every request carries `cache: 'no-store'`: the HTTP cache rewrites ranges and refuses 206s;
 * - a server that answers a ranged request with 200 ignores ranges: reported, body cancelled,
 *   never read whole;
 * - `Content-Range` may be hidden by CORS: then the size comes from a HEAD's `Content-Length`;
 * - reads go to the original URL each time, so an expired signed redirect is simply re-resolved;
 * - a changed total size between requests means the file changed on the server: reported;
 * - every request is an idempotent GET/HEAD, so a transient failure (a dropped or reset connection,
 *   e.g. an idle keep-alive socket the server closed; HTTP 408/429/5xx; a short body; a timeout) is
 *   retried after a pause, twice by default, before it is reported;
 * - the server is not trusted: a body is streamed into a buffer of the range's length and never past
 *   it (more bytes than asked is an error); a request without response headers within
 *   `responseTimeoutMs`, or a body that brings fewer than `idleMinBytes` in `idleTimeoutMs` (silent
 *   or trickling), is cut;
 * - an HTML page (a Hugging Face `blob` link instead of `resolve`) is named as such.
 */
import { EngineError } from './errors';
import { safeText, showValue } from './safe-text';
import type { RandomAccessSource } from './source';

export interface HttpRangeSourceOptions {
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
  /** Pause before each retry of a transient failure; its length is the number of retries. */
  retryDelaysMs?: readonly number[];
  /** Longest wait for a response's headers (connection, TLS, the server's answer); default 30 s. */
  responseTimeoutMs?: number;
  /**
   * A body stalls when fewer than `idleMinBytes` (or what is left of the range, if less) arrive
   * within this time: the server went silent or trickles. Default 30 s.
   */
  idleTimeoutMs?: number;
  /** See `idleTimeoutMs`; default 16 KiB, so anything slower than about 0.5 KB/s is cut. */
  idleMinBytes?: number;
}

const DEFAULT_RETRY_DELAYS_MS = [250, 1000];
const DEFAULT_RESPONSE_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_MIN_BYTES = 16 * 1024;

interface Limits {
  retryDelaysMs: readonly number[];
  responseTimeoutMs: number;
  idleTimeoutMs: number;
  idleMinBytes: number;
}

function limitsOf(opts: HttpRangeSourceOptions): Limits {
  const limits = {
    retryDelaysMs: opts.retryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS,
    responseTimeoutMs: opts.responseTimeoutMs ?? DEFAULT_RESPONSE_TIMEOUT_MS,
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    idleMinBytes: opts.idleMinBytes ?? DEFAULT_IDLE_MIN_BYTES,
  };
  for (const k of ['responseTimeoutMs', 'idleTimeoutMs', 'idleMinBytes'] as const) {
    if (!(limits[k] > 0) || !Number.isFinite(limits[k])) {
      throw new EngineError(
        'bad-argument',
        `HttpRangeSource option ${k} must be a positive number, got ${limits[k]}`,
      );
    }
  }
  return limits;
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${+(ms / 1000).toFixed(1)} s` : `${ms} ms`;
}

/** `p`, unless `ms` pass first: then `onTimeout()` (which should also cut the request) is thrown. */
function withDeadline<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), Math.max(0, ms));
  });
  return Promise.race([p, expired]).finally(() => clearTimeout(timer));
}

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
      if (signal?.aborted || !transient.has(e as object)) throw e;
      if (delay === undefined) {
        if (i === 0 || !(e instanceof EngineError)) throw e;
        throw new EngineError(e.code, `${e.message} (gave up after ${i + 1} attempts)`, { cause: e });
      }
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
    private readonly limits: Limits,
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
    const limits = limitsOf(opts);
    const name = labelOf(url);
    const size = await withRetries(limits.retryDelaysMs, init.signal, () =>
      probeSize({ fetchFn, url, name, init, limits }),
    );
    if (!Number.isSafeInteger(size)) throw new EngineError('network', `${name}: implausible size ${size}`);
    return new HttpRangeSource(url, size, name, init, fetchFn, limits);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`read ${offset}+${length}: offset and length must be non-negative integers`);
    }
    if (offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    if (length === 0) return new Uint8Array(0);
    const { url, name, init, fetchFn, limits } = this;
    return withRetries(limits.retryDelaysMs, init.signal, () =>
      exchange({ fetchFn, url, name, init, limits }, `bytes=${offset}-${offset + length - 1}`, (res, range) =>
        this.take(res, range, offset, length),
      ),
    );
  }

  private async take(res: Response, range: string, offset: number, length: number): Promise<Uint8Array> {
    if (res.status === 200) throw ignoresRange(this.name, range, res);
    if (res.status !== 206) {
      throw httpError(
        res,
        `${this.name}: HTTP ${res.status} ${res.statusText} for Range ${range}${statusHint(res.status)}`,
      );
    }
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr && (cr.start !== offset || (cr.total !== undefined && cr.total !== this.size))) {
      throw new EngineError(
        'network',
        `${this.name}: asked for ${range} of ${this.size} bytes, got Content-Range ` +
          // Parsed by CONTENT_RANGE above, so only digits and separators.
          `${res.headers.get('content-range')}: the file changed on the server; reload it`,
      );
    }
    const declared = res.headers.get('content-length');
    const end =
      cr?.end ?? (declared !== null && /^\d+$/.test(declared) ? offset + Number(declared) - 1 : undefined);
    if (end !== undefined && end > offset + length - 1) {
      throw tooMuch(this.name, range, length, `it announced ${end - offset + 1} bytes`);
    }
    return readBody(res, { name: this.name, range, length, limits: this.limits });
  }
}

interface Target {
  fetchFn: typeof fetch;
  url: string;
  name: string;
  init: RequestInit;
  limits: Limits;
}

/**
 * The file's size from one `Range: bytes=0-0` request (its `Content-Range` total), or from a HEAD's
 * `Content-Length` when `Content-Range` is unreadable.
 */
async function probeSize(t: Target): Promise<number> {
  const { name } = t;
  let size = await exchange(t, 'bytes=0-0', async (res, range) => {
    if (res.status === 206) {
      if (isHtml(res)) {
        // A static server honours Range on a page too; a GGUF file starts with "G".
        const first = await readBody(res, { name, range, length: 1, limits: t.limits });
        if (first[0] !== 0x47) throw webPage(t.url, name, res);
      }
      return parseContentRange(res.headers.get('content-range'))?.total;
    }
    if (res.status === 416) {
      // Even byte 0 is out of range: an empty file (`Content-Range: bytes */0`).
      return parseContentRange(res.headers.get('content-range'))?.total ?? 0;
    }
    if (res.status === 200) {
      if (isHtml(res) || (await startsLikeHtml(res, t))) throw webPage(t.url, name, res);
      throw ignoresRange(name, range, res);
    }
    if (isHtml(res) && res.ok) throw webPage(t.url, name, res);
    throw httpError(res, `${name}: HTTP ${res.status} ${res.statusText}${statusHint(res.status)}`);
  });
  if (size === undefined) {
    // Content-Range hidden (CORS without Access-Control-Expose-Headers) or `*`: ask with HEAD.
    size = await exchange({ ...t, init: { ...t.init, method: 'HEAD' } }, undefined, async (head) => {
      const len = head.headers.get('content-length');
      if (isTransientStatus(head.status))
        throw httpError(head, `${name}: HTTP ${head.status} ${head.statusText} for HEAD`);
      if (!head.ok || len === null || !/^\d+$/.test(len)) {
        throw new EngineError(
          'network',
          `${name}: cannot learn the file size (no readable Content-Range on a ranged request, and HEAD gave ` +
            `HTTP ${head.status} with Content-Length ${digitsOr(len, 'absent or unreadable')}); the server must expose one of them`,
        );
      }
      return Number(len);
    });
  }
  return size;
}

/** A header value for a message when it is a plain number; `otherwise` when absent or anything else. */
function digitsOr(v: string | null, otherwise: string): string {
  return v !== null && /^\d{1,20}$/.test(v) ? v : otherwise;
}

function isHtml(res: Response): boolean {
  return /^\s*(text\/html|application\/xhtml\+xml)\b/i.test(res.headers.get('content-type') ?? '');
}

/** Whether a 200 body (of any declared type) opens like an HTML page: reads at most 1 KiB of it. */
async function startsLikeHtml(res: Response, t: Target): Promise<boolean> {
  if (!res.body) return false;
  const reader = res.body.getReader();
  const head = new Uint8Array(1024);
  let got = 0;
  try {
    while (got < 64) {
      const r = await withDeadline(reader.read(), t.limits.idleTimeoutMs, () => new Error('idle'));
      if (r.done) break;
      const n = Math.min(r.value.byteLength, head.length - got);
      head.set(r.value.subarray(0, n), got);
      got += n;
    }
  } catch {
    // Whatever the body does, the answer is still "ignores Range"; only its first bytes mattered.
  } finally {
    reader.cancel().catch(() => {});
  }
  const text = new TextDecoder().decode(head.subarray(0, got)).trimStart().toLowerCase();
  return text.startsWith('<!doctype html') || text.startsWith('<html') || text.startsWith('<!--');
}

function webPage(url: string, name: string, res: Response): EngineError {
  let hint = 'give the URL of the .gguf file itself (its download link)';
  // The URL as given, or where it redirected to: either may be a Hugging Face `blob` page.
  for (const candidate of [url, res.url]) {
    let u: URL;
    try {
      u = new URL(candidate);
    } catch {
      continue;
    }
    const m = /^\/([^/]+\/[^/]+)\/blob\/(.+)$/.exec(u.pathname);
    if (m && /(^|\.)(huggingface\.co|hf\.co)$/i.test(u.hostname)) {
      hint = `for a file on Hugging Face use its /resolve/ link: ${u.origin}/${m[1]}/resolve/${m[2]}`;
      break;
    }
  }
  return new EngineError(
    'network',
    `${name} is a web page (${showValue(res.headers.get('content-type') ?? 'HTML', 60)}), not a GGUF file; ${hint}`,
  );
}

function ignoresRange(name: string, range: string, res: Response): EngineError {
  return new EngineError(
    'network',
    `${name} ignores HTTP Range requests (it answered "Range: ${range}" with 200 and the whole file, ` +
      `Content-Length ${digitsOr(res.headers.get('content-length'), 'unknown')}); reading parts of it is impossible: ` +
      'use a server with Range support or download the whole file',
  );
}

function tooMuch(name: string, range: string, length: number, what: string): EngineError {
  return new EngineError(
    'network',
    `${name}: asked for ${length} bytes (Range ${range}) but ${what}: the server does not honour Range ` +
      'requests correctly; reading stopped. Use another server or download the whole file',
  );
}

/**
 * Streams a body of exactly `length` bytes into one buffer: more is an error as soon as it shows,
 * fewer a (transient) short read, and a body that stalls (see HttpRangeSourceOptions) is cut.
 */
async function readBody(
  res: Response,
  { name, range, length, limits }: { name: string; range: string; length: number; limits: Limits },
): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  if (!res.body) {
    throw markTransient(new EngineError('network', `${name}: empty body for Range ${range}`));
  }
  const reader = res.body.getReader();
  let got = 0;
  // The current idle window: when it began and how many bytes had arrived then.
  let windowStart = Date.now();
  let windowFrom = 0;
  const stalled = () =>
    markTransient(
      new EngineError(
        'network',
        `${name}: the transfer stalled: fewer than ${Math.min(limits.idleMinBytes, length - windowFrom)} bytes ` +
          `arrived in ${seconds(limits.idleTimeoutMs)} (${got} of ${length} bytes of Range ${range} so far); ` +
          'the server or the connection is stuck or far too slow: try again later',
      ),
    );
  try {
    for (;;) {
      if (got === length) {
        // All asked for is here. A correct body ends now; one that goes on is refused, and one that
        // neither ends nor sends more is simply left: nothing more is needed from it.
        const r = await withDeadline(
          reader.read(),
          Math.min(limits.idleTimeoutMs, 1000),
          () => new Error('idle'),
        ).catch(() => ({ done: true as const, value: undefined }));
        if (!r.done && r.value.byteLength > 0) throw tooMuch(name, range, length, 'it sent more');
        return out;
      }
      const r = await withDeadline(reader.read(), windowStart + limits.idleTimeoutMs - Date.now(), stalled);
      if (r.done) break;
      const chunk = r.value;
      if (chunk.byteLength > length - got) throw tooMuch(name, range, length, 'it sent more');
      out.set(chunk, got);
      got += chunk.byteLength;
      if (got - windowFrom >= Math.min(limits.idleMinBytes, length - windowFrom)) {
        windowStart = Date.now();
        windowFrom = got;
      }
    }
  } catch (e) {
    throw networkError(name, e);
  } finally {
    // Stops the transfer (and frees the connection) unless the body already ended.
    reader.cancel().catch(() => {});
  }
  throw markTransient(
    new EngineError(
      'network',
      `${name}: short read: ${got} of ${length} bytes for Range ${range}; the connection may have dropped`,
    ),
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
    new EngineError(
      'network',
      `${name}: request failed: ${safeText(msg, 300)}; check the connection and the URL`,
      {
        cause: e,
      },
    ),
  );
}

/**
 * One request: sends it (with `range` if given) under its own AbortController, linked to the
 * caller's signal, waits at most `responseTimeoutMs` for the headers, hands the response to `use`,
 * and then closes whatever `use` left of the body. A timeout or a failure in `use` cuts the
 * connection, so a hostile server cannot keep sending.
 */
async function exchange<T>(
  { fetchFn, url, name, init, limits }: Target,
  range: string | undefined,
  use: (res: Response, range: string) => Promise<T>,
): Promise<T> {
  const headers = new Headers(init.headers);
  if (range) headers.set('Range', range);
  const controller = new AbortController();
  const outer = init.signal;
  const forward = () => controller.abort();
  if (outer?.aborted) controller.abort();
  outer?.addEventListener('abort', forward, { once: true });
  let res: Response | undefined;
  try {
    try {
      res = await withDeadline(
        fetchFn(url, { ...init, headers, cache: 'no-store', signal: controller.signal }),
        limits.responseTimeoutMs,
        () => {
          controller.abort();
          return markTransient(
            new EngineError(
              'network',
              `${name}: no response within ${seconds(limits.responseTimeoutMs)}` +
                `${range ? ` (Range ${range})` : ''}; the server is not answering: check the URL, or try again later`,
            ),
          );
        },
      );
    } catch (e) {
      throw networkError(name, e);
    }
    const out = await use(res, range ?? '');
    await res.body?.cancel().catch(() => {});
    return out;
  } catch (e) {
    controller.abort();
    throw e;
  } finally {
    outer?.removeEventListener('abort', forward);
  }
}
