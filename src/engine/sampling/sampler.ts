/**
 * The CPU sampler and the sampler RNG.
 *
 * Design: the random numbers always come from `Rng` on the CPU, one uniform draw `u` per sequence
 * per step, whichever backend computes the logits. The GPU sampler takes the same `u` (written into
 * its per-step uniforms) and applies the same steps as `sampleToken`, so for equal logits CPU and
 * GPU pick the same token, and a seed reproduces a run on either device. Each sequence s of a batch
 * has its own stream, `new Rng(sequenceSeed(seed, s))` ((seed + s) mod 2^64), so a sequence's output does not depend on its batch.
 *
 * Steps (Meta's llama3 `sample_top_p`, plus an optional top-k first):
 *   order: logit descending; equal logits by lower id (the tie rule: a vocabulary of equal logits
 *   is an ordinary distribution over ids 0, 1, 2, … and is sampled, never "token 0");
 *   T = 0 → the first token of that order (argmax, first index on ties);
 *   else w = exp((logits − max) / T) in f64; keep the first k when topK > 0;
 *   top-p: drop every token whose PRECEDING mass already exceeds p · Σkept (so the token that
 *   crosses p is kept), with p taken at f32 precision (`Math.fround`, what the GPU's uniform holds);
 *   pick the first token whose cumulative w exceeds u · Σkept.
 * Both cut tests compare a sum with a product that is exact in f64 whenever the sums are exact
 * (equal logits: w = 1), and the GPU compares exactly too, so ties give the same token on both.
 */
import { EngineError } from '../errors';
import type { SamplingOptions } from '../generation';
import { argmax } from '../reference/ops';

/**
 * PCG32 (O'Neill's pcg32: 64-bit LCG state, XSH-RR output), in BigInt so the 64-bit arithmetic is
 * exact and the stream is the same on every JS engine. One draw per sequence per step: speed is
 * irrelevant. `next()` is uniform in [0, 1) with 32 random bits.
 */
export class Rng {
  private static readonly MULT = 6364136223846793005n;
  private readonly inc: bigint;
  private state = 0n;

  /** `stream` selects one of 2^63 sequences; the default gives pcg32's inc 1442695040888963407. */
  /** `seed`: a safe integer or a 64-bit value (`sequenceSeed`); taken mod 2^64. */
  constructor(seed: number | bigint, stream = 721347520444481703n) {
    this.inc = BigInt.asUintN(64, (stream << 1n) | 1n);
    if (typeof seed === 'number' && !Number.isSafeInteger(seed))
      throw new EngineError('bad-argument', `seed ${seed} must be a safe integer`);
    // pcg32_srandom: state = 0; step; state += seed; step.
    this.step();
    this.state = BigInt.asUintN(64, this.state + BigInt.asUintN(64, BigInt(seed)));
    this.step();
  }

  private step(): void {
    this.state = BigInt.asUintN(64, this.state * Rng.MULT + this.inc);
  }

  /** Next 32 random bits: XSH-RR of the state before the step. */
  nextU32(): number {
    const old = this.state;
    this.step();
    const xorshifted = Number(BigInt.asUintN(32, ((old >> 18n) ^ old) >> 27n));
    const rot = Number(old >> 59n);
    return ((xorshifted >>> rot) | (xorshifted << (-rot & 31))) >>> 0;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  next(): number {
    return this.nextU32() / 4294967296;
  }
}

function checkOptions(s: SamplingOptions): void {
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) {
    throw new EngineError('bad-argument', `temperature ${s.temperature} must be a finite number ≥ 0`);
  }
  if (!(s.topP > 0 && s.topP <= 1))
    throw new EngineError('bad-argument', `top-p ${s.topP} must be in (0, 1]`);
  if (!(Number.isInteger(s.topK) && s.topK >= 0)) {
    throw new EngineError('bad-argument', `top-k ${s.topK} must be an integer ≥ 0 (0 = off)`);
  }
}

/** The kept tokens in order with their unnormalized weights w and Σw (T > 0). */
function keptTokens(
  logits: Float32Array,
  s: SamplingOptions,
): { ids: Int32Array; weights: Float64Array; keptSum: number } {
  const n = logits.length;
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < n; i++) max = Math.max(max, logits[i]);
  // Logit descending, equal logits by lower id: the order is fully defined (and ignores the sign of 0).
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => logits[b] - logits[a] || a - b);
  let keep = s.topK > 0 ? Math.min(s.topK, n) : n;
  const w = new Float64Array(keep);
  for (let i = 0; i < keep; i++) w[i] = Math.exp((logits[order[i]] - max) / s.temperature);
  // top-p over the (top-k) survivors: token i stays while the mass before it is ≤ p · total.
  if (s.topP < 1) {
    const p = Math.fround(s.topP);
    let total = 0;
    for (let i = 0; i < keep; i++) total += w[i];
    const limit = p * total;
    let kept = 0;
    let before = 0;
    while (kept < keep && before <= limit) {
      before += w[kept];
      kept++;
    }
    keep = kept;
  }
  let keptSum = 0;
  for (let i = 0; i < keep; i++) keptSum += w[i];
  return { ids: Int32Array.from(order.slice(0, keep)), weights: w.subarray(0, keep), keptSum };
}

/**
 * The candidates `sampleToken` draws from, in order, with their renormalized probabilities
 * (exported so tests and the GPU sampler's tests can check the kept set).
 */
export function samplingDistribution(
  logits: Float32Array,
  s: SamplingOptions,
): { ids: Int32Array; probs: Float64Array } {
  checkOptions(s);
  const { ids, weights, keptSum } = keptTokens(logits, s);
  return { ids, probs: weights.map((w) => w / keptSum) };
}

/**
 * The error for logits that hold NaN or ±Inf: the weights (or their decoding) are corrupt, so any
 * token picked from them would be garbage (argmax of NaNs is token 0, a draw finds no token).
 * Both samplers refuse them, the GPU one through its NON_FINITE_TOKEN sentinel.
 */
export function nonFiniteLogitsError(detail: string): EngineError {
  return new EngineError(
    'non-finite',
    `the model produced NaN/Inf values (${detail}): the file's weights are probably corrupt; ` +
      're-download it or try another quantization',
  );
}

/** Throws `nonFiniteLogitsError` unless every logit is finite: one pass, next to the head's V·D work. */
export function checkFiniteLogits(logits: Float32Array): void {
  for (let i = 0; i < logits.length; i++) {
    // x − x is 0 for finite x and NaN for NaN and ±Inf: one subtraction and compare per logit.
    if (logits[i] - logits[i] !== 0) {
      throw nonFiniteLogitsError(`the logit of token ${i} is ${logits[i]}`);
    }
  }
}

/**
 * Pick the next token from `logits` with one uniform draw `u` in [0, 1) (from `Rng.next()`).
 * Temperature 0 is argmax and ignores `u`. Logits with NaN or ±Inf are EngineError('non-finite').
 */
export function sampleToken(logits: Float32Array, s: SamplingOptions, u: number): number {
  checkOptions(s);
  checkFiniteLogits(logits);
  if (s.temperature === 0) return argmax(logits);
  const { ids, weights, keptSum } = keptTokens(logits, s);
  // u · Σ is exact in f64 for a 32-bit u and a sum of up to 2^21 equal weights.
  const goal = u * keptSum;
  let cum = 0;
  for (let i = 0; i < ids.length; i++) {
    cum += weights[i];
    if (goal < cum) return ids[i];
  }
  // goal ≥ the rounded running sum (u within 1e-16 of 1): the last kept token.
  return ids[ids.length - 1];
}
