/**
 * `attention_f16`: the FlashAttention-2 prefill with packed f16 arithmetic (shaders/attention_f16.wgsl,
 * appended to attention.wgsl) for adapters that offer `shader-f16`; opt-in (`f16` load option,
 * `--f16` on the CLI and the bench), the f32 `prefill_flash` stays the default. Its self-check runs
 * the real f16 kernel where the device has `shader-f16`; elsewhere (SwiftShader here) the same text
 * with `half` = f32 (F32_PRELUDE), which checks its logic — tiles, masks, the online softmax —
 * but not its rounding.
 *
 * Tolerance 5e-3 of max |ref|: simulating the kernel's f16 roundings on the CPU (q · 1/√Dh to f16,
 * each product and each word's two-product sum rounded to f16, a tile's Σ e·v summed in f16)
 * over the self-check's shapes and an 8B-shaped 512-position case gives at most 1.2e-3 (docs/kernels.md);
 * 5e-3 leaves room for a device that fuses or orders the f16 operations differently. A real
 * mistake is far above it (the mutants in attention_f16.test.ts: 3e-2 and more).
 */
import attentionSource from '../../../shaders/attention.wgsl?raw';
import flashF16Source from '../../../shaders/attention_f16.wgsl?raw';
import {
  ATTENTION_CASES,
  type AttentionCase,
  attentionQuickCasesFor,
  checkAttentionCases,
  flashPrefillTokens,
} from './attention';
import type { CheckResult, KernelSpec, ModelShape } from './check/registry';

/** What a shader-f16 device compiles: f16 enabled, `half` = f16, cache words reinterpreted. */
export const F16_PRELUDE =
  'enable f16;\nalias half = f16;\nfn half2_of(w: u32) -> vec2<half> { return bitcast<vec2<f16>>(w); }\n';
/** The check's stand-in where the device lacks shader-f16: the same text in f32. */
export const F32_PRELUDE =
  'alias half = f32;\nfn half2_of(w: u32) -> vec2<half> { return unpack2x16float(w); }\n';

export const ATTENTION_F16_ENTRY = 'prefill_flash_f16';
export const F16_TOLERANCE = 5e-3;

/** attention.wgsl + the f16 entry point behind the f16 prelude: the registered source. */
export const attentionF16Source = `${F16_PRELUDE}${attentionSource}\n${flashF16Source}`;

/**
 * The source to compile on `device`: as given where it has shader-f16; else, when it starts with
 * the f16 prelude, that prelude swapped for the f32 one (checks only: the model refuses `f16`
 * without the feature).
 */
export function f16SourceFor(device: GPUDevice, source: string): { source: string; emulated: boolean } {
  if (device.features.has('shader-f16') || !source.startsWith(F16_PRELUDE))
    return { source, emulated: false };
  return { source: F32_PRELUDE + source.slice(F16_PRELUDE.length), emulated: true };
}

/**
 * The attention check's prompt-chunk cases (query tiles of 4, 8, 10 and 16 rows, partial tiles,
 * two sequences in a tile, cached prefixes), the G 2 / head_dim 128 one first: it fails every
 * mutant in attention_f16.test.ts, so a wrong kernel is rejected after one compile.
 */
export const ATTENTION_F16_CASES: readonly AttentionCase[] = (() => {
  const chunks = ATTENTION_CASES.filter((c) => c.runs && flashPrefillTokens(c.H, c.Hkv, c.Dh) > 0);
  const first = chunks.filter((c) => c.H / c.Hkv === 2 && c.Dh === 128);
  return [...first, ...chunks.filter((c) => !first.includes(c))];
})();

export function checkAttentionF16(
  device: GPUDevice,
  source: string,
  cases: readonly AttentionCase[],
  seed: number,
): Promise<CheckResult> {
  const { source: compiled } = f16SourceFor(device, source);
  return checkAttentionCases(
    device,
    compiled,
    cases,
    seed,
    { flash: ATTENTION_F16_ENTRY, flashOnly: true },
    F16_TOLERANCE,
  );
}

export const attentionF16Spec: KernelSpec = {
  name: 'attention_f16',
  source: attentionF16Source,
  check: (device, source) => checkAttentionF16(device, source, ATTENTION_F16_CASES, 0x5eed16 ^ Date.now()),
  quickCheck: (device, source, shape?: ModelShape) =>
    checkAttentionF16(
      device,
      source,
      // At a model's shape: its prefill case, where the flash prefill applies (else f16 is unused).
      shape
        ? attentionQuickCasesFor(shape).filter(
            (c) => c.splitLen === 0 && flashPrefillTokens(c.H, c.Hkv, c.Dh) > 0,
          )
        : [ATTENTION_F16_CASES[0]],
      0x5eed16 ^ Date.now(),
    ),
};
