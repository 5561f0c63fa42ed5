/**
 * `node --import tsx scripts/bench/repack.ts [--seconds S] [--json]`
 *
 * The CPU repack alone (weights.ts `Repacker`, what the load path runs on every slice), in MB/s of
 * file bytes on one core: slices of ≈ 4 MiB of random blocks (the load path's slice size) of a
 * 4096-column matrix, repacked again and again for S seconds (default 1) per type after a warm-up.
 * Two rates: per wall-clock second and per second of this process's CPU time (what one core does
 * when the machine is shared; the two agree on an idle machine). docs/bench.md reports them; the
 * bench's `repackMBPerS` is the same rate measured during a real load.
 */
import { GgmlType, SUPPORTED_TYPES, typeName } from '../../src/engine/gguf/types';
import { mulberry32 } from '../../src/engine/random';
import { Repacker } from '../../src/engine/gpu/weights';

export function measureRepack(
  type: GgmlType,
  seconds: number,
): { mbPerS: number; mbPerCpuS: number; sliceBytes: number } {
  const cols = 4096;
  const t = SUPPORTED_TYPES.get(type)!;
  const rowBytes = (cols / t.blockSize) * t.bytesPerBlock;
  const rows = Math.floor((4 << 20) / rowBytes);
  const rng = mulberry32(1);
  const src = Uint8Array.from({ length: rows * rowBytes }, () => Math.floor(rng() * 256));
  const repacker = new Repacker();
  let sink = 0;
  const run = (until: number) => {
    let bytes = 0;
    const start = performance.now();
    const cpu = process.cpuUsage();
    do {
      const out = repacker.repack(type, type, src, rows, cols);
      sink ^= out.quants[bytes & 1023];
      bytes += src.byteLength;
    } while (performance.now() - start < until);
    const used = process.cpuUsage(cpu);
    return {
      wall: bytes / 1e6 / ((performance.now() - start) / 1000),
      cpu: bytes / 1e6 / ((used.user + used.system) / 1e6),
    };
  };
  run(200); // warm-up: the optimizing compiler
  const { wall, cpu } = run(seconds * 1000);
  if (sink < 0) throw new Error('unreachable');
  return { mbPerS: wall, mbPerCpuS: cpu, sliceBytes: src.byteLength };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--seconds');
  const seconds = i >= 0 ? Number(argv[i + 1]) : 1;
  const results: Record<string, { mbPerS: number; mbPerCpuS: number }> = {};
  for (const type of [GgmlType.Q4_0, GgmlType.Q8_0, GgmlType.Q6_K]) {
    const r = measureRepack(type, seconds);
    results[typeName(type)] = { mbPerS: Math.round(r.mbPerS), mbPerCpuS: Math.round(r.mbPerCpuS) };
  }
  if (argv.includes('--json')) console.log(JSON.stringify({ repack: results }));
  else {
    for (const [k, v] of Object.entries(results)) {
      console.log(`${k.padEnd(5)} ${v.mbPerS} MB/s wall, ${v.mbPerCpuS} MB per CPU second (file bytes)`);
    }
  }
}
