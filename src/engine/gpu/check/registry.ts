/**
 * Kernels are named and registered. Each kernel family (one `shaders/<name>.wgsl`) contributes a
 * `KernelSpec`: its WGSL source, and a self-check that runs the kernel on fresh random inputs against
 * the CPU reference. The kernel tests call the same check, and `--custom-ops-path` uses it to accept
 * or reject a user's replacement WGSL before it is ever used.
 */
import { EngineError } from '../../errors';
import { shaderModule } from '../pipelines';

export interface CheckResult {
  ok: boolean;
  /** Largest error relative to the reference (max |gpu − ref| / max(|ref|, floor)). */
  maxRelError: number;
  /** Human description of the first failing case ("rows=17 cols=96: out[3] = 1.2, expected 1.25"). */
  detail: string;
}

/**
 * The shapes of the model being loaded. A quick check given them uses the model's own override
 * constants, so the pipelines it compiles are the ones the model runs (pipelines.ts caches them):
 * the check tests the code this model will use and adds almost no compile time at load.
 */
export interface ModelShape {
  dim: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  normEps: number;
  vocabSize: number;
  /** KV positions per sequence (the runner's maxSeqLen). */
  maxSeqLen: number;
}

export interface KernelSpec {
  /** Registry name, e.g. "rmsnorm", "matvec_q4_0". A custom op file is `<name>.wgsl`. */
  name: string;
  /** Built-in WGSL source. */
  source: string;
  /** Run `source` (built-in or custom) on random inputs of several awkward sizes vs the reference. */
  check(device: GPUDevice, source: string): Promise<CheckResult>;
  /**
   * A few small cases of `check` (well under a second), run once per adapter and app version at
   * load (src/engine/gpu/check/self-check.ts); `check` itself when absent.
   */
  quickCheck?(device: GPUDevice, source: string, shape?: ModelShape): Promise<CheckResult>;
}

export class KernelRegistry {
  private readonly specs = new Map<string, KernelSpec>();
  private readonly overrides = new Map<string, string>();

  register(spec: KernelSpec): void {
    if (this.specs.has(spec.name)) throw new Error(`kernel ${spec.name} registered twice`);
    this.specs.set(spec.name, spec);
  }

  names(): string[] {
    return [...this.specs.keys()].sort();
  }

  spec(name: string): KernelSpec {
    const s = this.specs.get(name);
    if (!s) throw new Error(`unknown kernel ${name}`);
    return s;
  }

  /** The WGSL in use for `name`: a user's accepted override, else the built-in. */
  source(name: string): string {
    return this.overrides.get(name) ?? this.spec(name).source;
  }

  /**
   * Replace a built-in kernel with user WGSL after compiling it and checking it against the
   * reference. Throws EngineError('kernel-rejected') with the compiler messages or the mismatch.
   */
  async override(device: GPUDevice, name: string, source: string): Promise<CheckResult> {
    const spec = this.specs.get(name);
    if (!spec) {
      throw new EngineError(
        'kernel-rejected',
        `custom kernel "${name}.wgsl" does not replace any built-in kernel; known names: ${this.names().join(', ')}`,
      );
    }
    const module = shaderModule(device, source, `custom:${name}`);
    const info = await module.getCompilationInfo();
    const errors = info.messages.filter((m) => m.type === 'error');
    if (errors.length > 0) {
      const text = errors.map((m) => `${name}.wgsl:${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
      throw new EngineError('kernel-rejected', `custom kernel ${name} does not compile:\n${text}`);
    }
    device.pushErrorScope('validation');
    // Pop the scope whether or not the check threw; a validation error outranks a check failure.
    const outcome = await spec.check(device, source).then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    const validationError = await device.popErrorScope();
    if (validationError) {
      throw new EngineError(
        'kernel-rejected',
        `custom kernel ${name} is invalid: ${validationError.message}`,
      );
    }
    if ('error' in outcome) throw outcome.error;
    const result = outcome.result;
    if (!result.ok) {
      throw new EngineError(
        'kernel-rejected',
        `custom kernel ${name} disagrees with the reference (max relative error ${result.maxRelError.toExponential(2)}): ${result.detail}`,
      );
    }
    this.overrides.set(name, source);
    return result;
  }

  /** Shader module for `name` on `device`: the source in use, compiled once (pipelines.ts). */
  module(device: GPUDevice, name: string): GPUShaderModule {
    return shaderModule(device, this.source(name), name);
  }
}
