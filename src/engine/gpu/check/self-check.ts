/**
 * Load-time self-checks on the user's own adapter: a driver, compiler or subgroup-size difference
 * that breaks a kernel becomes a clear EngineError('kernel-rejected') naming the kernel and the
 * adapter, instead of wrong text. `selfCheckModel` runs the quick cases (`KernelSpec.quickCheck`,
 * else `check`) of the kernels one model uses, once per adapter, check version and kernel source;
 * passes are remembered in a small injectable store (this process's memory by default; the worker
 * persists it in IndexedDB, the Node hosts in a JSON file under the cache dir).
 * Engine code: no Node built-ins, no DOM.
 */
import { EngineError } from '../../errors';
import type { GgufFile } from '../../gguf/types';
import type { GpuContext } from '../device';
import { modelKernelNames } from '../kernels';
import type { WeightEncoding } from '../weights';
import type { KernelRegistry, ModelShape } from './registry';

/**
 * Part of every key: bump it when the check cases or the CPU reference change, so adapters that
 * passed the old checks run the new ones. (The kernel sources are hashed into the key already.)
 */
export const SELF_CHECK_VERSION = 'checks-1';

/** Where passes are remembered: key → true. Failures are never stored (a fix must re-check). */
export interface SelfCheckStore {
  has(key: string): boolean | Promise<boolean>;
  add(key: string): void | Promise<void>;
}

/** A store in memory, optionally backed by a persistence hook (loaded once, saved on each pass). */
export class SelfCheckCache implements SelfCheckStore {
  private readonly passed = new Set<string>();
  private loaded: Promise<void> | null = null;

  constructor(
    private readonly persist?: {
      load(): Promise<readonly string[]>;
      save(keys: readonly string[]): Promise<void>;
    },
  ) {}

  async has(key: string): Promise<boolean> {
    this.loaded ??= (async () => {
      for (const k of (await this.persist?.load().catch(() => [])) ?? []) this.passed.add(k);
    })();
    await this.loaded;
    return this.passed.has(key);
  }

  async add(key: string): Promise<void> {
    this.passed.add(key);
    // Persistence is an optimisation: a failed save only means checking again next time.
    await this.persist?.save([...this.passed]).catch(() => {});
  }
}

/** Passes remembered by this process (the default store of `selfCheckModel`). */
export const processSelfCheckCache = new SelfCheckCache();

/** FNV-1a of a string, hex: a changed kernel source gets a new key. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

export function adapterName(info: GpuContext['adapterInfo']): string {
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((p) => p);
  return parts.length > 0 ? parts.join(' / ') : 'an unnamed adapter';
}

/** The cache key of one kernel on one adapter for one app version. */
export function selfCheckKey(
  info: GpuContext['adapterInfo'],
  appVersion: string,
  kernel: string,
  source: string,
): string {
  return ['v1', appVersion, adapterName(info), kernel, hash(source)].join('|');
}

export interface SelfCheckReport {
  /** Kernels checked now. */
  ran: string[];
  /** Kernels whose pass was remembered. */
  cached: string[];
}

/**
 * Run the quick self-check of each kernel in `names` (registry names; the source in use, custom
 * overrides included) unless it already passed on this adapter and app version. Throws
 * EngineError('kernel-rejected') for the first kernel that disagrees with the reference or fails
 * validation on this adapter.
 */
export async function selfCheckKernels(
  ctx: Pick<GpuContext, 'device' | 'adapterInfo'>,
  registry: KernelRegistry,
  names: readonly string[],
  opts: { appVersion: string; store: SelfCheckStore; shape?: ModelShape },
): Promise<SelfCheckReport> {
  const report: SelfCheckReport = { ran: [], cached: [] };
  for (const name of names) {
    const spec = registry.spec(name);
    const source = registry.source(name);
    const key = selfCheckKey(ctx.adapterInfo, opts.appVersion, name, source);
    if (await opts.store.has(key)) {
      report.cached.push(name);
      continue;
    }
    const { device } = ctx;
    device.pushErrorScope('validation');
    const quick = spec.quickCheck ? spec.quickCheck(device, source, opts.shape) : spec.check(device, source);
    const outcome = await quick.then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    const invalid = await device.popErrorScope();
    const where = `on this GPU (${adapterName(ctx.adapterInfo)})`;
    const what =
      'update the GPU driver or browser, or run on the CPU (--device cpu); please report it with the adapter name';
    if (invalid) {
      throw new EngineError(
        'kernel-rejected',
        `kernel ${name} is invalid ${where}: ${invalid.message}; ${what}`,
      );
    }
    if ('error' in outcome) {
      const message = outcome.error instanceof Error ? outcome.error.message : String(outcome.error);
      throw new EngineError(
        'kernel-rejected',
        `kernel ${name} failed its self-check ${where}: ${message}; ${what}`,
        {
          cause: outcome.error,
        },
      );
    }
    if (!outcome.result.ok) {
      throw new EngineError(
        'kernel-rejected',
        `kernel ${name} gives wrong results ${where}: ${outcome.result.detail}; ${what}`,
      );
    }
    report.ran.push(name);
    await opts.store.add(key);
  }
  return report;
}

/**
 * The load-time check of one model: the quick checks of the kernels it uses (its weight types
 * after `encoding`, RMSNorm, RoPE, attention (and attention_f16 with `f16`), sampling, gather). Custom kernels are left out: they
 * passed their full check on this device when they were installed (KernelRegistry.override).
 */
export function selfCheckModel(
  ctx: Pick<GpuContext, 'device' | 'adapterInfo'>,
  registry: KernelRegistry,
  file: GgufFile,
  opts: { encoding?: WeightEncoding; store?: SelfCheckStore; shape?: ModelShape; f16?: boolean } = {},
): Promise<SelfCheckReport> {
  const names = modelKernelNames(file, opts.encoding, opts.f16).filter(
    (n) => registry.source(n) === registry.spec(n).source,
  );
  return selfCheckKernels(ctx, registry, names, {
    appVersion: SELF_CHECK_VERSION,
    store: opts.store ?? processSelfCheckCache,
    shape: opts.shape,
  });
}
