// Production build + `vite preview` for the offline and demo specs. These specs need a server they can
// stop in the middle of a test (to prove the second visit is served by the service worker), so they
// start their own instead of sharing Playwright's webServer: one build into a folder of their own
// (never the repo's dist/, which someone else may be building), one preview process per spec file.
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..');
const VITE = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');

function run(args: string[], label: string, root: string): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [VITE, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout.on('data', (d) => {
      log += d;
    });
    child.stderr.on('data', (d) => {
      log += d;
    });
    child.on('error', fail);
    child.on('exit', (code) =>
      code === 0 ? ok() : fail(new Error(`${label} failed (exit ${code}):\n${log}`)),
    );
  });
}

/** `vite build` into outDir (relative to the repo root), with the service worker written last. */
export async function buildApp(outDir: string, root = ROOT): Promise<void> {
  await run(['build', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'], 'vite build', root);
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

export interface PreviewServer {
  /** Origin + base, e.g. http://127.0.0.1:41234/ */
  url: string;
  origin: string;
  port: number;
  /** Stops the server and waits until the port is closed. */
  stop(): Promise<void>;
}

/** Serves outDir with `vite preview` on a free port (or the given one, to restart on the same origin). */
export function startPreview(outDir: string, port?: number, root = ROOT): Promise<PreviewServer> {
  return startVite(['preview', '--outDir', outDir], port, root);
}

/** The dev server (`vite`, as `npm run dev` starts it) on a free port. */
export function startDevServer(root = ROOT): Promise<PreviewServer> {
  return startVite([], undefined, root);
}

async function startVite(args: string[], port: number | undefined, root: string): Promise<PreviewServer> {
  const p = port ?? (await freePort());
  const child: ChildProcess = spawn(
    process.execPath,
    [VITE, ...args, '--host', '127.0.0.1', '--port', String(p), '--strictPort'],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  child.stdout?.on('data', (d) => {
    log += d;
  });
  child.stderr?.on('data', (d) => {
    log += d;
  });
  const origin = `http://127.0.0.1:${p}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null)
      throw new Error(`vite ${args[0] ?? 'dev'} exited (${child.exitCode}):\n${log}`);
    try {
      const res = await fetch(`${origin}/`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill();
      throw new Error(`vite ${args[0] ?? 'dev'} did not answer on ${origin} within 60 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url: `${origin}/`,
    origin,
    port: p,
    stop: () =>
      new Promise<void>((ok) => {
        if (child.exitCode !== null) return ok();
        child.once('exit', () => ok());
        child.kill('SIGTERM');
      }),
  };
}
