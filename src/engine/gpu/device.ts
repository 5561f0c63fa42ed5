/**
 * Getting a WebGPU device with the adapter's real limits. Both hosts pass their `GPU` object:
 * the browser `navigator.gpu`, Node `create([])` from the `webgpu` package (Dawn).
 */
import { EngineError } from '../errors';

export interface GpuContext {
  device: GPUDevice;
  adapterInfo: { vendor: string; architecture: string; device: string; description: string };
  /** Optional features we asked for and got. */
  features: { subgroups: boolean; shaderF16: boolean; timestampQuery: boolean };
  limits: GPUSupportedLimits;
  /** Resolves when the device is lost (the host can create a new one and reload weights). */
  lost: Promise<GPUDeviceLostInfo>;
}

/** Limits we ask for up to the adapter's maximum: big weights need big bindings. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupsPerDimension',
] as const;

/** Smallest limits this engine needs at all (the spec defaults, except storage buffers). */
const REQUIRED_MINIMUM: Partial<Record<(typeof WANTED_LIMITS)[number], number>> = {
  maxStorageBufferBindingSize: 128 << 20,
  maxComputeWorkgroupStorageSize: 16384,
  maxComputeInvocationsPerWorkgroup: 256,
  maxStorageBuffersPerShaderStage: 8,
};

export async function createGpuContext(
  gpu: GPU | undefined,
  opts: { powerPreference?: GPUPowerPreference } = {},
): Promise<GpuContext> {
  if (!gpu) {
    throw new EngineError(
      'no-webgpu',
      'WebGPU is not available. Use a recent Chrome or Edge (113+) on a desktop, over https or localhost; in Firefox/Safari enable WebGPU in the settings.',
    );
  }
  const adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference ?? 'high-performance' });
  if (!adapter) {
    throw new EngineError(
      'no-webgpu',
      'No WebGPU adapter was found: the GPU may be blocklisted or drivers missing. Check chrome://gpu, update the GPU driver, or try another browser.',
    );
  }
  for (const [name, min] of Object.entries(REQUIRED_MINIMUM)) {
    const have = adapter.limits[name as keyof GPUSupportedLimits] as number;
    if (have < (min as number)) {
      throw new EngineError('gpu-limits', `This GPU's ${name} is ${have}; at least ${min} is needed.`);
    }
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name] as number;
  const want: GPUFeatureName[] = [];
  const has = (f: string) => adapter.features.has(f);
  if (has('subgroups')) want.push('subgroups' as GPUFeatureName);
  if (has('shader-f16')) want.push('shader-f16');
  if (has('timestamp-query')) want.push('timestamp-query');
  const device = await adapter.requestDevice({
    requiredFeatures: want,
    requiredLimits,
    label: 'llama3-webgpu',
  });
  const info = adapter.info ?? ({} as GPUAdapterInfo);
  return {
    device,
    adapterInfo: {
      vendor: info.vendor ?? '',
      architecture: info.architecture ?? '',
      device: info.device ?? '',
      description: info.description ?? '',
    },
    features: {
      subgroups: device.features.has('subgroups'),
      shaderF16: device.features.has('shader-f16'),
      timestampQuery: device.features.has('timestamp-query'),
    },
    limits: device.limits,
    lost: device.lost,
  };
}
