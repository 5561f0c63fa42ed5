/**
 * Node-side model download into a local cache folder, for the CLI's default model.
 *
 * The recipe (notes/reliability.md, "Resume recipe"): bytes go to `<file>.part`; an interrupted
 * download resumes with `Range: bytes=<part size>-`; a 206 must start exactly at that offset and
 * agree on the total; a 200 means the server ignored the range, so the part is truncated and the
 * download starts over (never concatenated); a 416 means the part already holds everything the
 * server has. Only when the byte count equals the server's total and the file starts with the
 * `GGUF` magic is `.part` renamed to the final name, so a cut or an HTML error page never poisons
 * the cache.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat, truncate } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { EngineError } from '../engine/errors';

/** The seed's default model: Meta's pretrained Llama 3 8B, q4_0 (QuantFactory's GGUF). */
export const DEFAULT_MODEL_URL =
  'https://huggingface.co/QuantFactory/Meta-Llama-3-8B-GGUF/resolve/main/Meta-Llama-3-8B.Q4_0.gguf';

/** The URL of the default model; `LLAMA3_WEBGPU_DEFAULT_MODEL_URL` replaces it (tests, mirrors). */
export function defaultModelUrl(env: NodeJS.ProcessEnv = process.env): string {
  return env.LLAMA3_WEBGPU_DEFAULT_MODEL_URL || DEFAULT_MODEL_URL;
}

/** `$LLAMA3_WEBGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/llama3-webgpu`, else `~/.cache/llama3-webgpu`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LLAMA3_WEBGPU_CACHE_DIR) return env.LLAMA3_WEBGPU_CACHE_DIR;
  const base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'llama3-webgpu');
}

export interface DownloadProgress {
  loadedBytes: number;
  /** 0 when the server did not say. */
  totalBytes: number;
  /** Average over the current attempt. */
  bytesPerSecond: number;
  /** Seconds left at that speed; NaN when unknown. */
  etaSeconds: number;
}

export interface DownloadOptions {
  url: string;
  /** Final path; bytes are written to `dest + '.part'` until complete and checked. */
  dest: string;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** Attempts after a failure that made progress or looked transient (default 5). */
  retries?: number;
  /** Pause before retry k is k × this (default 500 ms). */
  retryDelayMs?: number;
  /** Hint appended to the one-line error when the server cannot be reached at all. */
  offlineHint?: string;
}

const GGUF_MAGIC = [0x47, 0x47, 0x55, 0x46]; // "GGUF"

/** Errors that say the host cannot be reached at all: retrying will not help. */
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

function describeError(e: unknown): string {
  const code = errorCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : '';
  return [code, cause || msg].filter(Boolean).join(': ');
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function hasGgufMagic(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4);
    const { bytesRead } = await fh.read(buf, 0, 4, 0);
    return bytesRead === 4 && GGUF_MAGIC.every((b, i) => buf[i] === b);
  } finally {
    await fh.close();
  }
}

/** "bytes 100-999/1000" → { start: 100, total: 1000 }; "bytes *\/1000" → { start: -1, total: 1000 }. */
function parseContentRange(h: string | null): { start: number; total: number } | undefined {
  if (!h) return undefined;
  const m = /^bytes\s+(?:(\d+)-\d+|\*)\/(\d+|\*)$/i.exec(h.trim());
  if (!m) return undefined;
  return { start: m[1] === undefined ? -1 : Number(m[1]), total: m[2] === '*' ? 0 : Number(m[2]) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A bad HTTP status; 4xx other than 408/429 will not change on retry. */
class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  get permanent(): boolean {
    return this.status >= 400 && this.status < 500 && this.status !== 408 && this.status !== 429;
  }
}

/**
 * Download `url` to `dest`, resuming from `dest.part` if an earlier run left one. Returns `dest`.
 * Throws EngineError('network') with one line saying what failed and what to do.
 */
export async function downloadToFile(opts: DownloadOptions): Promise<string> {
  const { url, dest } = opts;
  const part = `${dest}.part`;
  const retries = opts.retries ?? 5;
  const retryDelayMs = opts.retryDelayMs ?? 500;
  await mkdir(join(dest, '..'), { recursive: true });

  let failures = 0;
  for (;;) {
    if (opts.signal?.aborted) throw new EngineError('interrupted', `download of ${url} cancelled`);
    const offset = await fileSize(part);
    let received = 0;
    try {
      const done = await attempt(url, part, offset, opts, (n) => {
        received += n;
      });
      if (done) break;
    } catch (e) {
      if (e instanceof EngineError && e.code !== 'network') throw e;
      if (e instanceof HttpStatusError && e.permanent) {
        throw new EngineError('network', `could not download ${url} (${e.message})`, { cause: e });
      }
      const code = errorCode(e);
      if (opts.signal?.aborted) throw new EngineError('interrupted', `download of ${url} cancelled`);
      const unreachable = code !== undefined && UNREACHABLE.has(code) && offset === 0 && received === 0;
      if (received > 0) failures = 0; // progress was made: the budget is for consecutive failures
      failures++;
      if (unreachable || failures > retries) {
        const hint = unreachable && opts.offlineHint ? `; ${opts.offlineHint}` : '';
        const what = e instanceof EngineError || e instanceof HttpStatusError ? e.message : describeError(e);
        throw new EngineError('network', `could not download ${url} (${what})${hint}`, { cause: e });
      }
      await sleep(retryDelayMs * failures);
    }
  }

  if (!(await hasGgufMagic(part))) {
    await rm(part, { force: true });
    throw new EngineError(
      'network',
      `${url} did not return a GGUF file (no "GGUF" magic at the start; an error page?); the partial download was deleted`,
    );
  }
  await rename(part, dest);
  return dest;
}

/**
 * One HTTP request. Returns true when the part file is complete, false when it was reset and the
 * caller should request again from 0; throws on network errors (the caller retries/resumes).
 */
async function attempt(
  url: string,
  part: string,
  offset: number,
  opts: DownloadOptions,
  onBytes: (n: number) => void,
): Promise<boolean> {
  const headers: Record<string, string> = {};
  if (offset > 0) headers.Range = `bytes=${offset}-`;
  const res = await fetch(url, { headers, signal: opts.signal, redirect: 'follow' });

  if (res.status === 416 && offset > 0) {
    // Nothing past our offset. Complete only if the server's total is exactly what we have.
    await res.body?.cancel();
    const cr = parseContentRange(res.headers.get('content-range'));
    if (cr && cr.total === offset) return true;
    await truncate(part, 0);
    return false;
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new HttpStatusError(
      res.status,
      `HTTP ${res.status} ${res.statusText || ''}`.trim() +
        (res.status === 404
          ? ': no such file'
          : res.status >= 500 || res.status === 429
            ? ': server busy'
            : ''),
    );
  }
  let start = 0;
  let total = Number(res.headers.get('content-length') ?? 0);
  if (res.status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (!cr || cr.start !== offset) {
      // A range we did not ask for: do not splice it in; start over.
      await res.body?.cancel();
      await truncate(part, 0);
      return false;
    }
    start = offset;
    total = cr.total || offset + total;
  } else if (offset > 0) {
    // 200: the server ignored Range and sends the whole file. Overwrite the part from 0.
    await truncate(part, 0);
  }
  if (!res.body) throw new EngineError('network', 'empty response body');

  const out = createWriteStream(part, { flags: start > 0 ? 'a' : 'w' });
  const t0 = performance.now();
  let loaded = start;
  let lastReport = 0;
  const report = (force: boolean) => {
    const t = performance.now();
    if (!opts.onProgress || (!force && t - lastReport < 250)) return;
    lastReport = t;
    const secs = Math.max((t - t0) / 1000, 1e-3);
    const bytesPerSecond = (loaded - start) / secs;
    const etaSeconds = total > 0 && bytesPerSecond > 0 ? (total - loaded) / bytesPerSecond : Number.NaN;
    opts.onProgress({ loadedBytes: loaded, totalBytes: total, bytesPerSecond, etaSeconds });
  };
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!out.write(value)) await new Promise<void>((r) => out.once('drain', () => r()));
      loaded += value.byteLength;
      onBytes(value.byteLength);
      report(false);
    }
  } finally {
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
  }
  report(true);
  const have = await fileSize(part);
  if (total > 0 && have !== total) {
    // A clean close short of Content-Length (or a server that lied): resume from what we have.
    if (have > total) {
      await truncate(part, 0);
      return false;
    }
    throw new EngineError('network', `connection closed after ${have} of ${total} bytes`);
  }
  return true;
}

/**
 * The default model in the cache folder, downloading it first when missing. `onProgress` gets the
 * bytes/speed/ETA of the download (not called when the file is already cached).
 */
export async function ensureDefaultModel(
  opts: { env?: NodeJS.ProcessEnv; onProgress?: (p: DownloadProgress) => void; signal?: AbortSignal } = {},
): Promise<string> {
  const env = opts.env ?? process.env;
  const url = defaultModelUrl(env);
  const name = basename(new URL(url).pathname) || 'model.gguf';
  const dest = join(cacheDir(env), name);
  if ((await fileSize(dest)) > 0) return dest;
  return downloadToFile({
    url,
    dest,
    onProgress: opts.onProgress,
    signal: opts.signal,
    offlineHint:
      'are you offline? Run with --model-path /path/to/tinystories-llama3-q4_0.gguf (the small demo model shipped in public/models/) or any Llama 3 GGUF file or URL',
  });
}

/** "1.2 GB", "35.0 MB": decimal units, as download tools print them. */
export function formatBytes(n: number): string {
  if (n < 1e3) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1e3;
  let i = 0;
  while (v >= 1e3 && i < units.length - 1) {
    v /= 1e3;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

/** "12:05", "1:02:03", "?" for an unknown ETA. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  const mm = h > 0 ? String(m).padStart(2, '0') : String(m);
  return `${h > 0 ? `${h}:` : ''}${mm}:${String(sec).padStart(2, '0')}`;
}
