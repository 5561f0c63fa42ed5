/**
 * The f16 flash prefill (attention_f16.ts): its self-check passes and rejects deliberate bugs —
 * with real f16 arithmetic where the device offers shader-f16, else (SwiftShader here) the same
 * text with `half` = f32, which checks the logic but not the rounding — and a model asked for f16
 * on a device without shader-f16 is refused before anything is uploaded.
 */
import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import { llamaConfigFromGguf } from '../gguf/config';
import { readGguf } from '../gguf/reader';
import { GgmlType } from '../gguf/types';
import { MemorySource } from '../source';
import { attentionF16Spec, F16_PRELUDE, F32_PRELUDE, f16SourceFor } from './attention_f16';
import { makeSmallLlama } from './check/test-model';
import { createTestContext, withValidation } from './check/testing';
import { GpuModel } from './model';

/** The f16 entry point comes last in the source (attention.wgsl's own flash prefill before it). */
function replaceLast(s: string, from: string, to: string): string {
  const at = s.lastIndexOf(from);
  return at < 0 ? s : s.slice(0, at) + to + s.slice(at + from.length);
}

describe('attention_f16 (prefill_flash_f16)', () => {
  it('compiles as f16 only where the device has shader-f16; the f32 stand-in is the same text', async () => {
    const { device, features } = await createTestContext();
    const { source, emulated } = f16SourceFor(device, attentionF16Spec.source);
    expect(emulated).toBe(!features.shaderF16);
    expect(source.startsWith(emulated ? F32_PRELUDE : F16_PRELUDE)).toBe(true);
    expect(source.slice((emulated ? F32_PRELUDE : F16_PRELUDE).length)).toBe(
      attentionF16Spec.source.slice(F16_PRELUDE.length),
    );
  });

  it('passes its self-check (f16 tolerance 5e-3 of max |ref|)', async () => {
    const { device } = await createTestContext();
    const r = await withValidation(device, () => attentionF16Spec.check(device, attentionF16Spec.source));
    expect(r.ok, r.detail).toBe(true);
    expect(r.maxRelError).toBeLessThanOrEqual(5e-3);
  });

  const broken: [string, (s: string) => string][] = [
    ['not causal', (s) => replaceLast(s, 'let seen = p < n && base + p <= my_pos;', 'let seen = p < n;')],
    [
      'q not scaled by 1/sqrt(head_dim)',
      (s) => s.replace('qkv[q_off + 2u * w + 1u]) * scale);', 'qkv[q_off + 2u * w + 1u]));'),
    ],
    [
      'the tile sum not rescaled into the output',
      (s) => s.replace('o[w] = o[w] * corr + vec2<f32>(a);', 'o[w] = o[w] + vec2<f32>(a);'),
    ],
    [
      "V's f16 halves swapped",
      (s) =>
        s.replace(
          'a += half(e[p]) * half2_of(fa_kv[(p * FA_MAX_QW + w) * 4u + c]);',
          'a += half(e[p]) * half2_of(fa_kv[(p * FA_MAX_QW + w) * 4u + c]).yx;',
        ),
    ],
  ];
  for (const [what, mutate] of broken) {
    it(`its check rejects a kernel with a bug: ${what}`, async () => {
      const { device } = await createTestContext();
      const src = mutate(attentionF16Spec.source);
      expect(src).not.toBe(attentionF16Spec.source);
      const r = await withValidation(device, () => attentionF16Spec.check(device, src));
      expect(r.ok).toBe(false);
      expect(r.detail).toMatch(/expected/);
    });
  }

  it('GpuModel.load with f16 on a device without shader-f16 is refused (gpu-limits)', async (ctx) => {
    const gpu = await createTestContext();
    if (gpu.features.shaderF16) ctx.skip();
    const bytes = makeSmallLlama({
      vocab: 64,
      nLayers: 1,
      seed: 3,
      dim: 64,
      nHeads: 4,
      nKvHeads: 2,
      ffnDim: 64,
      bodyType: GgmlType.F32,
      headType: GgmlType.F32,
      tied: true,
      ropeFreqs: false,
    });
    const source = new MemorySource(bytes, 'tiny');
    const file = await readGguf(source);
    const err = await GpuModel.load(gpu, source, file, llamaConfigFromGguf(file), { f16: true }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineError);
    expect((err as EngineError).code).toBe('gpu-limits');
    expect((err as EngineError).message).toMatch(/shader-f16.*load without f16/);
  });
});
