/**
 * HttpRangeSource against a real node:http server on 127.0.0.1 that honours, ignores, hides or
 * breaks Range in the ways servers and CDNs do.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineError } from './errors';
import { llamaConfigFromGguf } from './gguf/config';
import { readGguf, readTensorBytes } from './gguf/reader';
import { engineError, tinyLlama } from './gguf/test-helpers';
import { HttpRangeSource } from './http-source';
import { MemorySource } from './source';

const file = tinyLlama({ dim: 64, nLayers: 2 });
const requests: { path: string; method: string; range?: string }[] = [];
let server: Server;
let base: string;
let endlessSent = 0;

/** Serves `body` honouring a single `bytes=a-b` range. */
function serveRange(
  req: IncomingMessage,
  res: ServerResponse,
  body: Uint8Array,
  opts: { hideCr?: boolean } = {},
) {
  const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  if (!m) {
    res.writeHead(200, { 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? body.length - 1 : Math.min(Number(m[2]), body.length - 1);
  if (start >= body.length) {
    res.writeHead(416, { 'content-range': `bytes */${body.length}` });
    res.end();
    return;
  }
  const headers: Record<string, string | number> = { 'content-length': end - start + 1 };
  if (!opts.hideCr) headers['content-range'] = `bytes ${start}-${end}/${body.length}`;
  res.writeHead(206, headers);
  res.end(body.subarray(start, end + 1));
}

beforeAll(async () => {
  let changingCalls = 0;
  const flakySeen = new Set<string>();
  let busyCalls = 0;
  server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    requests.push({ path, method: req.method ?? 'GET', range: req.headers.range });
    switch (path) {
      case '/model.gguf':
        return serveRange(req, res, file);
      case '/redirect':
        res.writeHead(302, { location: '/model.gguf?sig=secret' });
        return res.end();
      case '/no-range': // ignores Range: always the whole file
        res.writeHead(200, { 'content-length': file.length });
        return res.end(req.method === 'HEAD' ? undefined : file);
      case '/hidden-cr': // Content-Range not readable (as under CORS without expose headers)
        return serveRange(req, res, file, { hideCr: true });
      case '/missing':
        res.writeHead(404, { 'content-type': 'text/html' });
        return res.end('<html>not found</html>');
      case '/forbidden':
        res.writeHead(403);
        return res.end();
      case '/empty':
        return serveRange(req, res, new Uint8Array(0));
      case '/changing': {
        // The file grows after the first request: a re-upload under the same URL.
        changingCalls++;
        return serveRange(req, res, changingCalls === 1 ? file : new Uint8Array(file.length + 100));
      }
      case '/short': {
        // Honest headers for a shorter body than asked: a server bug or a proxy cutting ranges.
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        if (m && Number(m[1]) > 0) {
          const start = Number(m[1]);
          res.writeHead(206, {
            'content-range': `bytes ${start}-${start + 9}/${file.length}`,
            'content-length': 10,
          });
          return res.end(file.subarray(start, start + 10));
        }
        return serveRange(req, res, file);
      }
      case '/flaky': {
        // The first request for each range finds its connection reset (an idle keep-alive socket
        // the server had closed, a proxy hiccup); asking again works.
        const key = req.headers.range ?? '';
        if (!flakySeen.has(key)) {
          flakySeen.add(key);
          return req.socket.destroy();
        }
        return serveRange(req, res, file);
      }
      case '/busy': // 503 for the first two requests of the test, then fine
        if (++busyCalls <= 2) {
          res.writeHead(503);
          return res.end();
        }
        return serveRange(req, res, file);
      case '/down': // always 503
        res.writeHead(503);
        return res.end();
      // Hostile servers: each answers the size probe (bytes=0-0) honestly, then misbehaves on reads.
      case '/endless': {
        // A 206 with the right Content-Range, then a body that never stops (the server sent
        // 2 GiB for a 110 KB range). Written with backpressure, so `endlessSent` is what the client
        // took off the socket, plus the socket buffers.
        if (req.headers.range === 'bytes=0-0') return serveRange(req, res, file);
        const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
        res.writeHead(206, { 'content-range': `bytes ${m?.[1]}-${m?.[2]}/${file.length}` });
        const chunk = new Uint8Array(64 * 1024).fill(7);
        const pump = () => {
          while (endlessSent < 256 * 1024 * 1024 && !res.destroyed) {
            endlessSent += chunk.length;
            if (!res.write(chunk)) return void res.once('drain', pump);
          }
          res.end();
        };
        return pump();
      }
      case '/announces-more': // says it will send 2 GiB for any range
        if (req.headers.range === 'bytes=0-0') return serveRange(req, res, file);
        res.writeHead(206, { 'content-length': 2 ** 31 });
        return res.write(file.subarray(0, 100));
      case '/silent': // accepts the connection and never answers
        return;
      case '/silent-body': // headers, then not one byte
        if (req.headers.range === 'bytes=0-0') return serveRange(req, res, file);
        res.writeHead(206, { 'content-range': `bytes 0-199/${file.length}`, 'content-length': 200 });
        return res.flushHeaders();
      case '/trickle': {
        // one byte every 50 ms, forever
        if (req.headers.range === 'bytes=0-0') return serveRange(req, res, file);
        res.writeHead(206, { 'content-range': `bytes 0-199/${file.length}`, 'content-length': 200 });
        let at = 0;
        const timer = setInterval(() => res.write(file.subarray(at, ++at)), 50);
        res.on('close', () => clearInterval(timer));
        return;
      }
      case '/page': // a web page, as Hugging Face serves a `blob` link
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end('<!doctype html><html><head><title>model</title></head><body>a page</body></html>');
      case '/page-untyped': // a web page under a type that says nothing
        res.writeHead(200, { 'content-type': 'application/octet-stream' });
        return res.end(`\n  <!DOCTYPE html>\n<html>${'x'.repeat(100_000)}</html>`);
      case '/page-ranged': // a static server that honours Range on an HTML file
        res.setHeader('content-type', 'text/html');
        return serveRange(req, res, new TextEncoder().encode('<html><body>not a model</body></html>'));
      default:
        res.writeHead(500);
        return res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections(); // the silent server's requests are still open
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('HttpRangeSource', () => {
  it('learns the size from one bytes=0-0 request and reads the GGUF through ranges', async () => {
    requests.length = 0;
    const src = await HttpRangeSource.open(`${base}/model.gguf`);
    expect(src.size).toBe(file.length);
    expect(src.name).toBe(`${base}/model.gguf`);
    expect(requests).toEqual([{ path: '/model.gguf', method: 'GET', range: 'bytes=0-0' }]);
    const f = await readGguf(src, { initialWindow: 512 });
    const ref = await readGguf(new MemorySource(file));
    expect(f).toEqual(ref);
    expect(llamaConfigFromGguf(f).dim).toBe(64);
    for (const t of f.tensors.slice(0, 5)) {
      expect(await readTensorBytes(src, t)).toEqual(file.subarray(t.offset, t.offset + t.byteLength));
    }
    // Every read was a ranged GET; nothing fetched the whole file.
    expect(requests.every((r) => r.method === 'GET' && /^bytes=\d+-\d+$/.test(r.range ?? ''))).toBe(true);
    expect(requests.slice(1, 3).map((r) => r.range)).toEqual(['bytes=0-511', 'bytes=512-1535']);
  });

  it('follows redirects, keeps query secrets out of its name, and rejects reads past the end', async () => {
    const src = await HttpRangeSource.open(`${base}/redirect?token=abc`);
    expect(src.name).toBe(`${base}/redirect`);
    expect(src.size).toBe(file.length);
    expect(await src.read(4, 4)).toEqual(file.subarray(4, 8));
    expect(await src.read(file.length, 0)).toEqual(new Uint8Array(0));
    await expect(src.read(file.length - 2, 3)).rejects.toThrow(RangeError);
  });

  it('passes the caller’s headers along with its Range', async () => {
    const seen: (string | null)[] = [];
    const spy: typeof fetch = async (input, init) => {
      seen.push(new Headers(init?.headers).get('authorization'), new Headers(init?.headers).get('range'));
      return fetch(input, init);
    };
    const src = await HttpRangeSource.open(
      `${base}/model.gguf`,
      { headers: { authorization: 'Bearer t' } },
      { fetch: spy },
    );
    await src.read(10, 5);
    expect(seen).toEqual(['Bearer t', 'bytes=0-0', 'Bearer t', 'bytes=10-14']);
  });

  it('reports a server that ignores Range, without reading the whole body', async () => {
    const e = await engineError(() => HttpRangeSource.open(`${base}/no-range`));
    expect(e.code).toBe('network');
    expect(e.message).toBe(
      `${base}/no-range ignores HTTP Range requests (it answered "Range: bytes=0-0" with 200 and the whole file, ` +
        `Content-Length ${file.length}); reading parts of it is impossible: use a server with Range support or download the whole file`,
    );
  });

  it('falls back to HEAD Content-Length when Content-Range is hidden', async () => {
    requests.length = 0;
    const src = await HttpRangeSource.open(`${base}/hidden-cr`);
    expect(src.size).toBe(file.length);
    expect(requests.map((r) => r.method)).toEqual(['GET', 'HEAD']);
    expect(await src.read(100, 50)).toEqual(file.subarray(100, 150));
  });

  it('names the URL and the status on HTTP errors', async () => {
    const before = requests.filter((r) => r.path === '/missing').length;
    const e404 = await engineError(() => HttpRangeSource.open(`${base}/missing?x=1`));
    expect(e404.code).toBe('network');
    expect(e404.message).toBe(`${base}/missing: HTTP 404 Not Found: the file does not exist; check the URL`);
    // A 404 is an answer, not a hiccup: asked once.
    expect(requests.filter((r) => r.path === '/missing').length - before).toBe(1);
    const e403 = await engineError(() => HttpRangeSource.open(`${base}/forbidden`));
    expect(e403.message).toMatch(/\/forbidden: HTTP 403 Forbidden: access denied/);
  });

  it('an empty file has size 0 (416 for bytes=0-0), and the reader then says so', async () => {
    const src = await HttpRangeSource.open(`${base}/empty`);
    expect(src.size).toBe(0);
    const e = await engineError(() => readGguf(src));
    expect(e.code).toBe('bad-gguf');
  });

  it('detects a file that changed on the server between requests', async () => {
    const src = await HttpRangeSource.open(`${base}/changing`);
    const e = await engineError(() => src.read(0, 16));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(/got Content-Range bytes 0-15\/\d+: the file changed on the server/);
  });

  it('detects a short body', async () => {
    const src = await HttpRangeSource.open(`${base}/short`);
    const e = await engineError(() => src.read(100, 64));
    expect(e.message).toMatch(/short read: 10 of 64 bytes for Range bytes=100-163/);
  });

  it('asks again after a reset connection, for the size and for each read', async () => {
    const fast = { retryDelaysMs: [1, 1] };
    const src = await HttpRangeSource.open(`${base}/flaky`, {}, fast);
    expect(src.size).toBe(file.length);
    expect(await src.read(100, 64)).toEqual(file.subarray(100, 164));
    const flaky = requests.filter((r) => r.path === '/flaky').map((r) => r.range);
    expect(flaky).toEqual(['bytes=0-0', 'bytes=0-0', 'bytes=100-163', 'bytes=100-163']);
  });

  it('retries 503 within its budget, then reports the status', async () => {
    const src = await HttpRangeSource.open(`${base}/busy`, {}, { retryDelaysMs: [1, 1] });
    expect(src.size).toBe(file.length);
    const before = requests.filter((r) => r.path === '/down').length;
    const e = await engineError(() => HttpRangeSource.open(`${base}/down`, {}, { retryDelaysMs: [1, 1] }));
    expect(e.message).toMatch(/\/down: HTTP 503 Service Unavailable: server error; try again later/);
    expect(requests.filter((r) => r.path === '/down').length - before).toBe(3);
  });

  it('turns a refused connection into a network error naming the URL', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const e = await engineError(() => HttpRangeSource.open(`http://127.0.0.1:${port}/m.gguf`));
    expect(e.code).toBe('network');
    expect(e.message).toMatch(
      new RegExp(`^http://127.0.0.1:${port}/m.gguf: request failed: .*check the connection`),
    );
  });

  it('a cancelled request is interrupted, not a network failure', async () => {
    const ac = new AbortController();
    ac.abort();
    const e = await engineError(() => HttpRangeSource.open(`${base}/model.gguf`, { signal: ac.signal }));
    expect(e).toBeInstanceOf(EngineError);
    expect(e.code).toBe('interrupted');
  });
});

describe('HttpRangeSource against hostile servers', () => {
  /** Short limits so each case ends in about a second; the retry schedule still applies. */
  const fast = { retryDelaysMs: [1, 1], responseTimeoutMs: 300, idleTimeoutMs: 300 };

  it('stops reading at the range asked for, however much the server sends', async () => {
    const src = await HttpRangeSource.open(`${base}/endless`, {}, fast);
    const t0 = performance.now();
    const e = await engineError(() => src.read(100, 40_000));
    expect(e.code).toBe('network');
    expect(e.message).toBe(
      `${base}/endless: asked for 40000 bytes (Range bytes=100-40099) but it sent more: the server does not ` +
        'honour Range requests correctly; reading stopped. Use another server or download the whole file',
    );
    expect(performance.now() - t0).toBeLessThan(5000);
    // Not retried, and the connection was cut: the server got rid of little more than the range
    // plus socket buffers, not its 256 MiB.
    await new Promise((r) => setTimeout(r, 100));
    expect(endlessSent).toBeLessThan(16 * 1024 * 1024);

    const announced = await HttpRangeSource.open(`${base}/announces-more`, {}, fast);
    const e2 = await engineError(() => announced.read(0, 64));
    expect(e2.message).toMatch(/asked for 64 bytes \(Range bytes=0-63\) but it announced 2147483648 bytes/);
  });

  it('gives up on a server that never answers, naming the URL and the wait', async () => {
    const t0 = performance.now();
    const e = await engineError(() => HttpRangeSource.open(`${base}/silent?sig=secret`, {}, fast));
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(e.code).toBe('network');
    expect(e.message).toBe(
      `${base}/silent: no response within 300 ms (Range bytes=0-0); the server is not answering: ` +
        'check the URL, or try again later (gave up after 3 attempts)',
    );
    const silentRequests = requests.filter((r) => r.path === '/silent').length;
    expect(silentRequests).toBe(3);
  });

  it('gives up on a body that goes silent or trickles', async () => {
    for (const path of ['/silent-body', '/trickle']) {
      const src = await HttpRangeSource.open(`${base}${path}`, {}, fast);
      const t0 = performance.now();
      const e = await engineError(() => src.read(0, 200));
      expect(performance.now() - t0).toBeLessThan(5000);
      expect(e.code).toBe('network');
      expect(e.message).toMatch(
        new RegExp(
          `^${base}${path}: the transfer stalled: fewer than 200 bytes arrived in 300 ms \\(\\d+ of 200 bytes of ` +
            'Range bytes=0-199 so far\\); the server or the connection is stuck or far too slow: try again later ' +
            '\\(gave up after 3 attempts\\)$',
        ),
      );
    }
  });

  it('a caller’s cancel still interrupts a stalled body at once', async () => {
    const ac = new AbortController();
    const src = await HttpRangeSource.open(
      `${base}/silent-body`,
      { signal: ac.signal },
      { idleTimeoutMs: 60_000 },
    );
    setTimeout(() => ac.abort(), 50);
    const t0 = performance.now();
    const e = await engineError(() => src.read(0, 200));
    expect(e.code).toBe('interrupted');
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('says a web page is a web page, and points a Hugging Face blob link to /resolve/', async () => {
    const generic = 'not a GGUF file; give the URL of the .gguf file itself (its download link)';
    for (const path of ['/page', '/page-untyped', '/page-ranged']) {
      const e = await engineError(() => HttpRangeSource.open(`${base}${path}`, {}, fast));
      expect(e.code).toBe('network');
      expect(e.message.startsWith(`${base}${path} is a web page (`), e.message).toBe(true);
      expect(e.message.endsWith(`), ${generic}`), e.message).toBe(true);
    }
    // The Hub's `blob` URL is a page about the file; its `resolve` URL is the file. Requests for
    // huggingface.co are answered by the local /page server.
    const hub: typeof fetch = (input, init) =>
      fetch(String(input).replace('https://huggingface.co/', `${base}/page?`), init);
    const blob =
      'https://huggingface.co/QuantFactory/Meta-Llama-3-8B-GGUF/blob/main/Meta-Llama-3-8B.Q4_0.gguf';
    const e = await engineError(() => HttpRangeSource.open(blob, {}, { ...fast, fetch: hub }));
    expect(e.message).toBe(
      `${blob} is a web page ("text/html; charset=utf-8"), not a GGUF file; for a file on Hugging Face use its ` +
        '/resolve/ link: https://huggingface.co/QuantFactory/Meta-Llama-3-8B-GGUF/resolve/main/Meta-Llama-3-8B.Q4_0.gguf',
    );
  });
});
