/**
 * Custom kernels (`--custom-ops-path`): user WGSL that replaces a built-in kernel of the same name.
 * Each file goes through `KernelRegistry.override`: it must compile and pass the built-in's own
 * self-check against the CPU reference on fresh random inputs, or it is rejected with the compiler
 * message or the mismatch (EngineError 'kernel-rejected'). Kernel names and binding contracts:
 * docs/kernels.md. Hosts read the files (Node: src/node/custom-ops.ts `readCustomOps(dir)`).
 */
import { type CheckResult, KernelRegistry } from './check/registry';
import type { GpuContext } from './device';
import { registerAllKernels } from './kernels';

/**
 * Check and install user kernels: `files` maps a kernel name (the file name without `.wgsl`) to its
 * WGSL. Throws on the first rejected kernel; returns each accepted kernel's check result.
 */
export async function loadCustomOps(
  ctx: Pick<GpuContext, 'device'>,
  registry: KernelRegistry,
  files: ReadonlyMap<string, string>,
): Promise<Map<string, CheckResult>> {
  registerAllKernels(registry);
  const accepted = new Map<string, CheckResult>();
  for (const [name, source] of files) accepted.set(name, await registry.override(ctx.device, name, source));
  return accepted;
}

/** A registry with all built-ins and the given custom kernels installed. */
export async function registryWithCustomOps(
  ctx: Pick<GpuContext, 'device'>,
  files: ReadonlyMap<string, string>,
): Promise<KernelRegistry> {
  const registry = registerAllKernels(new KernelRegistry());
  await loadCustomOps(ctx, registry, files);
  return registry;
}
