/**
 * The cost of a step counted at the WebGPU API (`npm run bench -- --cost`, docs/bench.md): a
 * counting wrapper around a GPUDevice, its queue, its command encoders and compute passes, and the
 * mapAsync of its readable buffers. Counts what the code asks the GPU to do, not what it says it does:
 * dispatches, compute passes, submits, maps and the bytes they read back, `writeBuffer` calls and
 * bytes, buffer-to-buffer copies, and per dispatch the bytes of every buffer bound to it, by
 * category (weights, KV cache, activations, other).
 *
 * Dawn's objects check `this` natively, so nothing Dawn receives is a wrapper: the device, queue,
 * encoder and pass wrappers are Proxies that call the real object's methods on the real object, and
 * every object they hand out that goes back into Dawn (buffers, bind groups, pipelines, command
 * buffers) is the real one. Buffers and bind groups are described in WeakMaps when created, so the
 * wrapper must be in place before the model loads: `countingContext(ctx)` → give its `ctx` to
 * `GpuModel.load`.
 */
import type { GpuContext } from './device';

export type CostCategory = 'weights' | 'kv' | 'activations' | 'other';
export const COST_CATEGORIES: readonly CostCategory[] = ['weights', 'kv', 'activations', 'other'];

export type BoundBytes = Record<CostCategory, number>;

/** Dispatches and the bytes bound to them, for one slice of the work (a kernel, the layers, …). */
export interface DispatchCost {
  dispatches: number;
  bound: BoundBytes;
}

export interface CostCounts {
  dispatches: number;
  computePasses: number;
  /** `queue.submit` calls and the command buffers they carried. */
  submits: number;
  commandBuffers: number;
  /** `mapAsync` calls and the bytes of the ranges they mapped (what the CPU can read back). */
  maps: number;
  mapBytes: number;
  /** `queue.writeBuffer` calls and bytes. */
  writes: number;
  writeBytes: number;
  /** `copyBufferToBuffer` calls and bytes. */
  copies: number;
  copyBytes: number;
  /** Bytes of the buffer ranges bound to each dispatch, summed over dispatches, by category. */
  bound: BoundBytes;
  /** By pipeline label. */
  byKernel: Record<string, DispatchCost>;
  /** Dispatches whose first bind group is labelled `blk.<l>.…` (a transformer layer) … */
  layers: DispatchCost;
  /** … the distinct layer indices seen there … */
  layerIds: number[];
  /** … and all other dispatches (embedding, LM head, sampling). */
  global: DispatchCost;
}

const MAP_READ = 0x01;
const MAP_WRITE = 0x02;
const UNIFORM = 0x40;

/**
 * The category of a buffer, from the labels this engine gives them (model.ts, weights.ts): KV caches
 * `blk.<l>.k_cache` / `v_cache`; weights the GGUF tensor names and their concatenations
 * (`token_embd.weight`, `blk.<l>.attn_qkv[0]`, `output_norm.weight`, …); "other" for uniforms
 * (per-step parameters, per-part metadata) and the RoPE table; everything else is an activation.
 */
export function classifyBuffer(label: string, usage: number): CostCategory {
  if (usage & UNIFORM) return 'other';
  if (/^blk\.\d+\.[kv]_cache$/.test(label)) return 'kv';
  if (/^(blk\.\d+\.|token_embd\b|output\b|output_norm\b|rope_freqs\b)/.test(label)) return 'weights';
  if (label === 'rope-table' || label === 'fusion-consts') return 'other'; // fusion-consts: rope table + norms
  return 'activations';
}

const zeroBound = (): BoundBytes => ({ weights: 0, kv: 0, activations: 0, other: 0 });
const zeroDispatch = (): DispatchCost => ({ dispatches: 0, bound: zeroBound() });

export function emptyCounts(): CostCounts {
  return {
    dispatches: 0,
    computePasses: 0,
    submits: 0,
    commandBuffers: 0,
    maps: 0,
    mapBytes: 0,
    writes: 0,
    writeBytes: 0,
    copies: 0,
    copyBytes: 0,
    bound: zeroBound(),
    byKernel: {},
    layers: zeroDispatch(),
    layerIds: [],
    global: zeroDispatch(),
  };
}

/** `c` with every count multiplied by `k` (per token, per chunk, per layer). */
export function scaleCounts(c: CostCounts, k: number): CostCounts {
  const scaleBound = (b: BoundBytes): BoundBytes =>
    Object.fromEntries(COST_CATEGORIES.map((cat) => [cat, b[cat] * k])) as BoundBytes;
  const scaleDispatch = (d: DispatchCost): DispatchCost => ({
    dispatches: d.dispatches * k,
    bound: scaleBound(d.bound),
  });
  return {
    dispatches: c.dispatches * k,
    computePasses: c.computePasses * k,
    submits: c.submits * k,
    commandBuffers: c.commandBuffers * k,
    maps: c.maps * k,
    mapBytes: c.mapBytes * k,
    writes: c.writes * k,
    writeBytes: c.writeBytes * k,
    copies: c.copies * k,
    copyBytes: c.copyBytes * k,
    bound: scaleBound(c.bound),
    byKernel: Object.fromEntries(Object.entries(c.byKernel).map(([n, d]) => [n, scaleDispatch(d)])),
    layers: scaleDispatch(c.layers),
    layerIds: [...c.layerIds],
    global: scaleDispatch(c.global),
  };
}

export interface BufferInfo {
  label: string;
  size: number;
  usage: number;
  category: CostCategory;
  /** Set when `destroy()` was called on it. */
  destroyed: boolean;
}

interface BoundRange {
  buffer: GPUBuffer;
  size: number;
}

interface BindGroupInfo {
  label: string;
  /** Layer index when the label is `blk.<l>.…`, else -1. */
  layer: number;
  ranges: BoundRange[];
}

/**
 * A Proxy whose property reads and writes go to `target` itself (so Dawn's getters and setters see
 * their own object), with `overrides` in front and methods bound to `target`.
 */
function forwarding<T extends object>(target: T, overrides: Record<string | symbol, unknown>): T {
  const bound = new Map<string | symbol, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      if (Object.hasOwn(overrides, prop)) return overrides[prop];
      const v = Reflect.get(t, prop, t);
      if (typeof v !== 'function') return v;
      let f = bound.get(prop);
      if (!f) {
        f = (v as (...a: unknown[]) => unknown).bind(t);
        bound.set(prop, f);
      }
      return f;
    },
    set(t, prop, value) {
      return Reflect.set(t, prop, value, t);
    },
  });
}

/** Bytes of a writeBuffer's data: TypedArray offsets and sizes count elements, ArrayBuffer's bytes. */
function writtenBytes(data: BufferSource | SharedArrayBuffer, dataOffset = 0, size?: number): number {
  const element = ArrayBuffer.isView(data) ? ((data as Uint8Array).BYTES_PER_ELEMENT ?? 1) : 1;
  if (size !== undefined) return size * element;
  return data.byteLength - dataOffset * element;
}

/**
 * GPU memory as the API sees it: every buffer created (its label, size, usage) and whether it was
 * destroyed; the sum of live sizes now and at its peak. `destroy` is shadowed by an own property
 * that calls Dawn's on the real object.
 */
export class BufferMemory {
  private liveBytes = 0;
  private peakBytes = 0;
  readonly buffers: BufferInfo[] = [];

  track(
    b: GPUBuffer,
    d: GPUBufferDescriptor,
    category: CostCategory = classifyBuffer(d.label ?? '', d.usage),
  ) {
    const info: BufferInfo = {
      label: d.label ?? '',
      size: d.size,
      usage: d.usage,
      category,
      destroyed: false,
    };
    this.buffers.push(info);
    this.liveBytes += d.size;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    const destroy = b.destroy;
    Object.defineProperty(b, 'destroy', {
      configurable: true,
      value: () => {
        if (!info.destroyed) {
          info.destroyed = true;
          this.liveBytes -= d.size;
        }
        destroy.call(b);
      },
    });
    return info;
  }

  memory(): { liveBytes: number; peakBytes: number } {
    return { liveBytes: this.liveBytes, peakBytes: this.peakBytes };
  }
}

/**
 * `ctx` with a device that only tracks buffer memory (BufferMemory): encoders, passes and the queue
 * are the real objects, so a timed run through it pays for nothing but createBuffer.
 */
export function memoryCountingContext(ctx: GpuContext): { ctx: GpuContext; memory: BufferMemory } {
  const memory = new BufferMemory();
  const real = ctx.device;
  const device = forwarding(real, {
    createBuffer: (d: GPUBufferDescriptor) => {
      const b = real.createBuffer(d);
      memory.track(b, d);
      return b;
    },
  });
  return { ctx: { ...ctx, device }, memory };
}

export class CostCounter {
  /** Counting on (the wrappers always forward; while false they only describe new objects). */
  active = true;
  /** The counting device: give it (or `countingContext`'s ctx) to the code to measure. */
  readonly device: GPUDevice;
  private counts = emptyCounts();
  private readonly buffers = new WeakMap<GPUBuffer, BufferInfo>();
  private readonly createdBuffers: BufferInfo[] = [];
  private readonly bindGroups = new WeakMap<GPUBindGroup, BindGroupInfo>();
  private readonly pipelines = new WeakMap<GPUComputePipeline, string>();
  /** The workgroup grid of each pipeline's latest counted dispatch (e.g. the attention split count). */
  readonly lastGrid = new Map<string, [number, number, number]>();
  private readonly bufferMemory = new BufferMemory();

  constructor(
    readonly real: GPUDevice,
    private readonly classify: (label: string, usage: number) => CostCategory = classifyBuffer,
  ) {
    const queue = this.wrapQueue(real.queue);
    this.device = forwarding(real, {
      queue,
      createBuffer: (d: GPUBufferDescriptor) => this.describeBuffer(real.createBuffer(d), d),
      createBindGroup: (d: GPUBindGroupDescriptor) => this.describeBindGroup(real.createBindGroup(d), d),
      createComputePipeline: (d: GPUComputePipelineDescriptor) => {
        const p = real.createComputePipeline(d);
        this.pipelines.set(p, d.label ?? d.compute.entryPoint ?? '(unlabelled)');
        return p;
      },
      createComputePipelineAsync: async (d: GPUComputePipelineDescriptor) => {
        const p = await real.createComputePipelineAsync(d);
        this.pipelines.set(p, d.label ?? d.compute.entryPoint ?? '(unlabelled)');
        return p;
      },
      createCommandEncoder: (d?: GPUCommandEncoderDescriptor) =>
        this.wrapEncoder(real.createCommandEncoder(d)),
    });
  }

  /** Counts since construction or the last reset (a deep copy). */
  snapshot(): CostCounts {
    return scaleCounts(this.counts, 1);
  }

  reset(): void {
    this.counts = emptyCounts();
  }

  /** What this counter knows about a buffer created through it. */
  bufferInfo(b: GPUBuffer): BufferInfo | undefined {
    return this.buffers.get(b);
  }

  /** Every buffer created through the counting device (destroyed ones included), in order. */
  created(): readonly BufferInfo[] {
    return this.createdBuffers;
  }

  /** GPU memory as the API sees it: the sum of live buffer sizes, now and at its peak (counting or not). */
  memory(): { liveBytes: number; peakBytes: number } {
    return this.bufferMemory.memory();
  }

  private describeBuffer(b: GPUBuffer, d: GPUBufferDescriptor): GPUBuffer {
    const info = this.bufferMemory.track(b, d, this.classify(d.label ?? '', d.usage));
    this.buffers.set(b, info);
    this.createdBuffers.push(info);
    if (d.usage & (MAP_READ | MAP_WRITE)) {
      // mapAsync is the one buffer method to count; an own property on the real object shadows
      // Dawn's prototype method and calls it on the real object.
      const mapAsync = b.mapAsync;
      Object.defineProperty(b, 'mapAsync', {
        configurable: true,
        value: (mode: number, offset = 0, size?: number) => {
          if (this.active) {
            this.counts.maps++;
            this.counts.mapBytes += size ?? d.size - offset;
          }
          return size === undefined ? mapAsync.call(b, mode, offset) : mapAsync.call(b, mode, offset, size);
        },
      });
    }
    return b;
  }

  private describeBindGroup(g: GPUBindGroup, d: GPUBindGroupDescriptor): GPUBindGroup {
    const ranges: BoundRange[] = [];
    for (const e of d.entries) {
      const r = e.resource as GPUBufferBinding | GPUBuffer;
      const binding = 'buffer' in r ? r : { buffer: r as GPUBuffer };
      if (!binding.buffer || typeof binding.buffer.size !== 'number') continue; // sampler, texture view
      const offset = binding.offset ?? 0;
      ranges.push({ buffer: binding.buffer, size: binding.size ?? binding.buffer.size - offset });
    }
    const label = d.label ?? '';
    const m = /^blk\.(\d+)\./.exec(label);
    this.bindGroups.set(g, { label, layer: m ? Number(m[1]) : -1, ranges });
    return g;
  }

  private wrapQueue(queue: GPUQueue): GPUQueue {
    return forwarding(queue, {
      submit: (buffers: Iterable<GPUCommandBuffer>) => {
        const list = [...buffers];
        if (this.active) {
          this.counts.submits++;
          this.counts.commandBuffers += list.length;
        }
        queue.submit(list);
      },
      writeBuffer: (
        buffer: GPUBuffer,
        offset: number,
        data: BufferSource | SharedArrayBuffer,
        dataOffset?: number,
        size?: number,
      ) => {
        if (this.active) {
          this.counts.writes++;
          this.counts.writeBytes += writtenBytes(data, dataOffset, size);
        }
        if (size !== undefined) queue.writeBuffer(buffer, offset, data, dataOffset, size);
        else if (dataOffset !== undefined) queue.writeBuffer(buffer, offset, data, dataOffset);
        else queue.writeBuffer(buffer, offset, data);
      },
    });
  }

  private wrapEncoder(enc: GPUCommandEncoder): GPUCommandEncoder {
    return forwarding(enc, {
      beginComputePass: (d?: GPUComputePassDescriptor) => {
        if (this.active) this.counts.computePasses++;
        return this.wrapPass(enc.beginComputePass(d));
      },
      copyBufferToBuffer: (...args: unknown[]) => {
        // (src, srcOffset, dst, dstOffset, size) or the newer (src, dst, size?).
        const size =
          args.length >= 5
            ? (args[4] as number)
            : typeof args[1] === 'number'
              ? 0
              : ((args[2] as number | undefined) ?? (args[0] as GPUBuffer).size);
        if (this.active) {
          this.counts.copies++;
          this.counts.copyBytes += size;
        }
        return (enc.copyBufferToBuffer as (...a: unknown[]) => void).apply(enc, args);
      },
    });
  }

  private wrapPass(pass: GPUComputePassEncoder): GPUComputePassEncoder {
    let pipeline: GPUComputePipeline | undefined;
    const groups = new Map<number, GPUBindGroup>();
    const count = (grid?: [number, number, number]) => {
      if (!this.active) return;
      const c = this.counts;
      const kernelName = (pipeline && this.pipelines.get(pipeline)) ?? '(unknown pipeline)';
      if (grid) this.lastGrid.set(kernelName, grid);
      c.byKernel[kernelName] ??= zeroDispatch();
      const kernel = c.byKernel[kernelName];
      const first = groups.get(0);
      const layer = first ? (this.bindGroups.get(first)?.layer ?? -1) : -1;
      const scope = layer >= 0 ? c.layers : c.global;
      if (layer >= 0 && !c.layerIds.includes(layer)) c.layerIds.push(layer);
      for (const slice of [c, kernel, scope]) slice.dispatches++;
      for (const g of groups.values()) {
        for (const r of this.bindGroups.get(g)?.ranges ?? []) {
          const cat = this.buffers.get(r.buffer)?.category ?? 'other';
          for (const slice of [c, kernel, scope]) slice.bound[cat] += r.size;
        }
      }
    };
    return forwarding(pass, {
      setPipeline: (p: GPUComputePipeline) => {
        pipeline = p;
        pass.setPipeline(p);
      },
      setBindGroup: (index: number, g: GPUBindGroup | null, ...rest: unknown[]) => {
        if (g) groups.set(index, g);
        else groups.delete(index);
        (pass.setBindGroup as (...a: unknown[]) => void).call(pass, index, g, ...rest);
      },
      dispatchWorkgroups: (x: number, y?: number, z?: number) => {
        count([x, y ?? 1, z ?? 1]);
        pass.dispatchWorkgroups(x, y ?? 1, z ?? 1);
      },
      dispatchWorkgroupsIndirect: (b: GPUBuffer, offset: number) => {
        count();
        pass.dispatchWorkgroupsIndirect(b, offset);
      },
    });
  }
}

/** `ctx` with its device replaced by a counting one; load the model with the returned ctx. */
export function countingContext(ctx: GpuContext): { ctx: GpuContext; counter: CostCounter } {
  const counter = new CostCounter(ctx.device);
  return { ctx: { ...ctx, device: counter.device }, counter };
}
