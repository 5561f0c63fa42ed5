/**
 * `npm run bench -- [--model-path F | --preset 8b|3b|1b|tiny] [--all-q4_0] [--layers N]
 *                   [--prefill N] [--decode N] [--profile] [--json] [--heap-check] [--keep]
 *                   [--compare llama.cpp [--llamacpp-backend auto|vulkan|cpu]] [--cost]
 *                   [--max-seq-len N] [--f16]`
 *
 * Load time, prefill (512 tokens) and decode (128 tokens) tok/s of the WebGPU engine, and with
 * --profile the GPU time per kernel (timestamp queries where the device has them). Presets write a
 * random-weight GGUF of the real shapes to a temp file first (streamed, never in memory).
 * --heap-check loads a ≥ 1 GB model while sampling process.memoryUsage() and fails if the JS heap
 * peaks above 256 MB. --compare llama.cpp runs llama.cpp (node-llama-cpp) on the same file with
 * the same prompt length and decode count, after ours, and reports both and ours ÷ theirs.
 * --cost counts, at the WebGPU API, what one decode token and one prefill chunk ask of the GPU
 * (src/engine/gpu/cost.ts). Always: load and repack MB/s, and the GPU memory counted at the API (the
 * sum of live buffers: peak and parts) beside memory.ts's estimate. --max-seq-len sets the KV cache
 * length (default: prefill + decode + 8). --f16 loads with the f16 option (prefill attention in
 * packed f16; the adapter must offer shader-f16). Output: a table, or one JSON line with --json.
 *
 * SwiftShader (no GPU) runs it for correctness only: its numbers are not GPU speed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { llamaConfigFromGguf } from '../src/engine/gguf/config';
import { readGguf } from '../src/engine/gguf/reader';
import { createGpuContext } from '../src/engine/gpu/device';
import { prefillKvBytesRead } from '../src/engine/gpu/attention';
import { type CostCounts, countingContext, memoryCountingContext, scaleCounts } from '../src/engine/gpu/cost';
import { GpuModel } from '../src/engine/gpu/model';
import { repackTotals } from '../src/engine/gpu/weights';
import { prefillChunkTokens } from '../src/engine/limits';
import { estimateGpuMemory, gpuWeightBytes, memoryPart } from '../src/engine/memory';
import { Profiler } from '../src/engine/gpu/profiler';
import { NodeFileSource } from '../src/node/file-source';
import { nodeGpu } from '../src/node/gpu';
import type { LlamaCppBackendChoice } from './bench/llamacpp';
import { PRESETS, presetHeader, writeRandomModel } from './bench/random-model';

interface Args {
  modelPath?: string;
  preset?: string;
  allQ4: boolean;
  layers?: number;
  prefill: number;
  decode: number;
  profile: boolean;
  json: boolean;
  heapCheck: boolean;
  keep: boolean;
  compare?: 'llama.cpp';
  llamacppBackend: LlamaCppBackendChoice;
  cost: boolean;
  maxSeqLen?: number;
  f16: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = {
    allQ4: false,
    prefill: 512,
    decode: 128,
    profile: false,
    json: false,
    heapCheck: false,
    keep: false,
    llamacppBackend: 'auto',
    cost: false,
    f16: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${k} needs a value`);
      return v;
    };
    if (k === '--model-path') a.modelPath = val();
    else if (k === '--preset') a.preset = val();
    else if (k === '--all-q4_0') a.allQ4 = true;
    else if (k === '--layers') a.layers = Number(val());
    else if (k === '--prefill') a.prefill = Number(val());
    else if (k === '--decode') a.decode = Number(val());
    else if (k === '--profile') a.profile = true;
    else if (k === '--json') a.json = true;
    else if (k === '--heap-check') a.heapCheck = true;
    else if (k === '--keep') a.keep = true;
    else if (k === '--compare') {
      const v = val();
      if (v !== 'llama.cpp') throw new Error(`--compare ${v}: only llama.cpp is supported`);
      a.compare = v;
    } else if (k === '--llamacpp-backend') {
      const v = val();
      if (v !== 'auto' && v !== 'vulkan' && v !== 'cpu')
        throw new Error('--llamacpp-backend is auto, vulkan or cpu');
      a.llamacppBackend = v;
    } else if (k === '--cost') a.cost = true;
    else if (k === '--max-seq-len') a.maxSeqLen = Number(val());
    else if (k === '--f16') a.f16 = true;
    else throw new Error(`unknown option ${k}; see the header of scripts/bench.ts`);
  }
  if (a.preset && !PRESETS[a.preset])
    throw new Error(`--preset must be one of ${Object.keys(PRESETS).join(', ')}`);
  if (!a.modelPath && !a.preset) a.preset = a.heapCheck ? '1b' : 'tiny';
  for (const [name, v, min] of [
    ['--prefill', a.prefill, 1],
    ['--decode', a.decode, 1],
    ['--layers', a.layers ?? 1, 1],
    ['--max-seq-len', a.maxSeqLen ?? 2, 2],
  ] as const) {
    if (!(Number.isInteger(v) && v >= min)) throw new Error(`${name} must be an integer ≥ ${min}`);
  }
  if (a.compare && a.prefill < 2)
    throw new Error('--compare needs --prefill ≥ 2 (a batch, as llama.cpp counts it)');
  if (a.heapCheck && (a.compare || a.cost))
    throw new Error('--heap-check only loads: no --compare or --cost');
  return a;
}

const MB = 1 << 20;
/** Dawn's GPU object stays referenced: the process aborts if it is collected under a live device. */
let gpuInstance: GPU | undefined;

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const log = (s: string) => {
    if (!args.json) console.log(s);
  };
  let path = args.modelPath;
  let tmp: string | undefined;
  if (!path) {
    const shape = { ...PRESETS[args.preset!] };
    if (args.layers) shape.nLayers = args.layers;
    tmp = mkdtempSync(join(tmpdir(), 'llama3-bench-'));
    path = join(tmp, `${args.preset}${args.allQ4 ? '-all-q4_0' : ''}.gguf`);
    const t = performance.now();
    const size = writeRandomModel(path, shape, args.allQ4);
    log(`wrote ${path}: ${(size / 1e9).toFixed(2)} GB in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  try {
    gpuInstance = await nodeGpu({ preciseTimestamps: args.profile }); // unquantized timestamps for --profile
    const realCtx = await createGpuContext(gpuInstance);
    // --cost: the model gets a counting device, counting only around the counted steps below.
    const counting = args.cost ? countingContext(realCtx) : null;
    if (counting) counting.counter.active = false;
    // Buffer memory is counted on every run (createBuffer only: the timed steps pay nothing for it).
    const { ctx, memory } = memoryCountingContext(counting?.ctx ?? realCtx);
    const source = await NodeFileSource.open(path);
    const file = await readGguf(source);
    const config = llamaConfigFromGguf(file);
    const device =
      `${ctx.adapterInfo.vendor} ${ctx.adapterInfo.architecture} ${ctx.adapterInfo.description}`.trim();
    log(`device: ${device}${/swiftshader/i.test(device) ? ' (software: numbers are NOT GPU speed)' : ''}`);

    // Load, sampling the JS heap as it goes (the heap check's point: weights stream tensor by tensor).
    let peakHeap = 0;
    let peakArrayBuffers = 0;
    let peakRss = 0;
    const sample = () => {
      const m = process.memoryUsage();
      peakHeap = Math.max(peakHeap, m.heapUsed);
      peakArrayBuffers = Math.max(peakArrayBuffers, m.arrayBuffers);
      peakRss = Math.max(peakRss, m.rss);
    };
    const timer = setInterval(sample, 20);
    const t0 = performance.now();
    const maxSeqLen = args.maxSeqLen ?? Math.min(config.contextLength, args.prefill + args.decode + 8);
    // Prefill chunks as the engine cuts them (limits.ts prefillChunkTokens); a preset cut to
    // --layers N is chunked as its full depth would be, so the per-chunk counts are the real ones.
    const full = args.preset ? presetHeader(args.preset, { allQ4: args.allQ4 }) : undefined;
    const maxTokens = full
      ? prefillChunkTokens(full.config, {
          maxBatch: 1,
          maxSeqLen,
          weightBytes: gpuWeightBytes(full.file),
          limits: ctx.limits,
        })
      : undefined;
    const loadOpts = { maxBatch: 1, maxSeqLen, maxTokens, f16: args.f16 };
    const repackBefore = { ...repackTotals };
    const model = await GpuModel.load(ctx, source, file, config, { ...loadOpts, onProgress: sample });
    const loadMs = performance.now() - t0;
    clearInterval(timer);
    sample();
    const tensorBytes = file.tensors.reduce((a, t) => a + t.byteLength, 0);
    const repackBytes = repackTotals.sourceBytes - repackBefore.sourceBytes;
    const repackMs = repackTotals.ms - repackBefore.ms;
    // GPU memory: the live buffers after load, by part, beside the estimate (memory.ts).
    const parts = { weights: 0, kvCache: 0, activations: 0, scratch: 0 };
    for (const b of memory.buffers) if (!b.destroyed) parts[memoryPart(b.label, b.usage)] += b.size;
    const estimate = estimateGpuMemory(file, config, { ...loadOpts, limits: ctx.limits });
    const result: Record<string, unknown> = {
      model:
        args.modelPath ??
        `preset ${args.preset}${args.allQ4 ? ' all-q4_0' : ''}${args.layers ? ` (${args.layers} layers)` : ''}`,
      device,
      f16: args.f16,
      fileBytes: source.size,
      gpuWeightBytes: model.weightBytes,
      loadMs: Math.round(loadMs),
      loadMBPerS: +(tensorBytes / 1e6 / (loadMs / 1000)).toPrecision(4),
      repackMBPerS:
        repackBytes > 0 && repackMs > 0 ? +(repackBytes / 1e6 / (repackMs / 1000)).toPrecision(4) : null,
      maxSeqLen,
      peakGpuBytes: memory.memory().peakBytes,
      gpuMemoryBytes: parts,
      estimatedGpuBytes: estimate.total,
      peakHeapMB: +(peakHeap / MB).toFixed(1),
      peakArrayBuffersMB: +(peakArrayBuffers / MB).toFixed(1),
      peakRssMB: +(peakRss / MB).toFixed(1),
    };

    if (!args.heapCheck) {
      const greedy = { temperature: 0, topP: 1, topK: 0, seed: 1 };
      const prompt = Array.from({ length: args.prefill }, (_, i) => (i * 7919) % config.vocabSize);
      // Warm-up (pipelines, first submission), then the timed runs.
      model.reset(1, greedy);
      await model.step([prompt.slice(0, 8)]);
      model.reset(1, greedy);
      let t = performance.now();
      let [next] = await model.step([prompt]);
      const prefillMs = performance.now() - t;
      t = performance.now();
      for (let i = 0; i < args.decode; i++) [next] = await model.step([[next]]);
      const decodeMs = performance.now() - t;
      Object.assign(result, {
        prefillTokens: args.prefill,
        prefillMs: Math.round(prefillMs),
        prefillTokPerS: +((args.prefill / prefillMs) * 1000).toFixed(1),
        decodeTokens: args.decode,
        decodeMs: Math.round(decodeMs),
        decodeTokPerS: +((args.decode / decodeMs) * 1000).toFixed(2),
        decodeMsPerToken: +(decodeMs / args.decode).toFixed(3),
      });
      if (args.profile) {
        const perKernel: Record<string, Record<string, number>> = {};
        for (const [phase, tokens] of [
          ['prefill', prompt],
          ['decode', [next]],
        ] as const) {
          model.reset(1, greedy);
          if (phase === 'decode') await model.step([prompt]);
          model.profiler = new Profiler(ctx);
          await model.step([tokens as number[]]);
          perKernel[phase] = Object.fromEntries(
            [...model.profiler.totals].map(([k, v]) => [k, +v.ms.toFixed(3)]),
          );
          result.profileSource = model.profiler.source;
          model.profiler = null;
        }
        result.perKernelMs = perKernel;
      }
      if (counting) {
        // Counted apart from the timed runs (the wrapper's JS is in their path, not its counting):
        // the same prefill, then up to 4 decode tokens; every decode token encodes the same work.
        const { counter } = counting;
        const maxTokens = model.maxTokens;
        const chunks = Math.ceil(args.prefill / maxTokens);
        const decodeSteps = Math.min(args.decode, 4);
        model.reset(1, greedy);
        counter.reset();
        counter.active = true;
        [next] = await model.step([prompt]);
        const prefill = scaleCounts(counter.snapshot(), 1 / chunks);
        counter.reset();
        for (let i = 0; i < decodeSteps; i++) [next] = await model.step([[next]]);
        const decode = scaleCounts(counter.snapshot(), 1 / decodeSteps);
        counter.active = false;
        result.layers = config.nLayers;
        result.cost = {
          decode: { tokens: decodeSteps, ...costFields(decode, config.nLayers, 'dispatches') },
          prefill: {
            tokens: args.prefill,
            chunks,
            maxTokensPerChunk: maxTokens,
            ...costFields(prefill, config.nLayers, 'dispatchesPerChunk'),
            // Counted from the kernels' loops (attention.ts): K/V bytes one layer's attention reads
            // per chunk, with the FlashAttention-2 prefill and with one workgroup per token row.
            kvReadBytesPerLayer: kvReadPerChunk(prompt.length, maxTokens, config, 'flash') / chunks,
            kvReadBytesPerLayerPerRow: kvReadPerChunk(prompt.length, maxTokens, config, 'perRow') / chunks,
          },
        };
      }
    }
    model.dispose();
    realCtx.device.destroy();

    if (args.compare && result.prefillTokPerS !== undefined) {
      const { benchLlamaCpp } = await import('./bench/llamacpp');
      const prompt = Array.from({ length: args.prefill }, (_, i) => (i * 7919) % config.vocabSize);
      log(`llama.cpp (node-llama-cpp) on ${path} …`);
      const theirs = await benchLlamaCpp(path, prompt, args.decode, args.llamacppBackend);
      result.llamacpp = theirs;
      result.ratio = {
        prefill: +((result.prefillTokPerS as number) / theirs.prefillTokPerS).toFixed(3),
        decode: +((result.decodeTokPerS as number) / theirs.decodeTokPerS).toFixed(3),
      };
    }

    const heapOk = peakHeap <= 256 * MB;
    if (args.heapCheck) result.heapCheck = heapOk ? 'pass (≤ 256 MB)' : 'FAIL (> 256 MB)';
    if (args.json) {
      console.log(JSON.stringify(result));
    } else {
      const nested = ['perKernelMs', 'cost', 'llamacpp', 'ratio', 'gpuMemoryBytes'];
      const rows = Object.entries(result).filter(([k]) => !nested.includes(k));
      const w = Math.max(...rows.map(([k]) => k.length));
      for (const [k, v] of rows) console.log(`${k.padEnd(w)}  ${v}`);
      console.log(`${'gpuMemoryBytes'.padEnd(w)}  ${JSON.stringify(result.gpuMemoryBytes)}`);
      if (result.llamacpp) {
        console.log(`\nllama.cpp: ${JSON.stringify(result.llamacpp)}`);
        console.log(`ours ÷ llama.cpp: ${JSON.stringify(result.ratio)}`);
      }
      if (result.cost) printCost(result.cost as Record<string, Record<string, unknown>>);
      const pk = result.perKernelMs as Record<string, Record<string, number>> | undefined;
      if (pk) {
        console.log(`\nGPU time per kernel, ms (${result.profileSource}; summed over layers):`);
        const names = [...new Set([...Object.keys(pk.prefill), ...Object.keys(pk.decode)])];
        console.log(`${'kernel'.padEnd(20)}${'prefill'.padStart(12)}${'decode'.padStart(12)}`);
        for (const n of names) {
          const f = (x?: number) => (x === undefined ? '-' : x.toFixed(3)).padStart(12);
          console.log(`${n.padEnd(20)}${f(pk.prefill[n])}${f(pk.decode[n])}`);
        }
      }
    }
    if (args.heapCheck && !heapOk) process.exitCode = 1;
  } finally {
    if (tmp && !args.keep) rmSync(tmp, { recursive: true, force: true });
  }
}

/** The JSON of one phase's counts (per decode token or per prefill chunk), with a per-layer split. */
/** K/V bytes one layer's prefill attention reads for a prompt of `n` tokens in chunks of `maxTokens`. */
function kvReadPerChunk(
  n: number,
  maxTokens: number,
  config: { nHeads: number; nKvHeads: number; headDim: number },
  kind: 'flash' | 'perRow',
): number {
  let total = 0;
  for (let start = 0; start < n; start += maxTokens) {
    const rows = Array.from({ length: Math.min(maxTokens, n - start) }, (_, i) => ({
      seq: 0,
      pos: start + i,
    }));
    total += prefillKvBytesRead(rows, config.nHeads, config.nKvHeads, config.headDim)[kind];
  }
  return total;
}

function costFields(c: CostCounts, nLayers: number, dispatchesName: string) {
  const perLayer = scaleCounts(c, 1 / nLayers).layers;
  return {
    [dispatchesName]: c.dispatches,
    computePasses: c.computePasses,
    submits: c.submits,
    maps: c.maps,
    readBytes: c.mapBytes,
    writes: c.writes,
    writeBytes: c.writeBytes,
    copies: c.copies,
    copyBytes: c.copyBytes,
    boundBytes: c.bound,
    perLayer: { dispatches: perLayer.dispatches, boundBytes: perLayer.bound },
    global: { dispatches: c.global.dispatches, boundBytes: c.global.bound },
    byKernel: c.byKernel,
  };
}

function printCost(cost: Record<string, Record<string, unknown>>) {
  const mb = (n: unknown) => `${((n as number) / 1e6).toFixed(2)} MB`;
  console.log('\nCost at the WebGPU API (bytes bound = sizes of the buffer ranges bound to each dispatch):');
  for (const [phase, c] of Object.entries(cost)) {
    const per = phase === 'decode' ? 'per decode token' : 'per prefill chunk';
    const d = c.dispatches ?? c.dispatchesPerChunk;
    const b = c.boundBytes as Record<string, number>;
    const pl = c.perLayer as { dispatches: number; boundBytes: Record<string, number> };
    console.log(
      `${per}: ${d} dispatches (${pl.dispatches}/layer), ${c.computePasses} passes, ${c.submits} submits, ` +
        `${c.maps} maps (${c.readBytes} B), ${c.writes} writeBuffer (${c.writeBytes} B), ` +
        `bound: weights ${mb(b.weights)}, KV ${mb(b.kv)}, activations ${mb(b.activations)}, other ${mb(b.other)}`,
    );
    if (c.kvReadBytesPerLayer !== undefined) {
      console.log(
        `  attention K/V read per layer per chunk: ${mb(c.kvReadBytesPerLayer)} (one workgroup per token row would read ${mb(c.kvReadBytesPerLayerPerRow)})`,
      );
    }
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e) => {
    console.error(e instanceof Error ? `${e.name}: ${e.message}` : e);
    process.exit(1);
  },
);
