/**
 * How the forward pass is recorded: into the one compute pass of a step (`passRecorder`), or one
 * dispatch per timed submission for the bench's per-kernel profile (`Profiler`).
 */
import type { GpuContext } from './device';

const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const MAP_READ = 0x01;
const QUERY_RESOLVE = 0x200;

/** One recorded dispatch: pipeline + bind group made at load, grid chosen per step. */
export interface Kernel {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
}

/** Where the forward pass records its dispatches (see `encodeForward`). */
export interface Recorder {
  kernel(label: string, k: Kernel, x: number, y?: number, z?: number): void;
  op(label: string, encode: (pass: GPUComputePassEncoder) => void): void;
}

export function passRecorder(pass: GPUComputePassEncoder): Recorder {
  return {
    kernel(_label, k, x, y = 1, z = 1) {
      pass.setPipeline(k.pipeline);
      pass.setBindGroup(0, k.bindGroup);
      pass.dispatchWorkgroups(x, y, z);
    },
    op(_label, encode) {
      encode(pass);
    },
  };
}

/**
 * Per-kernel times (bench): each dispatch in its own compute pass and submission, timed with
 * timestamp queries when the device has them, else by wall clock around the submission (which
 * includes ~50 µs of submit/wait overhead per kernel). Totals are summed per label.
 */
export class Profiler {
  readonly totals = new Map<string, { ms: number; count: number }>();
  readonly source: 'timestamp-query' | 'wall-clock';
  private readonly querySet: GPUQuerySet | null;
  private readonly resolve: GPUBuffer | null;
  private readonly read: GPUBuffer | null;

  constructor(private readonly ctx: GpuContext) {
    const { device } = ctx;
    this.source = ctx.features.timestampQuery ? 'timestamp-query' : 'wall-clock';
    this.querySet = ctx.features.timestampQuery
      ? device.createQuerySet({ type: 'timestamp', count: 2 })
      : null;
    this.resolve = this.querySet ? device.createBuffer({ size: 16, usage: QUERY_RESOLVE | COPY_SRC }) : null;
    this.read = this.querySet ? device.createBuffer({ size: 16, usage: MAP_READ | COPY_DST }) : null;
  }

  async forward(record: (rec: Recorder) => void): Promise<void> {
    const jobs: { label: string; encode: (pass: GPUComputePassEncoder) => void }[] = [];
    record({
      kernel: (label, k, x, y = 1, z = 1) =>
        jobs.push({
          label,
          encode: (pass) => {
            pass.setPipeline(k.pipeline);
            pass.setBindGroup(0, k.bindGroup);
            pass.dispatchWorkgroups(x, y, z);
          },
        }),
      op: (label, encode) => jobs.push({ label, encode }),
    });
    const { device } = this.ctx;
    for (const job of jobs) {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass(
        this.querySet
          ? {
              timestampWrites: {
                querySet: this.querySet,
                beginningOfPassWriteIndex: 0,
                endOfPassWriteIndex: 1,
              },
            }
          : {},
      );
      job.encode(pass);
      pass.end();
      if (this.querySet && this.resolve && this.read) {
        enc.resolveQuerySet(this.querySet, 0, 2, this.resolve, 0);
        enc.copyBufferToBuffer(this.resolve, 0, this.read, 0, 16);
      }
      const t0 = performance.now();
      device.queue.submit([enc.finish()]);
      let ms: number;
      if (this.read) {
        await this.read.mapAsync(0x0001);
        const [a, b] = new BigUint64Array(this.read.getMappedRange());
        ms = Number(b - a) / 1e6;
        this.read.unmap();
      } else {
        await device.queue.onSubmittedWorkDone();
        ms = performance.now() - t0;
      }
      const t = this.totals.get(job.label) ?? { ms: 0, count: 0 };
      t.ms += ms;
      t.count++;
      this.totals.set(job.label, t);
    }
  }
}
