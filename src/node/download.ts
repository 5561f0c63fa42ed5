/**
 * Node-side model download into a local cache folder, for the CLI's default model: the shared
 * recipe (src/storage/resumable-download.ts) writing into a file.
 *
 * Bytes go to `<file>.part`, the file's size and validators (ETag, Last-Modified, published
 * sha-256) to `<file>.part.json`; an interrupted download resumes from the part's size unless the
 * server now describes a different file. Only when every check passed is `.part` renamed to the
 * final name, so a cut, a changed file or an HTML error page never poisons the cache.
 */
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { fileChanged, type RemoteInfo } from '../storage/manifest';
import {
  type DownloadSink,
  downloadResumable,
  type KnownRemoteInfo,
  retrySchedule,
} from '../storage/resumable-download';

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
  /** Attempts after a failure, in a row (default 5). */
  retries?: number;
  /** First pause between attempts, doubling up to 8 s (default 500 ms). */
  retryDelayMs?: number;
  /** The response headers must arrive within this; and the same for every 16 KiB of body (default 30 s). */
  timeoutMs?: number;
  /** Hint appended to the one-line error when the server cannot be reached at all. */
  offlineHint?: string;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** `<dest>.part` and its `<dest>.part.json` (the file the bytes belong to). */
class PartFileSink implements DownloadSink {
  private readonly part: string;
  private readonly meta: string;
  private out?: FileHandle;
  private size = 0;

  constructor(private readonly dest: string) {
    this.part = `${dest}.part`;
    this.meta = `${dest}.part.json`;
  }

  async prepare(remote: RemoteInfo) {
    let stored: KnownRemoteInfo | undefined;
    try {
      stored = JSON.parse(await readFile(this.meta, 'utf8')) as KnownRemoteInfo;
      if (typeof stored.size !== 'number') stored = undefined;
    } catch {
      stored = undefined; // a part from before validators were kept: resume on its size alone
    }
    this.size = await fileSize(this.part);
    const changed = stored ? fileChanged(stored, remote) : undefined;
    const tooLong =
      (remote.size !== undefined && this.size > remote.size) || (stored && this.size > stored.size);
    if (this.size > 0 && (changed || tooLong)) {
      await this.reset();
      return {
        offset: 0,
        restarted: `${changed ?? 'the partial file is longer than the file'}: starting over`,
      };
    }
    return { offset: this.size, file: this.size > 0 ? stored : undefined };
  }

  async begin(file: KnownRemoteInfo): Promise<void> {
    await writeFile(this.meta, JSON.stringify(file));
  }

  async replay(onBytes: (bytes: Uint8Array) => void): Promise<number> {
    const fh = await open(this.part, 'r');
    try {
      const buf = new Uint8Array(4 << 20);
      for (let at = 0; at < this.size; ) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, this.size - at), at);
        if (bytesRead === 0) break;
        onBytes(buf.subarray(0, bytesRead));
        at += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return this.size;
  }

  async write(bytes: Uint8Array): Promise<void> {
    this.out ??= await open(this.part, this.size > 0 ? 'a' : 'w');
    await this.out.write(bytes);
    this.size += bytes.length;
  }

  /** Every byte written is in the part file: the resume offset is its size. */
  async rollback(): Promise<number> {
    await this.out?.close();
    this.out = undefined;
    this.size = await fileSize(this.part);
    return this.size;
  }

  async reset(): Promise<void> {
    await this.out?.close();
    this.out = undefined;
    await rm(this.part, { force: true });
    this.size = 0;
  }

  async complete(): Promise<void> {
    await this.rollback();
    await rename(this.part, this.dest);
    await rm(this.meta, { force: true });
  }

  async discard(): Promise<void> {
    await this.reset();
    await rm(this.meta, { force: true });
  }
}

/**
 * Download `url` to `dest`, resuming from `dest.part` if an earlier run left one. Returns `dest`.
 * Throws EngineError with one line saying what failed and what to do.
 */
export async function downloadToFile(opts: DownloadOptions): Promise<string> {
  const { url, dest } = opts;
  await mkdir(join(dest, '..'), { recursive: true });
  const t0 = performance.now();
  let startedAt: number | undefined;
  await downloadResumable(url, new PartFileSink(dest), {
    signal: opts.signal,
    maxRetries: opts.retries,
    retryDelayMs: retrySchedule(opts.retryDelayMs),
    answerTimeoutMs: opts.timeoutMs,
    stallTimeoutMs: opts.timeoutMs,
    unreachableHint: opts.offlineHint,
    onProgress: (p) => {
      if (p.phase !== 'download' || !opts.onProgress) return;
      startedAt ??= p.resumedFrom;
      // Average over this run: steadier for a one-line status than a sliding window.
      const secs = Math.max((performance.now() - t0) / 1000, 1e-3);
      const bytesPerSecond = (p.loadedBytes - startedAt) / secs;
      const left = p.totalBytes - p.loadedBytes;
      opts.onProgress({
        loadedBytes: p.loadedBytes,
        totalBytes: p.totalBytes,
        bytesPerSecond,
        etaSeconds: p.totalBytes > 0 && bytesPerSecond > 0 ? left / bytesPerSecond : Number.NaN,
      });
    },
  });
  return dest;
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
