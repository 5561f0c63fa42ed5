/**
 * The GPU memory estimate and the default context (memory.ts): the rule on the real Llama 3 shapes
 * (pure arithmetic), and the estimate against the buffers a load really creates, counted at the
 * WebGPU API (cost.ts), part by part, on a small model (Dawn on SwiftShader).
 */
import { describe, expect, it } from 'vitest';
import { presetHeader } from '../../scripts/bench/random-model';
import { defaultGpuMaxSeqLen, estimateGpuMemory, MIN_DEFAULT_SEQ_LEN } from './memory';

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
