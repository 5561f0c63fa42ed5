/**
 * The counting wrapper of `--cost` (cost.ts): exact counts on a hand-made compute pass, and the
 * model's per-decode-token and per-prefill-chunk costs on a small model (Dawn on SwiftShader).
 * The model's per-layer dispatch counts are exact, so any change to the forward pass shows here;
 * issue 8's budget holds: ≤ 6 per layer + 6 per decode token, one submit, one map.
 */
import { prefillKvBytesRead } from './attention';
import { describe, expect, it } from 'vitest';
import { llamaConfigFromGguf } from '../gguf/config';
import { readGguf } from '../gguf/reader';
import { GgmlType } from '../gguf/types';
import { MemorySource } from '../source';
import { classifyBuffer, CostCounter, countingContext } from './cost';
import { FEEDBACK_TOKEN } from '../generation';
import { GpuModel } from './model';
import { makeSmallLlama } from './check/test-model';
import { createTestContext } from './check/testing';
import { estimateGpuMemory, memoryPart } from '../memory';

// Adds w + k to the first n values of x: one storage buffer of each category and a uniform.
const PROBE = /* wgsl */ `
@group(0) @binding(0) var<storage, read> w: array<f32>;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<uniform> n: vec4<u32>;
@compute @workgroup_size(16) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < n.x) { x[g.x] = x[g.x] + w[g.x] + k[g.x]; }
}`;

const STORAGE = 0x80;
const COPY_SRC = 0x04;
const COPY_DST = 0x08;
const UNIFORM = 0x40;
const MAP_READ = 0x01;

describe('CostCounter', () => {
  it('classifies the engine buffers by label', () => {
    expect(classifyBuffer('blk.3.attn_qkv', STORAGE | COPY_DST)).toBe('weights');
    expect(classifyBuffer('blk.3.attn_qkv[1]', STORAGE | COPY_DST)).toBe('weights');
    expect(classifyBuffer('blk.0.attn_norm.weight', STORAGE | COPY_SRC | COPY_DST)).toBe('weights');
    expect(classifyBuffer('token_embd.weight', STORAGE | COPY_DST)).toBe('weights');
    expect(classifyBuffer('output.weight[0]', STORAGE | COPY_DST)).toBe('weights');
    expect(classifyBuffer('output_norm.weight', STORAGE)).toBe('weights');
    expect(classifyBuffer('blk.12.k_cache', STORAGE)).toBe('kv');
    expect(classifyBuffer('blk.12.v_cache', STORAGE)).toBe('kv');
    expect(classifyBuffer('blk.0.qkv.meta[0]', UNIFORM | COPY_DST)).toBe('other');
    expect(classifyBuffer('rope-table', STORAGE)).toBe('other');
    expect(classifyBuffer('fusion-consts', STORAGE)).toBe('other');
    for (const a of ['x', 'xb', 'qkv', 'att', 'hb', 'partial', 'logits', 'sampled', 'tokens']) {
      expect(classifyBuffer(a, STORAGE | COPY_SRC | COPY_DST)).toBe('activations');
    }
  });

  it('counts dispatches, passes, submits, writes, copies, maps and bound bytes exactly', async () => {
    const { device: real } = await createTestContext();
    const counter = new CostCounter(real);
    const device = counter.device;
    const buf = (label: string, size: number, usage: number) => device.createBuffer({ label, size, usage });
    const w = buf('blk.0.attn_q.weight', 256, STORAGE | COPY_DST);
    const x = buf('x', 128, STORAGE | COPY_SRC | COPY_DST);
    const k = buf('blk.0.k_cache', 64, STORAGE | COPY_DST);
    const n = buf('params', 16, UNIFORM | COPY_DST);
    const readback = buf('readback', 64, MAP_READ | COPY_DST);
    const wv = Float32Array.from({ length: 64 }, (_, i) => i);
    const kv = Float32Array.from({ length: 16 }, (_, i) => 100 * i);
    const x0 = Float32Array.from({ length: 32 }, () => 0.5);
    device.queue.writeBuffer(w, 0, wv);
    device.queue.writeBuffer(k, 0, kv);
    device.queue.writeBuffer(n, 0, new Uint32Array([16, 0, 0, 0]));
    device.queue.writeBuffer(x, 0, x0);
    const pipeline = device.createComputePipeline({
      label: 'probe',
      layout: 'auto',
      compute: { module: device.createShaderModule({ code: PROBE }), entryPoint: 'main' },
    });
    const group = (label: string) =>
      device.createBindGroup({
        label,
        layout: pipeline.getBindGroupLayout(0),
        entries: [
          { binding: 0, resource: { buffer: w } }, // 256 weight bytes
          { binding: 1, resource: { buffer: x, offset: 0, size: 64 } }, // 64 activation bytes
          { binding: 2, resource: { buffer: k } }, // 64 KV bytes
          { binding: 3, resource: { buffer: n } }, // 16 other
        ],
      });
    const layerGroup = group('blk.0.probe');
    const globalGroup = group('head');
    // Uploads made while setting up are not part of what is measured.
    counter.reset();

    const enc = device.createCommandEncoder();
    let pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, layerGroup);
    pass.dispatchWorkgroups(1);
    pass.dispatchWorkgroups(1);
    pass.setBindGroup(0, globalGroup);
    pass.dispatchWorkgroups(1);
    pass.end();
    pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, layerGroup);
    pass.dispatchWorkgroups(1, 1, 1);
    pass.end();
    enc.copyBufferToBuffer(x, 0, readback, 0, 32);
    device.queue.submit([enc.finish()]);
    await readback.mapAsync(MAP_READ, 0, 32);
    const got = new Float32Array(readback.getMappedRange(0, 32).slice(0));
    readback.unmap();
    // Not counted while inactive.
    counter.active = false;
    device.queue.writeBuffer(x, 64, new Float32Array(4));
    counter.active = true;
    device.queue.writeBuffer(x, 64, new Uint32Array(8), 2, 3); // 3 elements = 12 bytes
    await readback.mapAsync(MAP_READ);
    readback.unmap();

    // The wrapper forwards to the real objects: 4 dispatches each added w + k.
    expect(Array.from(got)).toEqual(Array.from({ length: 8 }, (_, i) => 0.5 + 4 * (wv[i] + kv[i])));
    const c = counter.snapshot();
    const perDispatch = { weights: 256, activations: 64, kv: 64, other: 16 };
    expect(c).toMatchObject({
      dispatches: 4,
      computePasses: 2,
      submits: 1,
      commandBuffers: 1,
      copies: 1,
      copyBytes: 32,
      writes: 1,
      writeBytes: 12,
      maps: 2,
      mapBytes: 32 + 64,
      bound: { weights: 4 * 256, activations: 4 * 64, kv: 4 * 64, other: 4 * 16 },
      layers: { dispatches: 3, bound: { weights: 3 * 256, activations: 3 * 64, kv: 3 * 64, other: 3 * 16 } },
      layerIds: [0],
      global: { dispatches: 1, bound: perDispatch },
    });
    expect(c.byKernel).toEqual({ probe: { dispatches: 4, bound: c.bound } });
    counter.reset();
    expect(counter.snapshot()).toMatchObject({ dispatches: 0, writes: 0, maps: 0, bound: { weights: 0 } });
    for (const b of [w, x, k, n, readback]) b.destroy();
  });
});

describe('prefill attention K/V reads (counted from the kernels loops)', () => {
  it('the FlashAttention-2 prefill reads K/V once per query tile, not once per token row', () => {
    // 8B / 3B: 32 / 24 query heads, 8 KV heads, head_dim 128 → query tiles of 8 / 10 token rows.
    const prompt = Array.from({ length: 256 }, (_, pos) => ({ seq: 0, pos }));
    const kvRow = 8 * 2 * 128 * 2; // bytes of K + V per position (8 KV heads, f16)
    const b8 = prefillKvBytesRead(prompt, 32, 8, 128);
    expect(b8.perRow).toBe(((256 * 257) / 2) * kvRow);
    let flash = 0;
    for (let t0 = 0; t0 < 256; t0 += 8) flash += (t0 + 8) * kvRow; // tile t0 reads 0..t0 + 7
    expect(b8.flash).toBe(flash);
    expect(b8.perRow / b8.flash).toBeGreaterThan(7.5);
    const b3 = prefillKvBytesRead(prompt, 24, 8, 128);
    expect(b3.perRow / b3.flash).toBeGreaterThan(9);
    // A tile spanning two sequences streams each one's own range; head_dim 256 falls back.
    const mixed = [0, 1, 2, 0, 1].map((pos, i) => ({ seq: i < 3 ? 0 : 1, pos }));
    expect(prefillKvBytesRead(mixed, 4, 4, 64).flash).toBe((3 + 2) * 4 * 2 * 64 * 2);
    const wide = prefillKvBytesRead(prompt, 8, 1, 256);
    expect(wide.flash).toBe(wide.perRow);
  });
});

describe('GpuModel cost per step (counted at the WebGPU API)', () => {
  it('decode: one pass, one submit, one 16-byte map, 6 dispatches per layer + ≤ 6 (issue 8 budget); prefill', async () => {
    const nLayers = 2;
    const dim = 256;
    const bytes = makeSmallLlama({
      vocab: 300,
      dim,
      nLayers,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 256,
      bodyType: GgmlType.Q4_0,
      headType: GgmlType.Q6_K,
      tied: false,
      ropeFreqs: false,
      seed: 3,
    });
    const source = new MemorySource(bytes, 'cost-model');
    const file = await readGguf(source);
    const config = llamaConfigFromGguf(file);
    const { ctx, counter } = countingContext(await createTestContext());
    const [maxBatch, maxSeqLen, maxTokens] = [1, 32, 24];
    const model = await GpuModel.load(ctx, source, file, config, { maxBatch, maxSeqLen, maxTokens });
    try {
      model.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 1 });
      const prompt = [5, 17, 42, 99, 250, 3];
      counter.reset();
      let [next] = await model.step([prompt]);
      const prefill = counter.snapshot();
      const first = next;
      const steps = 3;
      const plain: number[] = [];
      counter.reset();
      for (let i = 0; i < steps; i++) {
        [next] = await model.step([[next]]);
        plain.push(next);
      }
      const decode = counter.snapshot();

      // The same decode with the sampled ids fed back on the GPU, each step submitted before the
      // previous one's id is read (what generate() does with this runner): the same ids.
      model.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 1 });
      await model.step([prompt]);
      const queued = [model.step([[first]])];
      for (let i = 1; i < steps; i++) {
        queued.push(model.step([[FEEDBACK_TOKEN]]));
        await queued[i - 1];
      }
      expect((await Promise.all(queued)).map(([t]) => t)).toEqual(plain);

      // A prefill chunk past the mat-vec (20 rows > 8): the GEMM takes the same fusions.
      model.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 1 });
      counter.reset();
      await model.step([Array.from({ length: 20 }, (_, i) => (7 * i + 3) % 300)]);
      const chunk = counter.snapshot();

      // The forward pass (model.ts encodeForward), every weight in one buffer part. Steps of ≤ 8
      // rows (decode, and this 6-token prompt) fuse RMSNorm into the integer mat-vecs and RoPE + the
      // KV write into QKV's: per layer qkv, [attention_split + attention_reduce | attention_prefill],
      // wo, gate_up, down; once: embedding, gather, output (output_norm fused), sampling.
      // Issue 8's budget: ≤ 6 per layer + 6 per decode token.
      expect(decode.layers.dispatches).toBe(steps * 6 * nLayers);
      expect(decode.global.dispatches).toBeLessThanOrEqual(steps * 6);
      expect(decode.dispatches).toBeLessThanOrEqual(steps * (6 * nLayers + 6));
      expect(decode.layerIds.sort()).toEqual([0, 1]);
      // Issue 9's budget for a prefill chunk: ≤ 6 per layer + 6 (here 5 per layer + 5).
      for (const c of [prefill, chunk]) {
        expect(c.layers.dispatches).toBe(5 * nLayers);
        expect(c.global.dispatches).toBe(decode.global.dispatches / steps);
        expect(c.dispatches).toBeLessThanOrEqual(6 * nLayers + 6);
        expect(c).toMatchObject({ computePasses: 1, submits: 1, maps: 1 });
      }
      expect(Object.keys(chunk.byKernel).some((k) => k.endsWith('.matmul'))).toBe(true);
      expect(decode).toMatchObject({
        computePasses: steps,
        submits: steps,
        commandBuffers: steps,
        maps: steps,
        mapBytes: steps * 16, // the u32 sampled id, in a 16-byte readback buffer
        writes: steps * 5, // the per-step upload, only the regions used:
      });
      // 16 (token params) + 16 (sampling params) + 4 (the token) + 8 (its seq, pos) + 16 (the
      // sequence's last row, length and draw) = 60 bytes per decode token, whatever maxTokens is.
      expect(decode.writeBytes).toBe(steps * 60);

      // Every weight matrix is bound once per step, whole or as its sections (the fused mat-vecs
      // read the 2L + 1 norm vectors from 'fusion-consts', beside the rope table); both KV caches
      // of every layer twice (the QKV mat-vec writes them, attention reads them).
      const sizes = (cat: string) =>
        counter
          .created()
          .filter((b) => b.category === cat)
          .reduce((a, b) => a + b.size, 0);
      const weightBuffers = counter.created().filter((b) => b.category === 'weights').length;
      expect(weightBuffers).toBe(1 + 4 * nLayers + 2 * nLayers + 1 + 1); // embd, matrices, norms, output
      for (const [c, n] of [
        [prefill, 1],
        [decode, steps],
      ] as const) {
        const normVectors = (2 * nLayers + 1) * dim * 4;
        expect(c.bound.weights).toBeLessThanOrEqual(n * (sizes('weights') - normVectors));
        expect(c.bound.weights).toBeGreaterThan(0.99 * n * (sizes('weights') - normVectors));
        expect(c.bound.kv).toBe(n * 2 * sizes('kv'));
      }
      expect(counter.created().filter((b) => b.category === 'kv').length).toBe(2 * nLayers);
      expect(decode.bound.activations).toBeGreaterThan(0);
      expect(next).toBeGreaterThanOrEqual(0);

      // memory.ts's estimate is what the load allocated, part by part (the sum of live buffers).
      const estimate = estimateGpuMemory(file, config, {
        maxBatch,
        maxSeqLen,
        maxTokens,
        limits: ctx.limits,
      });
      const parts = { weights: 0, kvCache: 0, activations: 0, scratch: 0 };
      for (const b of counter.created()) if (!b.destroyed) parts[memoryPart(b.label, b.usage)] += b.size;
      expect(parts.kvCache).toBe(estimate.kvCache);
      expect(parts.activations).toBe(estimate.activations);
      // Scratch counts the kernels' parameter uniforms approximately (64 bytes per mat-vec).
      expect(Math.abs(parts.scratch - estimate.scratch)).toBeLessThanOrEqual(0.05 * estimate.scratch);
      // Concatenated matrices (QKV, gate+up) share one alignment pad: within 256 bytes per tensor.
      expect(Math.abs(parts.weights - estimate.weights)).toBeLessThan(256 * file.tensors.length);
      const { liveBytes, peakBytes } = counter.memory();
      expect(liveBytes).toBe(parts.weights + parts.kvCache + parts.activations + parts.scratch);
      expect(peakBytes).toBeGreaterThanOrEqual(liveBytes);
    } finally {
      model.dispose();
    }
    // dispose() frees every buffer the load made (the Linears' and the embedding's per-part
    // uniforms included) but the device's shared fusion placeholders (1 KiB, cached per device).
    const left = counter.created().filter((b) => !b.destroyed);
    expect(left.map((b) => b.label).sort()).toEqual(['fusion-placeholder-ro', 'fusion-placeholder-rw']);
    expect(counter.memory().liveBytes).toBe(left.reduce((a, b) => a + b.size, 0));

    // Loading and disposing twice more returns the live GPU bytes to that baseline every time.
    const baseline = counter.memory().liveBytes;
    for (let i = 0; i < 2; i++) {
      const again = await GpuModel.load(ctx, source, file, config, { maxBatch, maxSeqLen, maxTokens });
      expect(counter.memory().liveBytes).toBeGreaterThan(baseline);
      again.dispose();
      expect(counter.memory().liveBytes).toBe(baseline);
    }
  });

  it('a Q4_K_M mix keeps the fused decode QKV: q4_K q, k and q6_K v in one dispatch per part (7 in that layer, not 9)', {
    timeout: 300_000, // compiles the q4_K and q6_K pipelines (SwiftShader: tens of seconds)
  }, async () => {
    const bytes = makeSmallLlama({
      vocab: 300,
      dim: 256,
      nLayers: 1,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 256,
      bodyType: GgmlType.Q4_K,
      headType: GgmlType.Q6_K,
      tied: false,
      ropeFreqs: false,
      seed: 8,
      preset: 'Q4_K_M', // one layer: a "more bits" layer (q6_K attn_v and ffn_down)
    });
    const source = new MemorySource(bytes, 'q4_k_m-mix');
    const file = await readGguf(source);
    const config = llamaConfigFromGguf(file);
    const { ctx, counter } = countingContext(await createTestContext());
    const model = await GpuModel.load(ctx, source, file, config, { maxBatch: 1, maxSeqLen: 8, maxTokens: 8 });
    try {
      model.reset(1, { temperature: 0, topP: 1, topK: 0, seed: 1 });
      const [next] = await model.step([[5, 17]]);
      counter.reset();
      await model.step([[next]]);
      const decode = counter.snapshot();
      // qkv ×2 (two parts: [q; k] q4_K, v q6_K; each its own fused mat-vec), attention_split,
      // attention_reduce, wo, gate_up, down. Unfused it would be attn_norm, 2 mat-vecs, rope: 9.
      expect(decode.layers.dispatches).toBe(7);
      // No separate RMSNorm or RoPE kernel ran (the head fuses output_norm too).
      expect(Object.keys(decode.byKernel).filter((k) => /rope|rmsnorm/.test(k))).toEqual([]);
      expect(Object.keys(decode.byKernel).some((k) => k.startsWith('linear_q6_k'))).toBe(true);
    } finally {
      model.dispose();
    }
  });
});
