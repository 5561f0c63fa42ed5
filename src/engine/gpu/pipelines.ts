/**
 * The one place shader modules and compute pipelines are made and cached. A module is compiled
 * once per (device, WGSL source): the registry's kernels, a checked custom source and the subgroup
 * variant of a linear kernel all come through `shaderModule`, so the same text is never compiled
 * twice on one device. A pipeline is cached per (module, layout, entry point, override constants):
 * the 32 layers of a model share theirs, and the load-time self-check, run at the model's shapes,
 * compiles the model's own pipelines. On SwiftShader each pipeline costs 0.3–50 s, which is why
 * both caches exist.
 */

const modules = new WeakMap<GPUDevice, Map<string, GPUShaderModule>>();

/** The shader module of `source` on `device`, compiled on first use (`label`: the first caller's). */
export function shaderModule(device: GPUDevice, source: string, label: string): GPUShaderModule {
  let perDevice = modules.get(device);
  if (!perDevice) {
    perDevice = new Map();
    modules.set(device, perDevice);
  }
  let m = perDevice.get(source);
  if (!m) {
    m = device.createShaderModule({ code: source, label });
    perDevice.set(source, m);
  }
  return m;
}

type Layout = GPUPipelineLayout | 'auto';
const pipelines = new WeakMap<GPUShaderModule, Map<Layout, Map<string, GPUComputePipeline>>>();

/**
 * A compute pipeline of `module`, cached. `layout` 'auto' derives the bind group layout from the
 * shader (bind groups then come from `pipeline.getBindGroupLayout(0)`); an explicit layout lets
 * one bind group serve several kernels (the weight kernels: linear.ts `weightKernelLayout`).
 */
export function cachedPipeline(
  device: GPUDevice,
  module: GPUShaderModule,
  entryPoint: string,
  constants: Record<string, number>,
  label: string,
  layout: Layout = 'auto',
): GPUComputePipeline {
  let perModule = pipelines.get(module);
  if (!perModule) {
    perModule = new Map();
    pipelines.set(module, perModule);
  }
  let perLayout = perModule.get(layout);
  if (!perLayout) {
    perLayout = new Map();
    perModule.set(layout, perLayout);
  }
  const key = `${entryPoint}:${JSON.stringify(constants)}`;
  let p = perLayout.get(key);
  if (!p) {
    p = device.createComputePipeline({ label, layout, compute: { module, entryPoint, constants } });
    perLayout.set(key, p);
  }
  return p;
}
