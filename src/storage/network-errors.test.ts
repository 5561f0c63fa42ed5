/**
 * A download that cannot start says why, one way per cause: offline, host not found, connection
 * refused, blocked by CORS (only when it is CORS), an HTTP status. Real servers on localhost: one
 * with CORS (the model server), one without, a port nobody listens on.
 *
 * Node's fetch has no CORS, so the browser's part is played by `browserFetch` below: it makes the
 * real request and then does what a browser does with a cross-origin answer that lacks
 * Access-Control-Allow-Origin, or with any failure: "TypeError: Failed to fetch", nothing more.
 * The e2e (chat.spec) checks the same messages in Chromium itself.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ModelServer, startModelServer } from '../../e2e/model-server';
import { downloadToStore } from './downloader';
import { MemoryKeyValueStore } from './kv';
import { ModelStore } from './model-store';

const PAGE = 'http://127.0.0.1:1'; // the page's origin: every server below is cross-origin to it

const browserFetch: typeof fetch = async (input, init) => {
  let res: Response;
  try {
    res = await fetch(input, init);
  } catch {
    throw new TypeError('Failed to fetch');
  }
  if (init?.mode === 'no-cors') return res; // opaque to the page, but it did arrive
  if (!res.headers.get('access-control-allow-origin')) {
    await res.body?.cancel();
    throw new TypeError('Failed to fetch');
  }
  return res;
};

describe('why a download cannot start', () => {
  const gguf = new Uint8Array(4096).fill(7);
  gguf.set([0x47, 0x47, 0x55, 0x46]);
  let withCors: ModelServer;
  let noCors: Server;
  let noCorsUrl: string;
  /** A port that was just free: nothing listens there. */
  let closedUrl: string;
  const store = () => new ModelStore(new MemoryKeyValueStore());
  const fast = { chunkSize: 1024, allowSmallChunks: true, retryDelayMs: () => 5 };
  const fail = (url: string, opts: Record<string, unknown> = {}) =>
    downloadToStore(url, store(), { ...fast, ...opts }).then(
      () => expect.fail(`${url} downloaded`),
      (e) => e,
    );

  beforeAll(async () => {
    withCors = await startModelServer({ 'm.gguf': gguf });
    noCors = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Length': gguf.length }).end(gguf);
    });
    await new Promise<void>((r) => noCors.listen(0, '127.0.0.1', r));
    noCorsUrl = `http://127.0.0.1:${(noCors.address() as AddressInfo).port}/m.gguf`;
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    closedUrl = `http://127.0.0.1:${(probe.address() as AddressInfo).port}/m.gguf`;
    await new Promise((r) => probe.close(r));
  });
  afterAll(async () => {
    await withCors?.stop();
    await new Promise((r) => noCors?.close(r));
  });

  it('blocked by CORS: only for a server that answers, but not to this page', async () => {
    const place = { origin: PAGE, onLine: true };
    const e = await fail(noCorsUrl, { fetch: browserFetch, place });
    expect(e.code).toBe('network');
    expect(e.message).toMatch(/\(blocked by CORS: http:\/\/127\.0\.0\.1:\d+ answers, but does not allow/);
    expect(e.message).not.toMatch(/check the address/);
    // The same page and fetch download from a server that allows it: the check does not misfire.
    const m = await downloadToStore(withCors.fileUrl('m.gguf'), store(), {
      ...fast,
      fetch: browserFetch,
      place,
    });
    expect(m.size).toBe(gguf.length);
    // A closed port is not CORS, though the browser says the same "Failed to fetch".
    const closed = await fail(closedUrl, { fetch: browserFetch, place });
    expect(closed.message).toMatch(
      /cannot reach 127\.0\.0\.1:\d+: the host was not found, refused the connection/,
    );
    expect(closed.message).not.toMatch(/CORS/);
  });

  it('connection refused and host not found, where the platform tells them apart (Node)', async () => {
    const refused = await fail(closedUrl, { place: {} });
    expect(refused.message).toMatch(
      /\(connection refused: nothing answers at 127\.0\.0\.1:\d+\); check the address/,
    );
    // .invalid never resolves (RFC 6761).
    const unknown = await fail('http://no-such-host.invalid/m.gguf', { place: {} });
    expect(unknown.code).toBe('network');
    expect(unknown.message).toMatch(
      /\(host not found: no address for no-such-host\.invalid; check the spelling/,
    );
  });

  it('offline: said before any other cause', async () => {
    const e = await fail(closedUrl, { fetch: browserFetch, place: { origin: PAGE, onLine: false } });
    expect(e.message).toMatch(/\(you are offline: this device has no network connection/);
    expect(e.message).not.toMatch(/CORS|refused/);
  });

  it('HTTP errors name their status', async () => {
    const missing = await fail(withCors.fileUrl('missing.gguf'));
    expect(missing.message).toMatch(/missing\.gguf: no file at this URL \(404\); check the address/);
    withCors.faults = { status: 500, statusTimes: 10 };
    const broken = await fail(withCors.fileUrl('m.gguf'), { maxRetries: 1 });
    expect(broken.message).toMatch(/failed 2 times in a row \(the server answered 500\)/);
    withCors.faults = {};
  });
});
