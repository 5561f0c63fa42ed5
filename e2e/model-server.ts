/**
 * A real HTTP server for model files, with Range support, CORS and fault injection. Used by the
 * storage unit tests (Node fetch) and the Playwright e2e tests (the browser's fetch from a worker).
 * Faults are plain fields, changed between or during tests.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Faults {
  /** Destroy the socket after this many body bytes, for the next `cutTimes` GET responses. */
  cutAfterBytes?: number;
  cutTimes?: number;
  /** Answer 200 with the whole file even when a Range is asked. */
  ignoreRange?: boolean;
  /** Serve an HTML page with status 200 instead of the file. */
  html?: boolean;
  /** Serve only the first N bytes of the file, as if it were the whole file (a truncated upload). */
  truncateTo?: number;
  /** Announce the full Content-Length but end the body at this absolute file offset, every time. */
  shortBodyAt?: number;
  /** Answer this status to the next `statusTimes` GETs. */
  status?: number;
  statusTimes?: number;
  /** Pause this long between body pieces (to observe progress and to stop mid-download). */
  delayMsPerPiece?: number;
  /** Put the file's sha-256 in the ETag (as Hugging Face's CDN does); otherwise a short opaque ETag. */
  sha256Etag?: boolean;
  /** Lie about the published sha-256 (to test the whole-file check). */
  wrongSha256?: boolean;
  /**
   * Hugging Face style: `/<name>` answers 302 to a signed `/cdn/<name>?sig=N` that serves one GET
   * and then has expired (403), so a download that went back to a signed URL would fail.
   */
  signedRedirect?: boolean;
  /** Reset the connection of the next N HEAD requests (a proxy hiccup, a closing keep-alive socket). */
  resetHeads?: number;
  /** Never answer the next N HEAD / GET requests (the connection stays open, silent). */
  hangHeads?: number;
  hangGets?: number;
  /** Send the body one byte at a time, this many ms apart (a trickle that never quite stops). */
  trickleMsPerByte?: number;
  /**
   * Send this many bytes past the end of the requested range, without a Content-Length (so the
   * client's HTTP stack cannot stop at it): only the client itself can stop reading.
   */
  overSend?: number;
}

export interface LoggedRequest {
  method: string;
  path: string;
  range?: string;
  status: number;
  /** Body bytes written to the socket (GET). */
  sent?: number;
}

export interface ModelServer {
  url: string;
  /** URL of a served file. */
  fileUrl(name: string): string;
  faults: Faults;
  log: LoggedRequest[];
  /** Add or replace a file. */
  files: Map<string, Uint8Array>;
  stop(): Promise<void>;
}

const PIECE = 16 * 1024;

export async function startModelServer(
  files: Record<string, Uint8Array>,
  opts: { port?: number; host?: string } = {},
): Promise<ModelServer> {
  const state: ModelServer = {
    url: '',
    fileUrl: (name) => `${state.url}/${name}`,
    faults: {},
    log: [],
    files: new Map(Object.entries(files)),
    stop: async () => {},
  };
  const sockets = new Set<import('node:net').Socket>();
  let nextSig = 0;
  const liveSigs = new Set<string>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const f = state.faults;
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    const range = req.headers.range;
    const log = (status: number) => state.log.push({ method: req.method ?? '', path, range, status });
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Allow-Headers', 'Range');
    res.setHeader(
      'Access-Control-Expose-Headers',
      'Content-Range, Content-Length, ETag, Accept-Ranges, X-Linked-Etag',
    );
    if (req.method === 'HEAD' && (f.resetHeads ?? 0) > 0) {
      f.resetHeads = (f.resetHeads ?? 0) - 1;
      log(0);
      return void req.socket.destroy();
    }
    const hang = req.method === 'HEAD' ? 'hangHeads' : req.method === 'GET' ? 'hangGets' : undefined;
    if (hang && (f[hang] ?? 0) > 0) {
      f[hang] = (f[hang] ?? 0) - 1;
      log(0);
      return; // the socket stays open until the client gives up (or the server stops)
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204).end();
      return log(204);
    }
    if (f.signedRedirect && !path.startsWith('cdn/') && state.files.has(path)) {
      const sig = String(++nextSig);
      liveSigs.add(sig);
      res.writeHead(302, { Location: `/cdn/${encodeURIComponent(path)}?sig=${sig}` }).end();
      return log(302);
    }
    let body = state.files.get(path);
    if (f.signedRedirect && path.startsWith('cdn/')) {
      const sig = new URL(req.url ?? '/', 'http://x').searchParams.get('sig') ?? '';
      if (req.method === 'GET' && !liveSigs.delete(sig)) {
        res.writeHead(403, { 'Content-Type': 'text/plain' }).end('Request has expired');
        return log(403);
      }
      body = state.files.get(path.slice(4));
    }
    if (!body) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found');
      return log(404);
    }
    if (f.html) {
      const page = Buffer.from('<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>');
      res.writeHead(200, { 'Content-Type': 'text/html', 'Content-Length': page.length });
      res.end(req.method === 'HEAD' ? undefined : page);
      return log(200);
    }
    if (f.truncateTo !== undefined) body = body.subarray(0, f.truncateTo);
    if (req.method === 'GET' && f.status !== undefined && (f.statusTimes ?? 1) > 0) {
      f.statusTimes = (f.statusTimes ?? 1) - 1;
      res.writeHead(f.status, { 'Content-Type': 'text/plain' }).end('fault');
      return log(f.status);
    }
    const sha = createHash('sha256').update(body).digest('hex');
    const etag = f.sha256Etag ? `"${f.wrongSha256 ? '0'.repeat(64) : sha}"` : `"${sha.slice(0, 16)}"`;
    let start = 0;
    let end = body.length - 1;
    let status = 200;
    const m = range && !f.ignoreRange ? /^bytes=(\d+)-(\d*)$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      end = m[2] ? Math.min(Number(m[2]), body.length - 1) : body.length - 1;
      if (start >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` }).end();
        return log(416);
      }
      status = 206;
    }
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': end - start + 1,
      'Accept-Ranges': 'bytes',
      ETag: etag,
    };
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${body.length}`;
    if (f.overSend && req.method === 'GET') delete headers['Content-Length'];
    res.writeHead(status, headers);
    log(status);
    if (req.method === 'HEAD') return void res.end();
    const entry = state.log[state.log.length - 1];
    entry.sent = 0;
    const send = async (piece: Uint8Array) => {
      entry.sent = (entry.sent ?? 0) + piece.length;
      if (!res.write(piece)) {
        // A client that stops reading closes the socket: 'drain' never comes then.
        await new Promise<void>((r) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.once('drain', done);
          res.once('close', done);
        });
      }
    };
    if (f.trickleMsPerByte) {
      for (let at = start; at <= end && !res.destroyed; at++) {
        await send(body.subarray(at, at + 1));
        await new Promise((r) => setTimeout(r, f.trickleMsPerByte));
      }
      return void res.end();
    }
    if (f.overSend) {
      await send(body.subarray(start, end + 1));
      const junk = new Uint8Array(PIECE).fill(0x41);
      for (let extra = 0; extra < f.overSend && !res.destroyed; extra += PIECE) {
        await send(junk.subarray(0, Math.min(PIECE, f.overSend - extra)));
      }
      return void res.end();
    }
    const slice = body.subarray(start, end + 1);
    const cut = f.cutAfterBytes !== undefined && (f.cutTimes ?? 1) > 0 ? f.cutAfterBytes : undefined;
    if (cut !== undefined) f.cutTimes = (f.cutTimes ?? 1) - 1;
    const stopAt = Math.max(
      0,
      Math.min(
        slice.length,
        cut ?? Number.POSITIVE_INFINITY,
        (f.shortBodyAt ?? Number.POSITIVE_INFINITY) - start,
      ),
    );
    for (let at = 0; at < stopAt; at += PIECE) {
      await send(slice.subarray(at, Math.min(at + PIECE, stopAt)));
      if (f.delayMsPerPiece) await new Promise((r) => setTimeout(r, f.delayMsPerPiece));
      if (res.destroyed) return;
    }
    if (cut !== undefined && cut < slice.length) {
      // Give the kernel a moment to flush what was written, then kill the connection.
      await new Promise((r) => setTimeout(r, 20));
      res.socket?.destroy();
      return;
    }
    if (stopAt < slice.length) {
      res.socket?.destroy();
      return;
    }
    res.end();
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch(() => res.destroy());
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', resolve));
  const addr = server.address() as AddressInfo;
  state.url = `http://${opts.host ?? '127.0.0.1'}:${addr.port}`;
  state.stop = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}
