/**
 * The cache's bookkeeping, as plain data and pure functions (no IndexedDB, no fetch): what a cached
 * model is, how much of it is usable, and what to do next when a download starts or resumes.
 *
 * A model is cached as chunk records of `chunkSize` bytes (the last one shorter) plus one small
 * manifest. Each chunk record carries its own sha-256, so storing a chunk costs the same whatever
 * the file's size: one chunk put and one put of a manifest that holds a count, not a list.
 * Chunks are written strictly in file order, so "usable bytes" is always a prefix of the file.
 */
import { EngineError } from '../engine/errors';
import { formatBytes } from '../engine/format-bytes';

/** One stored chunk (format 2): the bytes and the hash they are checked against when read back. */
export interface StoredChunk {
  size: number;
  /** Hex sha-256 of `data`. */
  sha256: string;
  data: Blob;
}

export interface ModelManifest {
  version: 2;
  /** The cache key: the URL the user asked for (a Hugging Face `resolve` URL, never a signed CDN URL). */
  id: string;
  /** Where to download from; always the original URL (signed redirects expire). */
  url: string;
  /** File name for display. */
  name: string;
  /** Total bytes of the file. */
  size: number;
  /** ETag of the response, when the server exposes it (a changed ETag invalidates partial bytes). */
  etag?: string;
  /** Last-Modified of the response, when exposed (the same role as the ETag). */
  lastModified?: string;
  /** sha-256 published by the source (Hugging Face LFS), checked over the whole file at the end. */
  expectedSha256?: string;
  chunkSize: number;
  /** Chunks 0 … storedChunks − 1 are stored. */
  storedChunks: number;
  /**
   * Caches written by format 1 (one manifest listing every chunk, chunk values stored as bare Blobs):
   * the per-chunk hashes from that list. Such a model is read, never appended to.
   */
  legacyChunkSha256?: string[];
  /** True only once every byte is stored and every check passed. */
  complete: boolean;
  createdAt: number;
  updatedAt: number;
}

/** What the server says about a file (HEAD or the first response). */
export interface RemoteInfo {
  /** Total size, when known. */
  size?: number;
  etag?: string;
  lastModified?: string;
  expectedSha256?: string;
}

export const KIB = 1024;
export const MIB = 1024 * KIB;
/** 32 MiB: small enough for any IndexedDB value limit (incognito: 127 MiB), big enough to keep the record count low. */
export const DEFAULT_CHUNK_SIZE = 32 * MIB;
/** Smaller chunks only multiply records (a 4.7 GB model in 64 KiB chunks is already 72,000 of them). */
export const MIN_CHUNK_SIZE = 64 * KIB;
/** Unit tests exercise chunk boundaries with files of a few hundred KB. */
export const MIN_TEST_CHUNK_SIZE = 1 * KIB;
/** Larger values risk the browser's per-value limits and hold that much in memory per chunk. */
export const MAX_CHUNK_SIZE = 256 * MIB;
/** Chunk keys carry a 6-digit index. */
export const MAX_CHUNKS = 999_999;

/**
 * The chunk size to use, or an EngineError saying why `n` is not one: an integer number of bytes
 * between 64 KiB (1 KiB with `allowSmall`, for tests) and 256 MiB.
 */
export function checkChunkSize(n: number | undefined, opts: { allowSmall?: boolean } = {}): number {
  if (n === undefined) return DEFAULT_CHUNK_SIZE;
  const min = opts.allowSmall ? MIN_TEST_CHUNK_SIZE : MIN_CHUNK_SIZE;
  if (!Number.isSafeInteger(n) || n < min || n > MAX_CHUNK_SIZE) {
    throw new EngineError(
      'bad-argument',
      `The cache chunk size must be a whole number of bytes from ${formatBytes(min, 'binary')} to ${formatBytes(MAX_CHUNK_SIZE, 'binary')}; got ${String(n).slice(0, 40)}.`,
    );
  }
  return n;
}

export function fileNameFromUrl(url: string): string {
  try {
    const u = new URL(url);
    const last = u.pathname.split('/').filter(Boolean).pop();
    return last ? decodeURIComponent(last) : u.host;
  } catch {
    return url;
  }
}

export function newManifest(
  url: string,
  remote: RemoteInfo & { size: number },
  chunkSize: number,
): ModelManifest {
  if (Math.ceil(remote.size / chunkSize) > MAX_CHUNKS) {
    throw new EngineError(
      'bad-argument',
      `${fileNameFromUrl(url)} (${formatBytes(remote.size)}) would need more than ${MAX_CHUNKS} chunks of ${formatBytes(chunkSize, 'binary')}; use a larger chunk size.`,
    );
  }
  const t = Date.now();
  return {
    version: 2,
    id: url,
    url,
    name: fileNameFromUrl(url),
    size: remote.size,
    etag: remote.etag,
    lastModified: remote.lastModified,
    expectedSha256: remote.expectedSha256,
    chunkSize,
    storedChunks: 0,
    complete: false,
    createdAt: t,
    updatedAt: t,
  };
}

/** Bytes of chunk `index` of a file of `size` bytes. */
export function chunkLength(m: Pick<ModelManifest, 'size' | 'chunkSize'>, index: number): number {
  return Math.max(0, Math.min(m.chunkSize, m.size - index * m.chunkSize));
}

/** Bytes usable from the start of the file (the stored chunks form a prefix). */
export function contiguousBytes(m: ModelManifest): number {
  return Math.min(m.size, m.storedChunks * m.chunkSize);
}

/**
 * A manifest as read from storage, in the current format, or why it cannot be used. Format 1
 * (a list of every chunk) is converted: its stored prefix keeps loading. Anything malformed, such
 * as the sub-byte chunk sizes an old test hook could write, is refused so that the caller can
 * discard the entry.
 */
export function upgradeManifest(raw: unknown): { manifest?: ModelManifest; discard?: string } {
  if (!raw || typeof raw !== 'object') return { discard: 'its record is unreadable' };
  const r = raw as Record<string, unknown>;
  const size = r.size;
  const chunkSize = r.chunkSize;
  const shapeOk =
    typeof r.id === 'string' &&
    typeof r.url === 'string' &&
    typeof size === 'number' &&
    Number.isSafeInteger(size) &&
    size >= 0 &&
    typeof chunkSize === 'number';
  if (!shapeOk) return { discard: 'its record is unreadable' };
  try {
    checkChunkSize(chunkSize, { allowSmall: true });
  } catch {
    return {
      discard: `it was stored in chunks of ${String(chunkSize).slice(0, 20)} bytes, which is not valid`,
    };
  }
  if (r.version === 2) {
    const n = r.storedChunks;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > Math.ceil(size / chunkSize)) {
      return { discard: 'its record is unreadable' };
    }
    return { manifest: raw as ModelManifest };
  }
  if (r.version === 1 && Array.isArray(r.chunks)) {
    // The old prefix rule: chunk i at offset i * chunkSize, full size except the file's last one.
    const hashes: string[] = [];
    let end = 0;
    for (const [i, c] of (
      r.chunks as { index?: number; offset?: number; size?: number; sha256?: string }[]
    ).entries()) {
      if (c?.index !== i || c.offset !== end || typeof c.size !== 'number' || typeof c.sha256 !== 'string')
        break;
      if (c.size !== chunkSize && c.offset + c.size !== size) break;
      if (c.offset + c.size > size) break;
      hashes.push(c.sha256);
      end += c.size;
    }
    const { chunks: _dropped, ...rest } = r;
    const manifest = {
      ...(rest as Omit<ModelManifest, 'version' | 'storedChunks'>),
      version: 2,
      storedChunks: hashes.length,
      legacyChunkSha256: hashes,
      complete: r.complete === true && end === size,
    } satisfies ModelManifest;
    return { manifest };
  }
  return { discard: 'it was written by an unknown version of the app' };
}

/** Why the file a cache entry came from and the file the server describes now differ, if they do. */
export function fileChanged(stored: RemoteInfo & { size: number }, remote: RemoteInfo): string | undefined {
  if (remote.size !== undefined && remote.size !== stored.size) {
    return `the file changed size (${formatBytes(stored.size)} → ${formatBytes(remote.size)})`;
  }
  if (remote.expectedSha256 && stored.expectedSha256 && remote.expectedSha256 !== stored.expectedSha256) {
    return 'the file changed on the server (its sha-256 differs)';
  }
  if (remote.etag && stored.etag && remote.etag !== stored.etag) {
    return 'the file changed on the server (its ETag differs)';
  }
  if (remote.lastModified && stored.lastModified && remote.lastModified !== stored.lastModified) {
    return `the file changed on the server (modified ${remote.lastModified})`;
  }
  return undefined;
}

/** Size, ETag, Last-Modified and published sha-256 from response headers. */
export function remoteInfoFrom(headers: { get(name: string): string | null }, ok = true): RemoteInfo {
  const len = headers.get('content-length');
  return {
    size: ok && len && /^\d+$/.test(len) ? Number(len) : undefined,
    etag: headers.get('etag') ?? undefined,
    lastModified: headers.get('last-modified') ?? undefined,
    expectedSha256: publishedSha256(headers),
  };
}

export type DownloadPlan =
  /** Everything is there and verified. */
  | { kind: 'complete' }
  /** Start from byte 0; `discard` says whether stored chunks must be deleted first (and why). */
  | { kind: 'fresh'; discard: boolean; reason: string }
  /** Keep the first `keepChunks` chunks and ask for `bytes=offset-`. */
  | { kind: 'resume'; offset: number; keepChunks: number };

/** Decide how to continue from what is stored, given what the server says now. */
export function planDownload(
  stored: ModelManifest | undefined,
  remote: RemoteInfo,
  chunkSize: number,
): DownloadPlan {
  if (!stored) return { kind: 'fresh', discard: false, reason: 'not cached' };
  if (stored.complete) return { kind: 'complete' };
  if (stored.legacyChunkSha256) {
    return { kind: 'fresh', discard: true, reason: 'the partial download was stored by an older version' };
  }
  if (stored.chunkSize !== chunkSize) {
    return { kind: 'fresh', discard: true, reason: 'chunk size changed' };
  }
  const changed = fileChanged(stored, remote);
  if (changed) return { kind: 'fresh', discard: true, reason: changed };
  // Resume only from a chunk boundary: a short last chunk is re-fetched whole.
  const keepChunks = Math.min(stored.storedChunks, Math.floor(stored.size / stored.chunkSize));
  if (keepChunks === 0) {
    return { kind: 'fresh', discard: stored.storedChunks > 0, reason: 'nothing usable stored' };
  }
  return { kind: 'resume', offset: keepChunks * stored.chunkSize, keepChunks };
}

/** `Content-Range: bytes start-end/total` (total may be `*`). */
export function parseContentRange(
  h: string | null | undefined,
): { start: number; end: number; total?: number } | undefined {
  if (!h) return undefined;
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(h);
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

export type ResponseDecision =
  /** Body starts at the requested offset. */
  | { kind: 'accept'; start: number; total?: number }
  /** Body is the whole file from byte 0 (a server that ignores Range): drop stored chunks. */
  | { kind: 'restart-with-body'; total?: number }
  /** The body can't be used: drop stored chunks and ask again without Range. */
  | { kind: 'restart'; reason: string }
  /** 416 at exactly the end: everything was already there. */
  | { kind: 'already-complete' }
  /** Try the same request again later (5xx, 429, 408). */
  | { kind: 'retry'; reason: string }
  | { kind: 'fail'; reason: string };

export function decideResponse(
  requestedOffset: number,
  expectedSize: number | undefined,
  status: number,
  headers: { get(name: string): string | null },
): ResponseDecision {
  const len = headers.get('content-length');
  const contentLength = len !== null && /^\d+$/.test(len) ? Number(len) : undefined;
  if (status === 200) {
    const total = contentLength;
    if (expectedSize !== undefined && total !== undefined && total !== expectedSize) {
      return {
        kind: 'restart',
        reason: `the server sent ${total} bytes where ${expectedSize} were expected`,
      };
    }
    if (requestedOffset === 0) return { kind: 'accept', start: 0, total };
    return { kind: 'restart-with-body', total };
  }
  if (status === 206) {
    const cr = parseContentRange(headers.get('content-range'));
    if (cr) {
      if (cr.start !== requestedOffset) {
        return {
          kind: 'restart',
          reason: `the server answered from byte ${cr.start}, not ${requestedOffset}`,
        };
      }
      if (expectedSize !== undefined && cr.total !== undefined && cr.total !== expectedSize) {
        return { kind: 'restart', reason: `the file is now ${cr.total} bytes, was ${expectedSize}` };
      }
      return { kind: 'accept', start: cr.start, total: cr.total };
    }
    // Content-Range hidden by CORS: trust the length when it matches what is left.
    if (expectedSize !== undefined && contentLength !== undefined) {
      if (contentLength === expectedSize - requestedOffset) {
        return { kind: 'accept', start: requestedOffset, total: expectedSize };
      }
      return { kind: 'restart', reason: `a partial answer of ${contentLength} bytes does not fit` };
    }
    return { kind: 'restart', reason: 'a partial answer without Content-Range' };
  }
  if (status === 416) {
    // `Content-Range: bytes */<total>` says how big the file is when we did not know.
    const unsatisfied = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(headers.get('content-range') ?? '');
    const total = expectedSize ?? (unsatisfied ? Number(unsatisfied[1]) : undefined);
    if (total !== undefined && requestedOffset === total) return { kind: 'already-complete' };
    return { kind: 'restart', reason: 'the server rejected the range (416)' };
  }
  if (status === 408 || status === 429 || status >= 500) {
    return { kind: 'retry', reason: `the server answered ${status}` };
  }
  if (status === 401 || status === 403) {
    return {
      kind: 'fail',
      reason: `the server refused access (${status}); the model may be gated: download it yourself and open the file`,
    };
  }
  if (status === 404) return { kind: 'fail', reason: 'no file at this URL (404); check the address' };
  return { kind: 'fail', reason: `the server answered ${status}` };
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * The sha-256 a source publishes, when it does: Hugging Face puts it in `X-Linked-Etag` for LFS
 * files (when CORS exposes it) and its CDN's `ETag` is the sha-256 too. A 40-hex ETag (git sha1)
 * or a weak/opaque one is not a content hash and is ignored.
 */
export function publishedSha256(headers: { get(name: string): string | null }): string | undefined {
  for (const name of ['x-linked-etag', 'etag']) {
    const v = headers.get(name);
    if (!v) continue;
    const clean = v.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
    if (HEX64.test(clean)) return clean;
  }
  return undefined;
}

/** The first four bytes of every GGUF file. */
export function hasGgufMagic(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0x47 && bytes[1] === 0x47 && bytes[2] === 0x55 && bytes[3] === 0x46
  );
}

/** A short printable look at bytes that are not GGUF ("<!DOCTYPE html>…"), for error messages. */
export function describeStart(bytes: Uint8Array): string {
  const head = bytes.subarray(0, 24);
  let s = '';
  for (const b of head) s += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
  return JSON.stringify(s);
}

export function toHex(buf: ArrayBuffer | Uint8Array): string {
  const b = buf instanceof Uint8Array ? buf : new Uint8Array(buf);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** Transfer speed over a sliding window, and the time left. */
export class ProgressMeter {
  private samples: { t: number; bytes: number }[] = [];
  constructor(private readonly windowMs = 3000) {}

  /** Record the running byte count at time `t` (ms). */
  add(t: number, bytes: number): void {
    this.samples.push({ t, bytes });
    while (this.samples.length > 2 && t - this.samples[0].t > this.windowMs) this.samples.shift();
  }

  /** Bytes per second over the window (0 until two samples exist). */
  bytesPerSecond(): number {
    if (this.samples.length < 2) return 0;
    const a = this.samples[0];
    const b = this.samples[this.samples.length - 1];
    const dt = b.t - a.t;
    return dt > 0 ? ((b.bytes - a.bytes) / dt) * 1000 : 0;
  }

  /** Seconds until `total`, or undefined while the speed is unknown. */
  etaSeconds(total: number): number | undefined {
    const v = this.bytesPerSecond();
    if (v <= 0 || this.samples.length === 0) return undefined;
    const left = total - this.samples[this.samples.length - 1].bytes;
    return Math.max(0, left / v);
  }
}
