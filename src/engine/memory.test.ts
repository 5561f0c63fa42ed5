/**
 * The GPU memory estimate and the default context (memory.ts): the rule on the real Llama 3 shapes
 * (pure arithmetic), and the estimate against the buffers a load really creates, counted at the
 * WebGPU API (cost.ts), part by part, on a small model (Dawn on SwiftShader).
 */
import { describe, expect, it } from 'vitest';
import { presetHeader } from '../../scripts/bench/random-model';
import {
  ACTIVATION_FLOOR,
  ACTIVATION_SHARE,
  activationBytesPerRow,
  linearFlopsPerToken,
  MAX_PREFILL_CHUNK,
  PREFILL_CHUNK_8B,
  prefillChunkTokens,
} from './limits';
import { defaultGpuMaxSeqLen, estimateGpuMemory, gpuWeightBytes, MIN_DEFAULT_SEQ_LEN } from './memory';

const preset = (name: string, contextLength?: number) => presetHeader(name, { contextLength });

const GiB = 1 << 30;
const bigLimits = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 4 * GiB - 4 };

describe('default context length', () => {
  it("is the model's own when its KV cache fits the budget (8B: 8,192 for 4 sequences)", () => {
    const { file, config } = preset('8b');
    expect(defaultGpuMaxSeqLen(file, config, { maxBatch: 4, limits: bigLimits })).toBe(8192);
    const e = estimateGpuMemory(file, config, { maxBatch: 4, limits: bigLimits });
    expect(e.maxSeqLen).toBe(8192);
    // 32 layers × K and V × 4 × 8192 × 1024 × 2 bytes.
    expect(e.kvCache).toBe(32 * 2 * 4 * 8192 * 1024 * 2);
    // The weights in their GPU layouts are the file's tensor bytes (norms f32 in both).
    const fileBytes = file.tensors.reduce((a, t) => a + t.byteLength, 0);
    expect(e.weights / fileBytes).toBeGreaterThanOrEqual(1);
    expect(e.weights / fileBytes).toBeLessThan(1.001);
  });

  it('is capped by the budget (KV ≤ max(weights, 1 GiB)) on a long-context model, in multiples of 256', () => {
    const { file, config } = preset('1b', 131072);
    const n = defaultGpuMaxSeqLen(file, config, { maxBatch: 1, limits: bigLimits });
    const e = estimateGpuMemory(file, config, { maxBatch: 1, limits: bigLimits });
    expect(e.maxSeqLen).toBe(n);
    expect(n % 256).toBe(0);
    expect(e.kvCache).toBeLessThanOrEqual(Math.max(e.weights, GiB));
    // 256 more positions would pass the budget.
    expect(e.kvCache + 2 * 16 * 256 * 512 * 2).toBeGreaterThan(Math.max(e.weights, GiB));
    expect(n).toBeGreaterThanOrEqual(MIN_DEFAULT_SEQ_LEN);
  });

  it('is never below 4,096 when that fits the buffer limits, and follows those limits below it', () => {
    const { file, config } = preset('8b');
    // 64 sequences: the budget alone would allow about 550 positions; 4,096 still fits one binding.
    expect(defaultGpuMaxSeqLen(file, config, { maxBatch: 64, limits: bigLimits })).toBe(4096);
    // A 128 MiB binding (WebGPU's minimum) holds 128 MiB / (4 × 1024 × 2) = 16,384 positions of one
    // layer's K for 4 sequences; for 64 sequences only 1,024.
    const small = { maxBufferSize: 256 << 20, maxStorageBufferBindingSize: 128 << 20 };
    expect(defaultGpuMaxSeqLen(file, config, { maxBatch: 4, limits: small })).toBe(8192);
    expect(defaultGpuMaxSeqLen(file, config, { maxBatch: 64, limits: small })).toBe(1024);
  });

  it('an explicit maxSeqLen wins, checked against the model', () => {
    const { file, config } = preset('8b');
    expect(estimateGpuMemory(file, config, { maxSeqLen: 100 }).maxSeqLen).toBe(100);
    expect(() => estimateGpuMemory(file, config, { maxSeqLen: 9000 })).toThrow(/max sequence length/);
  });
});

// The estimate against the buffers a real load creates (part by part, counted at the API) is checked
// in gpu/cost.test.ts, on the model that test loads anyway (one load per file on SwiftShader).

describe('prefill chunk (rows per command buffer)', () => {
  const chunkOf = (
    name: string,
    opts: { maxBatch?: number; maxSeqLen?: number; limits?: typeof bigLimits } = {},
  ) => {
    const { file, config } = preset(name);
    const maxBatch = opts.maxBatch ?? 4;
    const maxSeqLen = opts.maxSeqLen ?? 2048;
    const rows = prefillChunkTokens(config, {
      maxBatch,
      maxSeqLen,
      weightBytes: gpuWeightBytes(file),
      limits: opts.limits,
    });
    return {
      rows,
      config,
      file,
      e: estimateGpuMemory(file, config, { maxBatch, maxSeqLen, limits: opts.limits }),
    };
  };

  it('is 256 rows on the 8B and, by linear-layer FLOPs, at most as much work on smaller shapes', () => {
    const eight = chunkOf('8b');
    expect(eight.rows).toBe(PREFILL_CHUNK_8B);
    const budget = PREFILL_CHUNK_8B * linearFlopsPerToken(eight.config);
    for (const name of ['3b', '1b', 'tiny']) {
      const { rows, config } = chunkOf(name);
      expect(rows, name).toBeGreaterThan(256); // fewer FLOPs per row: more rows per chunk
      expect(rows % 64, name).toBe(0);
      expect(rows * linearFlopsPerToken(config), name).toBeLessThanOrEqual(budget);
    }
    expect(chunkOf('3b').rows).toBe(576); // ⌊633.9⌋ cut at 64
  });

  it('keeps activations within 4% of the weights (or the 8B chunk’s), within a step’s rows and the binding limit', () => {
    // The 1B's FLOPs would allow 1,792 rows; its activations at 448 stay ≤ max(4% of 0.76 GB, 33.6 MB).
    const one = chunkOf('1b');
    expect(one.rows).toBe(448);
    expect(one.rows * activationBytesPerRow(one.config)).toBeLessThanOrEqual(
      Math.max(ACTIVATION_SHARE * one.e.weights, ACTIVATION_FLOOR),
    );
    // The estimate counts exactly the activations of that chunk (plus the per-sequence buffers).
    const withRows = estimateGpuMemory(one.file, one.config, {
      maxBatch: 4,
      maxSeqLen: 4096,
      maxTokens: one.rows,
    });
    expect(one.e.activations).toBe(withRows.activations);
    expect(chunkOf('tiny').rows).toBe(MAX_PREFILL_CHUNK);
    expect(chunkOf('tiny', { maxBatch: 1, maxSeqLen: 100 }).rows).toBe(64); // ≤ 100 rows, cut at 64
    expect(chunkOf('tiny', { maxBatch: 1, maxSeqLen: 50 }).rows).toBe(50);
    // A small binding limit: the widest activation buffer [rows, F] f32 must bind (8B: F = 14,336).
    const small = { maxBufferSize: 8 << 20, maxStorageBufferBindingSize: 8 << 20 };
    expect(chunkOf('8b', { limits: small }).rows).toBe(128); // ⌊8 MiB / 57,344 B⌋ = 146 → 128
  });
});
