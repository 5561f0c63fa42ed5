import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EngineError } from '../engine/errors';
import { cacheDir, downloadToFile, ensureDefaultModel, formatDuration } from './download';

/** A GGUF-looking payload: the magic, then random bytes (what matters is byte-exactness). */
function payload(n: number): Buffer {
  const b = randomBytes(n);
  b.write('GGUF', 0, 'latin1');
  return b;
}

/** `n`: this GET's number (1, 2, …); 0 for the HEAD probe that comes before them. */
type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

async function serve(handler: Handler): Promise<{
  url: string;
  server: Server;
  /** The Range of each GET. */
  ranges: (string | undefined)[];
  /** Every request, "HEAD" or "GET <range>". */
  requests: string[];
}> {
  const ranges: (string | undefined)[] = [];
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method}${req.headers.range ? ` ${req.headers.range}` : ''}`);
    if (req.method !== 'GET') return handler(req, res, 0);
    ranges.push(req.headers.range);
    handler(req, res, ranges.length);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/models/tiny.gguf`, server, ranges, requests };
}

/** Honour `Range: bytes=N-` like a CDN; `cutAfter` bytes into the body, destroy the socket. */
function rangeServer(
  data: Buffer,
  opts: {
    cutAfter?: (n: number) => number | undefined;
    ignoreRange?: boolean;
    /** Answer HEAD with 405 (some servers do): the size comes from the GET. */
    noHead?: boolean;
    headers?: Record<string, string>;
  },
) {
  return (req: IncomingMessage, res: ServerResponse, n: number) => {
    for (const [k, v] of Object.entries(opts.headers ?? {})) res.setHeader(k, v);
    if (req.method === 'HEAD' && opts.noHead) {
      res.writeHead(405);
      res.end();
      return;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = 0;
    if (m && !opts.ignoreRange) {
      start = Number(m[1]);
      if (start >= data.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${data.length}` });
        res.end();
        return;
      }
      res.writeHead(206, {
        'Content-Length': data.length - start,
        'Content-Range': `bytes ${start}-${data.length - 1}/${data.length}`,
      });
    } else {
      res.writeHead(200, { 'Content-Length': data.length });
    }
    const body = data.subarray(start);
    const cut = opts.cutAfter?.(n);
    if (cut !== undefined && cut < body.length) {
      res.write(body.subarray(0, cut), () => {
        // Give the bytes time to reach the client, then kill the connection mid-file.
        setTimeout(() => res.socket?.destroy(), 20);
      });
    } else {
      res.end(body);
    }
  };
}

let dir: string;
let server: Server | undefined;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dl-test-'));
});
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('downloadToFile', () => {
  it('resumes with Range after the connection is cut mid-file; the cached bytes equal the file', async () => {
    const data = payload(3 * 1024 * 1024 + 123);
    const s = await serve(
      rangeServer(data, { cutAfter: (n) => (n >= 1 && n <= 2 ? 1024 * 1024 : undefined) }),
    );
    server = s.server;
    const dest = join(dir, 'm.gguf');
    const progress: number[] = [];
    await downloadToFile({
      url: s.url,
      dest,
      retryDelayMs: 10,
      onProgress: (p) => {
        progress.push(p.loadedBytes);
        expect(p.totalBytes).toBe(data.length);
      },
    });
    expect(Buffer.compare(await readFile(dest), data)).toBe(0);
    expect(existsSync(`${dest}.part`)).toBe(false);
    // First request from 0, then resumed twice from where each cut left the part file.
    expect(s.ranges.length).toBe(3);
    expect(s.ranges[0]).toBeUndefined();
    const r1 = Number(/bytes=(\d+)-/.exec(s.ranges[1] ?? '')?.[1]);
    const r2 = Number(/bytes=(\d+)-/.exec(s.ranges[2] ?? '')?.[1]);
    expect(r1).toBeGreaterThan(0);
    expect(r2).toBeGreaterThan(r1);
    expect(progress.at(-1)).toBe(data.length);
  });

  it('resumes a .part left by an earlier run that gave up', async () => {
    const data = payload(2 * 1024 * 1024);
    const s = await serve(rangeServer(data, { cutAfter: (n) => (n === 1 ? 700_000 : undefined) }));
    server = s.server;
    const dest = join(dir, 'm.gguf');
    await expect(downloadToFile({ url: s.url, dest, retries: 0 })).rejects.toThrow(
      /^Download of http.*tiny\.gguf failed once \(the connection broke/,
    );
    expect(existsSync(dest)).toBe(false);
    const partial = await readFile(`${dest}.part`);
    expect(partial.length).toBeGreaterThan(0);
    expect(partial.length).toBeLessThan(data.length);
    await downloadToFile({ url: s.url, dest, retries: 0 });
    expect(s.ranges[1]).toBe(`bytes=${partial.length}-`);
    expect(Buffer.compare(await readFile(dest), data)).toBe(0);
  });

  it('starts over (never concatenates) when the server ignores Range and sends 200', async () => {
    const data = payload(1024 * 1024);
    const s = await serve(
      rangeServer(data, { ignoreRange: true, cutAfter: (n) => (n === 1 ? 300_000 : undefined) }),
    );
    server = s.server;
    const dest = join(dir, 'm.gguf');
    await downloadToFile({ url: s.url, dest, retryDelayMs: 10 });
    expect(s.ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Buffer.compare(await readFile(dest), data)).toBe(0);
  });

  it('finishes from a complete .part: by the HEAD size, or when the server answers 416', async () => {
    const data = payload(100_000);
    const s = await serve(rangeServer(data, {}));
    server = s.server;
    const dest = join(dir, 'm.gguf');
    await writeFile(`${dest}.part`, data);
    await downloadToFile({ url: s.url, dest });
    expect(s.requests).toEqual(['HEAD']);
    expect(Buffer.compare(await readFile(dest), data)).toBe(0);

    // No HEAD: the GET for the rest gets 416 `bytes */100000`, which says the part is whole.
    const s2 = await serve(rangeServer(data, { noHead: true }));
    const dest2 = join(dir, 'm2.gguf');
    await writeFile(`${dest2}.part`, data);
    try {
      await downloadToFile({ url: s2.url, dest: dest2 });
    } finally {
      await new Promise<void>((r) => s2.server.close(() => r()));
    }
    expect(s2.ranges).toEqual([`bytes=${data.length}-`]);
    expect(Buffer.compare(await readFile(dest2), data)).toBe(0);
  });

  it('starts over when the file changed since the part was written (ETag kept beside it)', async () => {
    const v1 = payload(1024 * 1024);
    let current = v1;
    let etag = '"v1"';
    const s = await serve((req, res, n) =>
      rangeServer(current, { headers: { ETag: etag }, cutAfter: (k) => (k === 1 ? 300_000 : undefined) })(
        req,
        res,
        n,
      ),
    );
    server = s.server;
    const dest = join(dir, 'm.gguf');
    await expect(downloadToFile({ url: s.url, dest, retries: 0 })).rejects.toThrow(/failed once/);
    expect(JSON.parse(await readFile(`${dest}.part.json`, 'utf8'))).toMatchObject({ etag: '"v1"' });
    current = payload(1024 * 1024);
    etag = '"v2"';
    await downloadToFile({ url: s.url, dest, retries: 0 });
    expect(s.ranges[1]).toBeUndefined(); // from byte 0, not from the old part's end
    expect(Buffer.compare(await readFile(dest), current)).toBe(0);
    expect(existsSync(`${dest}.part.json`)).toBe(false);
  });

  it('checks a published sha-256 (a sha-256 ETag) and keeps nothing that does not match', async () => {
    const data = payload(300_000);
    const wrong = 'a'.repeat(64);
    const s = await serve(rangeServer(data, { headers: { ETag: `"${wrong}"` } }));
    server = s.server;
    const dest = join(dir, 'm.gguf');
    const err = await downloadToFile({ url: s.url, dest }).catch((e) => e);
    expect(err.message).toMatch(/does not match its published sha-256/);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
  });

  it('gives up on a server that never answers, with the URL and the wait in one line', async () => {
    const s = await serve(() => {
      // never answers
    });
    server = s.server;
    const err = await downloadToFile({
      url: s.url,
      dest: join(dir, 'm.gguf'),
      timeoutMs: 100,
      retryDelayMs: 5,
    }).catch((e) => e);
    expect(err.code).toBe('network');
    expect(err.message).toBe(`could not download ${s.url} (no answer within 0.1 s)`);
    expect(s.requests).toEqual(['HEAD', 'HEAD', 'HEAD']);
    server.closeAllConnections();
  });

  it('rejects a 200 HTML page by the GGUF magic and keeps nothing', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>Sign in</title>');
    });
    server = s.server;
    const dest = join(dir, 'm.gguf');
    const err = await downloadToFile({ url: s.url, dest }).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.message).toMatch(/is not a GGUF file: the server sent a web page \(text\/html\)/);
    expect(existsSync(dest)).toBe(false);
    expect(existsSync(`${dest}.part`)).toBe(false);
  });

  it('fails at once on 404 with the status in the message', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(404);
      res.end('nope');
    });
    server = s.server;
    const err = await downloadToFile({ url: s.url, dest: join(dir, 'm.gguf'), retryDelayMs: 1000 }).catch(
      (e) => e,
    );
    expect(err.code).toBe('network');
    expect(err.message).toMatch(/no file at this URL \(404\)/);
    expect(s.requests).toEqual(['HEAD']); // no retries on a permanent status
  });

  it('retries 503 a bounded number of times, then says so', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(503);
      res.end();
    });
    server = s.server;
    const err = await downloadToFile({
      url: s.url,
      dest: join(dir, 'm.gguf'),
      retries: 2,
      retryDelayMs: 5,
    }).catch((e) => e);
    expect(err.message).toMatch(/failed 3 times in a row \(the server answered 503\)/);
    expect(s.ranges.length).toBe(3);
  });
});

describe('ensureDefaultModel', () => {
  it('offline (closed port) fails with one line suggesting the demo model', async () => {
    // Bind then close a port so that nothing listens on it.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((r) => probe.close(() => r()));
    const env = {
      LLAMA3_WEBGPU_DEFAULT_MODEL_URL: `http://127.0.0.1:${port}/Meta-Llama-3-8B.Q4_0.gguf`,
      LLAMA3_WEBGPU_CACHE_DIR: dir,
    };
    const err = await ensureDefaultModel({ env }).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.code).toBe('network');
    expect(err.message).not.toContain('\n');
    expect(err.message).toMatch(/connection refused: nothing answers at 127\.0\.0\.1:\d+/);
    expect(err.message).toContain('--model-path /path/to/tinystories-llama3-q4_0.gguf');
  });

  it('downloads into the cache folder once, then reuses the cached file', async () => {
    const data = payload(200_000);
    const s = await serve(rangeServer(data, {}));
    server = s.server;
    const env = { LLAMA3_WEBGPU_DEFAULT_MODEL_URL: s.url, LLAMA3_WEBGPU_CACHE_DIR: dir };
    const p1 = await ensureDefaultModel({ env });
    expect(p1).toBe(join(dir, 'tiny.gguf'));
    const p2 = await ensureDefaultModel({ env });
    expect(p2).toBe(p1);
    expect(s.ranges.length).toBe(1);
    expect(Buffer.compare(await readFile(p1), data)).toBe(0);
  });

  it('puts the cache under XDG_CACHE_HOME', () => {
    expect(cacheDir({ XDG_CACHE_HOME: '/x/cache' })).toBe('/x/cache/llama3-webgpu');
    expect(cacheDir({ LLAMA3_WEBGPU_CACHE_DIR: '/y', XDG_CACHE_HOME: '/x' })).toBe('/y');
  });
});

describe('formatting', () => {
  it('prints durations', () => {
    expect(formatDuration(65)).toBe('1:05');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(Number.NaN)).toBe('?');
  });
});
