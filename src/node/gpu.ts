/**
 * WebGPU in Node: Dawn through the npm `webgpu` package. On machines without a GPU driver, Dawn
 * finds SwiftShader when VK_ICD_FILENAMES points at its ICD (see vitest.config.ts).
 */
import { lstatSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { EngineError } from '../engine/errors';

/**
 * Dawn's toggle that rounds timestamp-query values (to ~65 µs on some adapters, a guard against
 * timing attacks in browsers): `--profile` turns it off, nothing else does.
 */
export const TIMESTAMP_QUANTIZATION_TOGGLE = 'timestamp_quantization';

/** The `create()` flags for an instance; `preciseTimestamps` disables timestamp quantization. */
export function dawnFlags(opts: { preciseTimestamps?: boolean } = {}): string[] {
  return opts.preciseTimestamps ? [`disable-dawn-features=${TIMESTAMP_QUANTIZATION_TOGGLE}`] : [];
}

/**
 * Dawn's `GPU` object, with WebGPU's globals (GPUBufferUsage, …) installed on globalThis.
 * `preciseTimestamps` (for profiling) gives an instance whose timestamps are not quantized.
 */
export async function nodeGpu(opts: { preciseTimestamps?: boolean } = {}): Promise<GPU> {
  ensureRuntimeDir();
  let mod: { create: (opts: string[]) => GPU; globals: object };
  try {
    mod = (await import('webgpu')) as typeof mod;
  } catch (e) {
    throw new EngineError(
      'no-webgpu',
      `the npm package "webgpu" (Dawn) could not be loaded (${(e as Error).message}); run npm ci, or use --device cpu`,
      { cause: e },
    );
  }
  Object.assign(globalThis, mod.globals);
  // Dawn aborts the process if this object is garbage-collected while a device is alive: keep it.
  const key = opts.preciseTimestamps ? 'precise' : 'default';
  let instance = dawnInstances.get(key);
  if (!instance) {
    instance = mod.create(dawnFlags(opts));
    dawnInstances.set(key, instance);
  }
  return instance;
}

const dawnInstances = new Map<'default' | 'precise', GPU>();

/**
 * Dawn's Vulkan path loads libwayland-client, which prints "error: XDG_RUNTIME_DIR is invalid or
 * not set in the environment." on stderr whenever that variable is not an absolute path (servers,
 * containers, CI: no login session). Nothing here needs a Wayland display, so when the variable is
 * unset or does not name a directory, it is pointed at a private one (0700, as the XDG spec asks).
 * Node's process.env writes through to the C environment that Dawn reads, so this must run
 * before the first Dawn call.
 */
function ensureRuntimeDir(): void {
  if (process.platform !== 'linux' && process.platform !== 'freebsd') return;
  const current = process.env.XDG_RUNTIME_DIR;
  if (current && isAbsolute(current) && isDirectory(current)) return;
  process.env.XDG_RUNTIME_DIR = privateRuntimeDir();
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * One directory per user, reused by every run (nothing is ever written to it, and a process that
 * is killed leaves nothing new behind): used only while it is still a real directory of ours that
 * no one else can enter; otherwise a fresh one, removed at exit.
 */
function privateRuntimeDir(): string {
  const uid = process.getuid?.() ?? 0;
  const shared = join(tmpdir(), `llama3-webgpu-runtime-${uid}`);
  try {
    mkdirSync(shared, { mode: 0o700 });
  } catch {
    // Already there (or not creatable): checked below.
  }
  try {
    const st = lstatSync(shared);
    if (st.isDirectory() && st.uid === uid && (st.mode & 0o077) === 0) return shared;
  } catch {
    // Not usable: a fresh one below.
  }
  const fresh = mkdtempSync(join(tmpdir(), 'llama3-webgpu-runtime-'));
  process.once('exit', () => rmSync(fresh, { recursive: true, force: true }));
  return fresh;
}
