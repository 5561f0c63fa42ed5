/**
 * Weight layouts, linear and embedding kernels on Dawn (SwiftShader here). Each kernel's own
 * self-check (the one --custom-ops-path runs) covers every epilogue, both paths and awkward sizes;
 * the cases below add the row-split path, the load-time encodings, concatenation and error paths.
 */
import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import { GgmlType, typeName } from '../gguf/types';
import { quantize } from '../quant/quantize';
import { dequantize, f16ToF32 } from '../reference/ops';
import { checkEmbedding, EMBEDDING_KERNELS } from './embedding';
import {
  casesFor,
  checkLinear,
  LINEAR_KERNELS,
  Linear,
  linearKernelName,
  matvecThreadsPerRow,
  randomWeight,
  referenceLinear,
  usesIntegerDot,
} from './linear';
import { benchLinear } from './linear-bench';
import { KernelRegistry } from './check/registry';
import {
  createStorage,
  createTestContext,
  createUniform,
  makeRng,
  poison,
  randomFloats,
  readF32,
  relError,
  withValidation,
} from './check/testing';
import { type GpuWeight, repackRows, streamConcatenated, uploadConcatenated, uploadWeight } from './weights';

const TYPES = [
  GgmlType.Q4_0,
  GgmlType.Q8_0,
  GgmlType.Q6_K,
  GgmlType.Q4_1,
  GgmlType.Q5_0,
  GgmlType.Q5_1,
  GgmlType.IQ4_NL,
  GgmlType.IQ4_XS,
  GgmlType.F16,
  GgmlType.BF16,
  GgmlType.F32,
];

function spec(kernels: typeof LINEAR_KERNELS, name: string) {
  const s = kernels.find((k) => k.name === name);
  if (!s) throw new Error(`no kernel ${name}`);
  return s;
}

describe('linear kernels (self-check: every epilogue, both paths, awkward sizes)', () => {
  for (const type of TYPES) {
    const name = linearKernelName(type);
    it(name, async () => {
      const { device } = await createTestContext();
      const s = spec(LINEAR_KERNELS, name);
      const r = await withValidation(device, () => s.check(device, s.source));
      expect(r.ok, r.detail).toBe(true);
      // The integer types may flip one 8-bit activation rounding (the check's per-case slack):
      // with 70 × 1056 activations in the GEMM case one flip is likely, so only r.ok bounds them.
      if (!usesIntegerDot(type)) expect(r.maxRelError, r.detail).toBeLessThan(1e-4);
    });
  }
});

/** y = W·x for one token through Linear (poisoned y first), read back. */
async function oneTokenLinear(
  ctx: Awaited<ReturnType<typeof createTestContext>>,
  registry: KernelRegistry,
  w: GpuWeight,
  x: Float32Array,
  epilogue: 'store' | 'swiglu',
): Promise<Float32Array> {
  const { device } = ctx;
  const outCols = epilogue === 'swiglu' ? w.rows / 2 : w.rows;
  const yb = createStorage(device, outCols * 4, 'y');
  poison(device, yb);
  const io = { x: createStorage(device, x, 'x'), y: yb, params: createUniform(device, [1], 'params') };
  const linear = new Linear(ctx, registry, w, { ...io, maxTokens: 1 }, { epilogue });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  linear.encode(pass, 1);
  pass.end();
  device.queue.submit([enc.finish()]);
  return readF32(device, yb);
}

describe('mat-vec threads per row pair', () => {
  it('is the largest power of two ≤ the units per row, at most 32 (the self-checks run each size)', () => {
    const units = [1, 2, 3, 7, 8, 22, 32, 33, 128, 448];
    expect(units.map(matvecThreadsPerRow)).toEqual([1, 2, 2, 4, 8, 16, 32, 32, 32, 32]);
  });
});

describe('embedding kernels (repeated and out-of-order ids)', () => {
  for (const type of TYPES) {
    const name = `embedding_${linearKernelName(type).slice('linear_'.length)}`;
    it(name, async () => {
      const { device } = await createTestContext();
      const s = spec(EMBEDDING_KERNELS, name);
      const r = await withValidation(device, () => s.check(device, s.source));
      expect(r.ok, r.detail).toBe(true);
    });
  }
});

describe('weight upload', () => {
  it('takes no more GPU bytes than file bytes (≤ 1.01×, plus < 300 bytes of alignment per part)', async () => {
    const { device } = await createTestContext();
    const ctx = { device, limits: device.limits };
    const rng = makeRng(21);
    const ratios: Record<string, number> = {};
    for (const type of TYPES) {
      // A real model's row width (dim 4096: 128 units) and an 8B-like down-projection width.
      for (const [rows, cols, maxBindingSize] of [
        [24, 4096, undefined],
        [5, 14336, undefined],
        [37, 4096, 3], // split into about 3 parts
      ] as const) {
        const { bytes } = randomWeight(type, rows, cols, rng);
        const w = uploadWeight(ctx, 'bytes', type, bytes, rows, cols, {
          maxBindingSize: maxBindingSize && Math.ceil(bytes.byteLength / maxBindingSize),
        });
        const padding = 272 * w.parts.length; // quants section → 256-byte boundary, 16-byte placeholder
        expect(w.bytes, `${typeName(type)} ${rows}×${cols}`).toBeLessThanOrEqual(
          1.01 * bytes.byteLength + padding,
        );
        if (maxBindingSize) expect(w.parts.length).toBeGreaterThan(1);
        ratios[`${typeName(type)} ${rows}×${cols} in ${w.parts.length}`] = w.bytes / bytes.byteLength;
        for (const p of w.parts) p.buffer.destroy();
      }
    }
    // Quantized data take exactly the file's bytes apart from the alignment: q6_K's 210 per 256.
    const { bytes } = randomWeight(GgmlType.Q6_K, 64, 4096, rng);
    const w = uploadWeight(ctx, 'q6k', GgmlType.Q6_K, bytes, 64, 4096);
    expect(w.bytes - bytes.byteLength).toBeLessThan(256);
    for (const p of w.parts) p.buffer.destroy();
    console.log('GPU bytes / file bytes', ratios);
  });

  it('splits a tensor over the binding limit by rows; every part is dispatched', async () => {
    const { device } = await createTestContext();
    const q4 = spec(LINEAR_KERNELS, 'linear_q4_0');
    // 37 rows × 96 cols of q4_0 = 48 bytes of quants per row; 512-byte bindings hold 10 rows: 4 parts.
    const r = await withValidation(device, () =>
      checkLinear(device, q4.source, GgmlType.Q4_0, [
        { rows: 37, cols: 96, tokens: 1, epilogue: 'store', maxBindingSize: 512 },
        { rows: 37, cols: 96, tokens: 3, epilogue: 'accumulate', maxBindingSize: 512 },
        { rows: 37, cols: 96, tokens: 9, epilogue: 'store', maxBindingSize: 512 },
      ]),
    );
    expect(r.ok, r.detail).toBe(true);
    const e = await withValidation(device, () =>
      checkEmbedding(device, spec(EMBEDDING_KERNELS, 'embedding_q4_0').source, GgmlType.Q4_0, [
        { rows: 37, cols: 96, tokens: [36, 0, 11, 10, 9, 36, 20], nTokens: 7, maxBindingSize: 512 },
      ]),
    );
    expect(e.ok, e.detail).toBe(true);
    const { bytes } = randomWeight(GgmlType.Q4_0, 37, 96, makeRng(3));
    const w = uploadWeight({ device, limits: device.limits }, 'split', GgmlType.Q4_0, bytes, 37, 96, {
      maxBindingSize: 512,
    });
    expect(w.parts.map((p) => [p.rowStart, p.rows])).toEqual([
      [0, 10],
      [10, 10],
      [20, 10],
      [30, 7],
    ]);
    for (const p of w.parts) p.buffer.destroy();
  });

  it("encoding 'q4_0' re-quantizes f32/f16/bf16 and the 4/5-bit and IQ4 types exactly like the CPU quantizer", async () => {
    const { device } = await createTestContext();
    const q4 = spec(LINEAR_KERNELS, 'linear_q4_0');
    // runLinearCase's reference is dequantize(quantize(q4_0, the source values)).
    const r = await withValidation(device, () =>
      checkLinear(device, q4.source, GgmlType.Q4_0, [
        { rows: 17, cols: 96, tokens: 2, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.F32 },
        { rows: 5, cols: 64, tokens: 9, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.F16 },
        { rows: 6, cols: 32, tokens: 1, epilogue: 'swiglu', encoding: 'q4_0', sourceType: GgmlType.BF16 },
        // The 4/5-bit, IQ4 and q4_K/q5_K types are re-encoded too (issue 11), through their exact dequantizers.
        { rows: 5, cols: 64, tokens: 2, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.Q4_1 },
        { rows: 5, cols: 96, tokens: 1, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.Q5_0 },
        { rows: 3, cols: 32, tokens: 9, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.Q5_1 },
        { rows: 4, cols: 64, tokens: 1, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.IQ4_NL },
        { rows: 3, cols: 256, tokens: 2, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.IQ4_XS },
        { rows: 2, cols: 256, tokens: 1, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.Q4_K },
        { rows: 2, cols: 512, tokens: 1, epilogue: 'store', encoding: 'q4_0', sourceType: GgmlType.Q5_K },
      ]),
    );
    expect(r.ok, r.detail).toBe(true);
    // The repacked bytes themselves: nibbles and d's f16 bits verbatim, from the CPU quantizer's blocks.
    const x = randomFloats(2 * 64, makeRng(5));
    const file = quantize(GgmlType.Q4_0, x);
    const viaEncoding = repackRows(GgmlType.F32, GgmlType.Q4_0, new Uint8Array(x.buffer), 2, 64);
    const direct = repackRows(GgmlType.Q4_0, GgmlType.Q4_0, file, 2, 64);
    expect(viaEncoding.quants).toEqual(direct.quants);
    expect(viaEncoding.aux).toEqual(direct.aux);
    expect(direct.quants.subarray(16, 32)).toEqual(file.subarray(20, 36));
    expect(direct.aux[0].subarray(0, 4)).toEqual(Uint8Array.of(file[0], file[1], file[18], file[19]));
    // q8_0 and q6_K stay as they are under 'q4_0'.
    const { bytes } = randomWeight(GgmlType.Q8_0, 3, 32, makeRng(6));
    const w = uploadWeight({ device, limits: device.limits }, 'q8', GgmlType.Q8_0, bytes, 3, 32, {
      encoding: 'q4_0',
    });
    expect(w.type).toBe(GgmlType.Q8_0);
    w.parts[0].buffer.destroy();
  });

  it("encoding 'float32' dequantizes every type", async () => {
    const { device } = await createTestContext();
    const f32 = spec(LINEAR_KERNELS, 'linear_f32');
    const cases = [
      GgmlType.Q4_0,
      GgmlType.Q8_0,
      GgmlType.Q6_K,
      GgmlType.Q4_1,
      GgmlType.Q5_0,
      GgmlType.Q5_1,
      GgmlType.IQ4_NL,
      GgmlType.IQ4_XS,
      GgmlType.F16,
      GgmlType.BF16,
    ].map((sourceType) => ({
      rows: 9,
      cols: 256,
      tokens: sourceType === GgmlType.Q6_K ? 10 : 2,
      epilogue: 'store' as const,
      encoding: 'float32' as const,
      sourceType,
    }));
    const r = await withValidation(device, () => checkLinear(device, f32.source, GgmlType.F32, cases));
    expect(r.ok, r.detail).toBe(true);
  });

  it('uploadConcatenated stacks matrices row-wise (QKV, gate+up) into one weight', async () => {
    const ctx = await createTestContext();
    const { device } = ctx;
    const rng = makeRng(9);
    const cols = 64;
    const gate = randomWeight(GgmlType.Q4_0, 12, cols, rng);
    const up = randomWeight(GgmlType.Q4_0, 12, cols, rng);
    const registry = new KernelRegistry();
    for (const s of LINEAR_KERNELS) registry.register(s);
    const got = await withValidation(device, async () => {
      const w = uploadConcatenated(
        ctx,
        'ffn_gate_up',
        [
          { type: GgmlType.Q4_0, bytes: gate.bytes, rows: 12 },
          { type: GgmlType.Q4_0, bytes: up.bytes, rows: 12 },
        ],
        cols,
      );
      expect(w.rows).toBe(24);
      const x = randomFloats(cols, rng);
      const y = await oneTokenLinear(ctx, registry, w, x, 'swiglu');
      const W = new Float32Array(24 * cols);
      W.set(gate.values);
      W.set(up.values, 12 * cols);
      // q4_0 decodes with 8-bit activations (the integer mat-vec).
      return { y, ref: referenceLinear(W, x, new Float32Array(12), 24, cols, 1, 'swiglu', true) };
    });
    expect(relError(got.y, got.ref).maxRelError).toBeLessThan(1e-4);
  });

  it('streamConcatenated reads ≤ 4 MiB of rows at a time and uploads what uploadConcatenated does', async () => {
    const ctx = await createTestContext();
    const { device } = ctx;
    const rng = makeRng(21);
    const cols = 1024; // f32: 4 KiB per row, 1024 rows per 4 MiB slice
    const a = randomWeight(GgmlType.F32, 1500, cols, rng);
    const b = randomWeight(GgmlType.F32, 700, cols, rng);
    const rows = 2200;
    const reads: [string, number, number, number][] = [];
    const streamed = (name: string, bytes: Uint8Array, n: number) => ({
      type: GgmlType.F32,
      rows: n,
      read: async (row: number, k: number) => {
        const slice = bytes.slice(row * cols * 4, (row + k) * cols * 4);
        reads.push([name, row, k, slice.byteLength]);
        return slice;
      },
    });
    const registry = new KernelRegistry();
    for (const s of LINEAR_KERNELS) registry.register(s);
    const x = randomFloats(cols, rng);
    const run = (w: GpuWeight) => oneTokenLinear(ctx, registry, w, x, 'store');
    const got = await withValidation(device, async () => {
      const fromStream = await streamConcatenated(
        ctx,
        'stream',
        [streamed('a', a.bytes, 1500), streamed('b', b.bytes, 700)],
        cols,
      );
      const inMemory = uploadConcatenated(
        ctx,
        'memory',
        [
          { type: GgmlType.F32, bytes: a.bytes, rows: 1500 },
          { type: GgmlType.F32, bytes: b.bytes, rows: 700 },
        ],
        cols,
      );
      return { streamed: await run(fromStream), memory: await run(inMemory) };
    });
    // Slices in order, each ≤ 4 MiB, covering both matrices exactly once.
    expect(reads.map(([name, row, k]) => `${name}:${row}+${k}`)).toEqual([
      'a:0+1024',
      'a:1024+476',
      'b:0+700',
    ]);
    expect(Math.max(...reads.map((r) => r[3]))).toBeLessThanOrEqual(4 << 20);
    expect(got.streamed).toEqual(got.memory);
    const W = new Float32Array(rows * cols);
    W.set(a.values);
    W.set(b.values, 1500 * cols);
    const ref = referenceLinear(W, x, new Float32Array(rows), rows, cols, 1, 'store');
    expect(relError(got.streamed, ref).maxRelError).toBeLessThan(1e-4);
  });

  it('honours x/y offsets and folds workgroups past maxComputeWorkgroupsPerDimension', async () => {
    const ctx = await createTestContext();
    const { device } = ctx;
    const rng = makeRng(21);
    const rows = 129;
    const cols = 1024;
    const { bytes, values } = randomWeight(GgmlType.Q8_0, rows, cols, rng);
    const registry = new KernelRegistry();
    for (const s of LINEAR_KERNELS) registry.register(s);
    // 65 row pairs → 5 integer mat-vec workgroups of 4 groups × 4 pairs (32 units: 32 threads per
    // row pair); a limit of 2 per dimension gives a 2 × 3 grid. The mat-mat: 5 tiles → 2 × 3.
    const limits = {
      maxComputeWorkgroupsPerDimension: 2,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
    } as GPUSupportedLimits;
    const tokens = 2;
    const x = randomFloats(tokens * cols, rng);
    const got = await withValidation(device, async () => {
      const w = uploadWeight(ctx, 'folded', GgmlType.Q8_0, bytes, rows, cols);
      const xb = createStorage(device, 256 + x.byteLength, 'x');
      device.queue.writeBuffer(xb, 256, x);
      const yb = createStorage(device, 64 + tokens * rows * 4, 'y');
      poison(device, yb);
      const params = createUniform(device, [tokens], 'params');
      const io = { x: xb, y: yb, params, maxTokens: tokens, xOffset: 256, yOffset: 64 };
      const linear = new Linear({ device, limits }, registry, w, io);
      const out: Float32Array[] = [];
      for (const path of ['matvec', 'matmul'] as const) {
        poison(device, yb);
        const enc = device.createCommandEncoder();
        const pass = enc.beginComputePass();
        linear.encode(pass, tokens, path);
        pass.end();
        device.queue.submit([enc.finish()]);
        out.push(await readF32(device, yb));
      }
      return out;
    });
    // Both paths multiply 8-bit activations for q8_0.
    const ref = referenceLinear(values, x, new Float32Array(0), rows, cols, tokens, 'store', true);
    for (const y of got) {
      expect(y.subarray(0, 16).every(Number.isNaN)).toBe(true); // before yOffset: untouched
      expect(relError(y.subarray(16), ref).maxRelError).toBeLessThan(1e-4);
    }
  });

  it('rejects shapes the kernels cannot run, with what to do', async () => {
    const ctx = await createTestContext();
    const bytes = new Uint8Array(4 * 48);
    expect(() => uploadWeight(ctx, 'odd', GgmlType.F32, bytes, 1, 48)).toThrow(/multiple of 32/);
    expect(() => uploadWeight(ctx, 'short', GgmlType.F32, bytes, 2, 32)).toThrow(EngineError);
    expect(() => uploadWeight(ctx, 'q2', GgmlType.Q2_K, bytes, 1, 256)).toThrow(/q2_K has no GPU kernel/);
    expect(() =>
      uploadConcatenated(
        ctx,
        'mixed',
        [
          { type: GgmlType.F32, bytes, rows: 1 },
          { type: GgmlType.F16, bytes, rows: 1 },
        ],
        32,
      ),
    ).toThrow(/cannot concatenate f16 rows with f32/);
    const { bytes: q } = randomWeight(GgmlType.Q4_0, 8, 32, makeRng(1));
    const split = uploadWeight(ctx, 'gate_up', GgmlType.Q4_0, q, 8, 32, { maxBindingSize: 64 });
    const registry = new KernelRegistry();
    for (const s of LINEAR_KERNELS) registry.register(s);
    const io = {
      x: createStorage(ctx.device, 128, 'x'),
      y: createStorage(ctx.device, 64, 'y'),
      params: createUniform(ctx.device, [1], 'p'),
      maxTokens: 1,
    };
    expect(() => new Linear(ctx, registry, split, io, { epilogue: 'swiglu' })).toThrow(
      /SwiGLU weight must be one buffer/,
    );
    expect(() => new Linear(ctx, registry, split, { ...io, maxTokens: 4 })).toThrow(/x needs/);
  });
});

describe('self-checks catch wrong kernels (what --custom-ops-path relies on)', () => {
  it('a q4_0 decoder with the wrong zero point is rejected and names the failing case', async () => {
    const { device } = await createTestContext();
    const s = spec(LINEAR_KERNELS, 'linear_q4_0');
    // Nibbles offset by −7 instead of −8 where both integer paths decode them (mat-vec and GEMM;
    // the float load_unit is not used by q4_0 since prefill runs the integer GEMM).
    const broken = s.source.replaceAll('let s = v ^ 0x08080808u;', 'let s = v ^ 0x07070707u;');
    expect(broken).not.toBe(s.source);
    const registry = new KernelRegistry();
    for (const k of LINEAR_KERNELS) registry.register(k);
    const err = await registry.override(device, 'linear_q4_0', broken).catch((e) => e);
    expect(err).toBeInstanceOf(EngineError);
    expect(err.message).toMatch(/linear_q4_0 rows=\d+ cols=\d+ tokens=\d+ epilogue=\w+ path=(matvec|matmul)/);
  });

  // Each integer mat-vec's own self-check (the one --custom-ops-path runs) catches a wrong kernel.
  const integerMutants: [string, string, string, string][] = [
    // q4_0 nibbles offset by −7 instead of −8 (flip bit 3 of the wrong value).
    ['linear_q4_0', 'zero point', 'let s = v ^ 0x08080808u;', 'let s = v ^ 0x07070707u;'],
    // q4_0 multiplies by the first unit's activation scale, not its own.
    ['linear_q4_0', 'missing scale', 'unit_scale(row1, u)) * xd[ub];', 'unit_scale(row1, u)) * xd[0];'],
    // q8_0 dots each weight unit with the next activation unit.
    [
      'linear_q8_0',
      'off-by-one unit',
      'let xv = xq[8u * ub + 4u * h + i];',
      'let xv = xq[8u * ((ub + 1u) % CU) + 4u * h + i];',
    ],
    // q6_K forgets to sign-extend q − 32: negative weights turn positive.
    ['linear_q6_k', 'sign flip', 'return s | ((s & 0x20202020u) * 6u);', 'return s;'],
    // The prologue's chunks skip the last partial chunk's final unit.
    [
      'linear_q4_0',
      'short chunk',
      'let cu = min(CU, part.units - c0);',
      'let cu = min(CU, part.units - c0 - select(0u, 1u, c0 > 0u));',
    ],
    // Decode fusions: the RoPE rotation by −θ, the norm weight ignored, V stored into the K cache.
    [
      'linear_q4_0',
      'RoPE the wrong way',
      'o = vec2<f32>(v.x * cs.x - v.y * cs.y, v.x * cs.y + v.y * cs.x);',
      'o = vec2<f32>(v.x * cs.x + v.y * cs.y, v.y * cs.x - v.x * cs.y);',
    ],
    [
      'linear_q8_0',
      'norm weight ignored',
      'return v * scale * vec4<f32>(consts[o], consts[o + 1u], consts[o + 2u], consts[o + 3u]);',
      'return v * scale;',
    ],
    [
      'linear_q6_k',
      'V into the K cache',
      'v_cache[kv_pair_index(at.x, at.y, g - q_dim - kv_dim)] = pack2x16float(o);',
      'k_cache[kv_pair_index(at.x, at.y, g - q_dim - kv_dim)] = pack2x16float(o);',
    ],
    // The 4/5-bit and IQ4 types (issue 11): the m · Σx term, the fifth bit, the dm array, a level, the
    // 6-bit scale's offset.
    [
      'linear_q4_1',
      'min term dropped',
      'b.x * f32(nibble_dot(q1, ub)) + b.y * sx)',
      'b.x * f32(nibble_dot(q1, ub)))',
    ],
    ['linear_q5_0', 'fifth bit of the wrong element', '(hi >> (4u * h + i))', '(hi >> (4u * h))'],
    [
      'linear_q5_1',
      'dm read from the hi array',
      'scales[part.w_rows * part.units + row * part.units + u]',
      'scales[row * part.units + u]',
    ],
    ['linear_iq4_nl', 'level 12 off by one', '0x71594535u', '0x71594536u'],
    ['linear_iq4_xs', 'scale offset 31', 'f32(i32(ls) - 32)', 'f32(i32(ls) - 31)'],
  ];
  for (const [name, what, from, to] of integerMutants) {
    it(`${name}'s self-check rejects an integer mat-vec mutant: ${what}`, async () => {
      const { device } = await createTestContext();
      const s = spec(LINEAR_KERNELS, name);
      const broken = s.source.replace(from, to);
      expect(broken).not.toBe(s.source);
      const r = await withValidation(device, () => s.check(device, broken));
      expect(r.ok, r.detail).toBe(false);
      expect(r.detail).toMatch(/path=matvec/);
    });
  }

  // A QKV in several parts (a mixed-type Q4_K_M QKV: q4_K q, k + q6_K v): the mutant takes each
  // part's rows as rows of [q; k; v] from 0, so later parts rotate and store k and v rows as q.
  // Only the self-check's split case (the others have one part): seconds.
  it('linear_q4_k: the fused QKV split in parts catches a RoPE + KV epilogue that ignores row_start', async () => {
    const { device } = await createTestContext();
    const s = spec(LINEAR_KERNELS, 'linear_q4_k');
    const broken = s.source.replace('let g = part.row_start + r;', 'let g = r;');
    expect(broken).not.toBe(s.source);
    const split = casesFor(GgmlType.Q4_K, false).filter(
      (c) => c.fusion?.rope && c.maxBindingSize && c.tokens <= 8, // the mat-vec's (q4_K has a GEMM one too)
    );
    expect(split).toHaveLength(1);
    const r = await withValidation(device, () => checkLinear(device, broken, GgmlType.Q4_K, split));
    expect(r.ok, r.detail).toBe(false);
    expect(r.detail).toMatch(/path=matvec.*maxBindingSize/);
  });

  // Mutants of the integer prefill GEMM (linear_matmul_q8.wgsl and the decoders' GEMM half-units).
  const gemmMutants: [string, string, string, string][] = [
    ['linear_q4_0', 'one staging buffer', 'let buf = u % 2u;', 'let buf = 0u;'],
    [
      'linear_q6_k',
      'sub-scales swapped',
      'return vec2<f32>(select(s.s0, s.s1, h == 1u), 0.0);',
      'return vec2<f32>(select(s.s1, s.s0, h == 1u), 0.0);',
    ],
    [
      'linear_q8_0',
      'last token row of a tile dropped',
      'let t = tok0 + b + 16u * j;\n    if (t >= n_tok) {',
      'let t = tok0 + b + 16u * j;\n    if (t >= n_tok || b == 15u) {',
    ],
    [
      'linear_q4_0',
      'RMSNorm scale ignored',
      'v[i] = v[i] * gscale[tok] * vec4<f32>',
      'v[i] = v[i] * vec4<f32>',
    ],
    [
      'linear_q8_0',
      'RoPE pair swapped',
      'rope_kv_store(t, r, vec2<f32>(acc[2u * p][j], acc[2u * p + 1u][j]));',
      'rope_kv_store(t, r, vec2<f32>(acc[2u * p + 1u][j], acc[2u * p][j]));',
    ],
    ['linear_q6_k', 'part rows not offset by row_start', 'let g = part.row_start + r;', 'let g = r;'],
    // The half-unit decoders of the 4/5-bit and IQ4 types, and the GEMM's m · Σx term.
    [
      'linear_q4_1',
      'offset m dropped',
      'fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {\n  return unit_dm(row, u);',
      'fn unit_half_scale(row: u32, u: u32, h: u32) -> vec2<f32> {\n  return vec2<f32>(unit_dm(row, u).x, 0.0);',
    ],
    [
      'linear_q4_1',
      'Σx over half the unit',
      'for (var i = 0u; i < 8u; i++) {\n        sq +=',
      'for (var i = 0u; i < 4u; i++) {\n        sq +=',
    ],
    ['linear_q5_0', 'one word without −16', 'q5_to_i8(q.w)', 'q.w'],
    ['linear_q5_1', 'fifth bits of the wrong half', 'q5_bytes(lo, hi, h, 1u)', 'q5_bytes(lo, hi, 0u, 1u)'],
    ['linear_iq4_nl', 'one word without the level table', 'iq4_i8x4(n.w)', 'n.w'],
    [
      'linear_iq4_xs',
      "the neighbour sub-block's scale",
      'return vec2<f32>(unit_scale(row, u), 0.0);',
      'return vec2<f32>(unit_scale(row, u ^ 1u), 0.0);',
    ],
  ];
  for (const [name, what, from, to] of gemmMutants) {
    it(`${name}'s self-check rejects a prefill GEMM mutant: ${what}`, async () => {
      const { device } = await createTestContext();
      const s = spec(LINEAR_KERNELS, name);
      const broken = s.source.replace(from, to);
      expect(broken).not.toBe(s.source);
      // Only the self-check's GEMM cases (more tokens than the mat-vec takes): seconds, not a minute.
      const type = TYPES.find((t) => linearKernelName(t) === name)!;
      const gemmCases = casesFor(type, false).filter((c) => c.tokens > 8);
      expect(gemmCases.length).toBeGreaterThanOrEqual(3);
      const r = await withValidation(device, () => checkLinear(device, broken, type, gemmCases));
      expect(r.ok, r.detail).toBe(false);
      expect(r.detail).toMatch(/path=matmul/);
    });
  }

  it('an embedding that skips the last unit is rejected (poisoned output)', async () => {
    const { device } = await createTestContext();
    const s = spec(EMBEDDING_KERNELS, 'embedding_f16');
    const broken = s.source.replace('if (u >= part.units', 'if (u + 1u >= part.units');
    expect(broken).not.toBe(s.source);
    const r = await checkEmbedding(device, broken, GgmlType.F16);
    expect(r.ok).toBe(false);
    expect(r.detail).toMatch(/NaN/);
  });

  it('an accepted custom kernel replaces the built-in', async () => {
    const { device } = await createTestContext();
    const s = spec(LINEAR_KERNELS, 'linear_f32');
    const registry = new KernelRegistry();
    for (const k of LINEAR_KERNELS) registry.register(k);
    const custom = `// custom\n${s.source}`;
    const r = await registry.override(device, 'linear_f32', custom);
    expect(r.ok).toBe(true);
    expect(registry.source('linear_f32')).toBe(custom);
  });
});

it('q6_K repack keeps every value (GPU layout decoded on the CPU)', () => {
  const rows = 2;
  const units = 16; // 512 columns: two file blocks per row, one d word per row
  const { bytes, values } = randomWeight(GgmlType.Q6_K, rows, 32 * units, makeRng(11));
  const { quants, aux } = repackRows(GgmlType.Q6_K, GgmlType.Q6_K, bytes, rows, 32 * units);
  const [hiBytes, sc, dBytes] = aux;
  expect(quants.byteLength + hiBytes.byteLength + sc.byteLength + dBytes.byteLength).toBe(bytes.byteLength);
  const hi = new Uint32Array(hiBytes.buffer, hiBytes.byteOffset, hiBytes.byteLength / 4);
  const sc8 = new Int8Array(sc.buffer, sc.byteOffset, sc.byteLength);
  const d = new Uint16Array(dBytes.buffer, dBytes.byteOffset, dBytes.byteLength / 2);
  const out = new Float32Array(rows * units * 32);
  for (let idx = 0; idx < rows * units; idx++) {
    const [row, u] = [Math.floor(idx / units), idx % units];
    const dv = f16ToF32(d[2 * Math.ceil(units / 16) * row + Math.floor(u / 8)]);
    for (let e = 0; e < 32; e++) {
      const lo = (quants[idx * 16 + (e % 16)] >> (e < 16 ? 0 : 4)) & 0xf;
      const [h, i, j] = [e >> 4, (e >> 2) & 3, e & 3];
      const top = (hi[2 * idx + h] >>> (8 * j + 2 * i)) & 3;
      out[idx * 32 + e] = dv * sc8[2 * idx + h] * ((lo | (top << 4)) - 32);
    }
  }
  expect(out).toEqual(values);
  expect(values).toEqual(dequantize(GgmlType.Q6_K, bytes, rows * units * 32));
  expect(typeName(GgmlType.Q6_K)).toBe('q6_K');
});

it('q4_1, q5_0, q5_1, iq4_nl, iq4_xs repacks keep every value (GPU layouts decoded on the CPU)', () => {
  const rows = 3;
  const units = 16; // 512 columns: two iq4_xs blocks per row
  const levels = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];
  for (const type of [GgmlType.Q4_1, GgmlType.Q5_0, GgmlType.Q5_1, GgmlType.IQ4_NL, GgmlType.IQ4_XS]) {
    const { bytes, values } = randomWeight(type, rows, 32 * units, makeRng(12 + type));
    const { quants, aux } = repackRows(type, type, bytes, rows, 32 * units);
    // GPU bytes = file bytes (these row widths need no padding words).
    expect(quants.byteLength + aux.reduce((n, a) => n + a.byteLength, 0), typeName(type)).toBe(
      bytes.byteLength,
    );
    const words = aux.map((a) => new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength)));
    const half = (w: number, k: number) => f16ToF32((w >>> (16 * k)) & 0xffff);
    const out = new Float32Array(rows * units * 32);
    for (let idx = 0; idx < rows * units; idx++) {
      const [row, u] = [Math.floor(idx / units), idx % units];
      for (let e = 0; e < 32; e++) {
        const nibble = (quants[idx * 16 + (e % 16)] >> (e < 16 ? 0 : 4)) & 0xf;
        // Fifth bit of element 16h + 4i + j at bit 8j + 4h + i of the unit's hi word.
        const [h, i, j] = [e >> 4, (e >> 2) & 3, e & 3];
        const fifth = () => ((words[0][idx] >>> (8 * j + 4 * h + i)) & 1) << 4;
        let v: number;
        if (type === GgmlType.Q4_1) v = nibble * half(words[0][idx], 0) + half(words[0][idx], 1);
        else if (type === GgmlType.Q5_0)
          v = ((nibble | fifth()) - 16) * half(words[1][row * (units / 2) + (u >> 1)], u & 1);
        else if (type === GgmlType.Q5_1)
          v = (nibble | fifth()) * half(words[1][idx], 0) + half(words[1][idx], 1);
        else if (type === GgmlType.IQ4_NL)
          v = levels[nibble] * half(words[0][row * (units / 2) + (u >> 1)], u & 1);
        else {
          const [w0, w1] = [words[0][2 * (idx >> 3)], words[0][2 * (idx >> 3) + 1]];
          const ib = u % 8;
          const ls = ((w1 >>> (4 * ib)) & 0xf) | (((w0 >>> (16 + 2 * ib)) & 3) << 4);
          v = Math.fround(half(w0, 0) * (ls - 32)) * levels[nibble];
        }
        out[idx * 32 + e] = v;
      }
    }
    const signless = (a: Float32Array) => Array.from(a, (v) => v + 0); // −0 and 0 alike
    expect(signless(out), typeName(type)).toEqual(signless(values));
  }
});

it('benchLinear runs every path and reports the weight bytes (no speed claim on SwiftShader)', async () => {
  const ctx = await createTestContext();
  const registry = new KernelRegistry();
  for (const s of LINEAR_KERNELS) registry.register(s);
  for (const [tokens, path] of [
    [1, undefined],
    [1, 'matvec'],
    [9, undefined],
  ] as const) {
    const r = await withValidation(ctx.device, () =>
      benchLinear(ctx, registry, { type: GgmlType.Q4_0, rows: 64, cols: 128, tokens, iterations: 2, path }),
    );
    // q4_0's integer mat-vec has no subgroup variant.
    expect(r.path).toBe(path ?? (tokens > 8 ? 'matmul' : 'matvec'));
    expect(r.weightBytes).toBeGreaterThanOrEqual(64 * 128 * 0.5625); // the file's bytes
    expect(r.msPerCall).toBeGreaterThan(0);
    expect(Number.isFinite(r.weightGBps)).toBe(true);
  }
});
