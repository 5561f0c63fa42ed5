/**
 * `npm run bench -- --compare llama.cpp --cost --json` end to end, as a child process, on the tiny
 * preset with one layer: the harness is what is tested (here the engine runs on SwiftShader and
 * llama.cpp on its CPU build, so the speeds and their ratio mean nothing).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parsePerfLines } from './llamacpp';

const ROOT = join(__dirname, '../..');

describe('bench harness', () => {
  it('reads llama.cpp perf lines (as llama_perf_context_print writes them)', () => {
    const text =
      'llama_perf_context_print:        load time =     158.55 ms\n' +
      'llama_perf_context_print: prompt eval time =     135.52 ms /    32 tokens (    4.23 ms per token,   236.13 tokens per second)\n' +
      'llama_perf_context_print:        eval time =     497.61 ms /     4 runs   (  124.40 ms per token,     8.04 tokens per second)\n' +
      'llama_perf_context_print:       total time =     662.36 ms /    36 tokens\n';
    expect(parsePerfLines(text)).toEqual({ promptMs: 135.52, promptTokens: 32, evalMs: 497.61, evalRuns: 4 });
    expect(parsePerfLines('llama_perf_context_print: load time = 1 ms\n')).toBeNull();
  });

  it('--compare llama.cpp --cost --json: llama.cpp on the same file, ours ÷ theirs, per-token counts', async () => {
    const [prefill, decode] = [16, 3];
    // process.env carries VK_ICD_FILENAMES (vitest.config.ts): Dawn finds SwiftShader.
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        ...['--import', 'tsx', '--import', './scripts/raw-loader.mjs', 'scripts/bench.ts'],
        ...['--preset', 'tiny', '--layers', '1', '--prefill', `${prefill}`, '--decode', `${decode}`],
        ...['--compare', 'llama.cpp', '--cost', '--json'],
      ],
      { cwd: ROOT, timeout: 240_000 },
    );
    const lines = stdout.trimEnd().split('\n');
    const r = JSON.parse(lines[lines.length - 1]);

    const theirs = r.llamacpp;
    // No Vulkan GPU here: the Vulkan build finds none and the CPU build runs.
    expect(theirs.backend).toBe(
      /swiftshader/i.test(r.device) ? 'cpu' : expect.stringMatching(/^(cpu|vulkan)/),
    );
    expect(theirs.timing).toBe('llama.cpp perf counters');
    for (const v of [theirs.prefillTokPerS, theirs.decodeTokPerS, r.prefillTokPerS, r.decodeTokPerS]) {
      expect(v).toBeGreaterThan(0);
    }
    expect(theirs.prefillTokPerS).toBeCloseTo((prefill / theirs.prefillMs) * 1000, 1);
    expect(theirs.decodeTokPerS).toBeCloseTo((decode / theirs.decodeMs) * 1000, 1);
    expect(r.ratio.prefill).toBeCloseTo(r.prefillTokPerS / theirs.prefillTokPerS, 2);
    expect(r.ratio.decode).toBeCloseTo(r.decodeTokPerS / theirs.decodeTokPerS, 2);

    // Counts for one layer: the exact per-layer formula is held by src/engine/gpu/cost.test.ts.
    expect(r.layers).toBe(1);
    const { decode: d, prefill: p } = r.cost;
    // Decode: 6 per layer (norms, RoPE and the KV write fused into the mat-vecs) + 5 once.
    expect(d).toMatchObject({ tokens: decode, dispatches: 11, computePasses: 1, submits: 1, maps: 1 });
    expect(d.perLayer.dispatches + d.global.dispatches).toBe(d.dispatches);
    // Prefill: 5 per layer (RMSNorm prologue and RoPE + KV epilogue in the GEMM too) + 5 once.
    expect(p).toMatchObject({ tokens: prefill, chunks: 1, dispatchesPerChunk: 10, submits: 1 });
    expect(d.boundBytes.weights).toBeGreaterThanOrEqual(r.gpuWeightBytes);
    expect(d.boundBytes.kv).toBeGreaterThan(0);

    // Load and memory fields: the tiny preset is q4_0, so the load repacked; the live GPU buffers
    // by part add up to no more than the peak, and memory.ts's estimate is within 1% of them.
    expect(r.loadMBPerS).toBeGreaterThan(0);
    expect(r.repackMBPerS).toBeGreaterThan(0);
    expect(r.maxSeqLen).toBe(prefill + decode + 8);
    const parts = r.gpuMemoryBytes as Record<string, number>;
    expect(Object.keys(parts).sort()).toEqual(['activations', 'kvCache', 'scratch', 'weights']);
    const live = Object.values(parts).reduce((a, b) => a + b, 0);
    expect(live).toBeLessThanOrEqual(r.peakGpuBytes);
    expect(Math.abs(r.estimatedGpuBytes - live)).toBeLessThanOrEqual(0.01 * live);
  });
});
