/**
 * RoPE with Llama 3.1 `rope_freqs` at long positions (up to 131,071), in the CPU reference
 * (ops.rope) and in the GPU's table (ropeTable), against llama.cpp's formula as ggml computes it
 * (ggml_rope_cache_init: θ = p, multiplied by base^(−2/n_dims) once per pair in f32, each pair's
 * angle θ / freq_factor, cos/sin in f32). The factors apply at every position (llama.cpp has no
 * 8,192 switch; the factors themselves encode the original context). Ours computes the angle in
 * f64, so the two differ by llama.cpp's f32 rounding only: the check allows that and no more, and a
 * mutant (factors ignored, or applied only past 8,192) fails it.
 */
import { describe, expect, it } from 'vitest';
import { llama31RopeFactors } from '../../scripts/fixtures/make-model';
import { ropeTable } from './gpu/rope';
import { rope } from './reference/ops';

const f = Math.fround;
const HEAD_DIM = 64; // Llama 3.2 1B's head size: half the table of the 8B's 128
const BASE = 500000;
const FACTORS = llama31RopeFactors(HEAD_DIM, BASE);
const POSITIONS = [0, 1, 4095, 8191, 8192, 8193, 12345, 32768, 65537, 131071];

/** llama.cpp's angle of pair i at position p, with its f32 arithmetic. */
function llamaCppAngle(p: number, i: number, factors?: Float32Array): number {
  const thetaScale = f(BASE ** f(-2 / HEAD_DIM));
  let theta = f(p);
  for (let k = 0; k < i; k++) theta = f(theta * thetaScale);
  return f(theta / (factors ? factors[i] : 1));
}

/**
 * Largest |cos/sin difference| allowed at pair i: llama.cpp's angle carries i + 2 f32 roundings
 * (relative 2^−24 each) of a value up to |angle|, plus the f32 storage of cos/sin.
 */
const allowed = (angle: number, i: number) => (i + 3) * 2 ** -24 * Math.abs(angle) + 2 ** -22;

/** Pairs whose (cos, sin) in `table` ([pos][pair][cos, sin]) are further from llama.cpp's than allowed. */
function offPairs(table: (p: number, i: number) => [number, number], factors: Float32Array) {
  const off: string[] = [];
  for (const p of POSITIONS) {
    for (let i = 0; i < HEAD_DIM / 2; i++) {
      const a = llamaCppAngle(p, i, factors);
      const [c, s] = table(p, i);
      const tol = allowed(a, i);
      if (Math.abs(c - f(Math.cos(a))) > tol || Math.abs(s - f(Math.sin(a))) > tol)
        off.push(`pos ${p} pair ${i}`);
    }
  }
  return off;
}

/** (cos, sin) of pair i at position p as ops.rope applies them: rotate (1, 0) and read it back. */
function referenceRope(factors?: Float32Array) {
  return (p: number, i: number): [number, number] => {
    const v = new Float32Array(HEAD_DIM);
    v[2 * i] = 1;
    rope(v, 1, HEAD_DIM, p, BASE, factors);
    return [v[2 * i], v[2 * i + 1]];
  };
}

/** (cos, sin) from the GPU's table, built for positions up to 131,072. */
function gpuTable(factors?: Float32Array) {
  const maxSeq = POSITIONS[POSITIONS.length - 1] + 1;
  const t = ropeTable(maxSeq, HEAD_DIM, BASE, factors);
  const half = HEAD_DIM / 2;
  return (p: number, i: number): [number, number] => [t[2 * (p * half + i)], t[2 * (p * half + i) + 1]];
}

describe('RoPE with rope_freqs at long positions = llama.cpp (up to its f32 rounding)', () => {
  it('the factors are Llama 3.1’s: 1 for the fast pairs, 8 for the slow ones, smooth between', () => {
    expect(FACTORS[0]).toBe(1);
    expect(FACTORS[HEAD_DIM / 2 - 1]).toBe(8);
    expect([...FACTORS].some((x) => x > 1 && x < 8)).toBe(true);
  });

  it('CPU reference (ops.rope)', () => {
    expect(offPairs(referenceRope(FACTORS), FACTORS)).toEqual([]);
  });

  it('GPU rope table (ropeTable) to position 131,071', () => {
    expect(offPairs(gpuTable(FACTORS), FACTORS)).toEqual([]);
  });

  it('catches the mutants: factors ignored, or applied only past position 8,192', () => {
    const ignored = offPairs(referenceRope(undefined), FACTORS);
    expect(ignored.length).toBeGreaterThan(100);
    expect(ignored).not.toContain('pos 0 pair 31'); // angle 0 either way
    const lateOnly = (p: number, i: number) => (p > 8192 ? referenceRope(FACTORS) : referenceRope())(p, i);
    const late = offPairs(lateOnly, FACTORS);
    expect(late.some((x) => x.startsWith('pos 8191 '))).toBe(true);
    expect(late.some((x) => x.startsWith('pos 12345 '))).toBe(false);
  });
});
