import { describe, expect, it } from 'vitest';
import {
  compareForced,
  compareGreedy,
  isNearTie,
  type LlamaCppGreedy,
  llamaCppGreedy,
  llamaCppTokenize,
  NEAR_TIE_FRACTION,
} from './llamacpp';
import { DEMO_MODEL_PATH } from '../../node/paths';

/** A llama.cpp run with the given tokens and logit gaps (range 10 at every step). */
function run(tokens: number[], gaps: number[]): LlamaCppGreedy {
  return { tokens, top2: gaps.map((g) => [-0.1, -0.1 - g] as [number, number]), range: gaps.map(() => 10) };
}

const seq = (n: number) => Array.from({ length: n }, (_, i) => 100 + i);
const wide = (n: number) => new Array(n).fill(3);

describe('near-tie rule', () => {
  it('is gap < NEAR_TIE_FRACTION · range, strictly', () => {
    const r = run([1, 2, 3], [NEAR_TIE_FRACTION * 10 - 1e-9, NEAR_TIE_FRACTION * 10, 5]);
    expect([0, 1, 2].map((i) => isNearTie(r, i))).toEqual([true, false, false]);
  });

  it('compareGreedy: identical runs pass; a mismatch at a clear step fails', () => {
    const theirs = run(seq(20), wide(20));
    expect(compareGreedy(seq(20), theirs, 16)).toMatchObject({ ok: true, compared: 20, firstMismatch: -1 });
    const ours = seq(20);
    ours[7] = 5;
    const c = compareGreedy(ours, theirs, 16);
    expect(c.ok).toBe(false);
    expect(c.firstMismatch).toBe(7);
    expect(c.message).toMatch(/token 7 differs/);
  });

  it('compareGreedy: runs through near-ties both runs agree on; may part only at a near-tie', () => {
    const gaps = wide(24);
    gaps[5] = 0.05; // near-tie at step 5, where both runs chose the same token
    gaps[18] = 0.1; // near-tie at step 18 (0.1 < 0.4)
    const theirs = run(seq(24), gaps);
    expect(compareGreedy(seq(24), theirs, 16)).toMatchObject({ ok: true, compared: 24, firstNearTie: 5 });
    const ours = seq(24);
    ours[18] = 1; // differs at the near-tie
    ours[20] = 2; // and after it (the contexts differ from there: not compared)
    const parted = compareGreedy(ours, theirs, 16);
    expect(parted).toMatchObject({ ok: true, compared: 18, firstMismatch: 18 });
    expect(parted.message).toMatch(
      /18 tokens agree \(through 1 near-tie\), then parted at a near-tie at step 18/,
    );
    // Parting at a near-tie at step 10 leaves too few compared tokens: a bad fixture.
    const early = wide(24);
    early[10] = 0.1;
    const ours10 = seq(24);
    ours10[10] = 1;
    const c = compareGreedy(ours10, run(seq(24), early), 16);
    expect(c.ok).toBe(false);
    expect(c.message).toMatch(/parted at a near-tie at step 10.*re-seed/);
  });

  it('compareForced: skips near-ties anywhere, fails on a clear mismatch or too few checked steps', () => {
    const gaps = wide(24);
    gaps[3] = 0.01;
    gaps[12] = 0.2;
    const theirs = run(seq(24), gaps);
    const ours = seq(24);
    ours[3] = 9;
    ours[12] = 9;
    expect(compareForced(ours, theirs, 16)).toMatchObject({ ok: true, checked: 22, nearTies: 2 });
    ours[13] = 9;
    expect(compareForced(ours, theirs, 16)).toMatchObject({ ok: false, mismatches: [13] });
    expect(compareForced(seq(24), theirs, 23).ok).toBe(false);
  });
});

const DEMO = DEMO_MODEL_PATH;

describe('llama.cpp oracle on the demo model', () => {
  it('tokenizes with llama.cpp and returns greedy ids with top-2 log-probabilities and ranges', async () => {
    expect(await llamaCppTokenize(DEMO, 'Once upon a time')).toEqual([12805, 5304, 264, 892]);
    const r = await llamaCppGreedy(DEMO, [128000, 12805, 5304, 264, 892], 6);
    // MODEL.md: 11 1070 574 264 2697 3828 ...
    expect(r.tokens).toEqual([11, 1070, 574, 264, 2697, 3828]);
    for (let i = 0; i < 6; i++) {
      const [a, b] = r.top2[i];
      expect(a).toBeLessThanOrEqual(0);
      expect(b).toBeLessThanOrEqual(a);
      expect(r.range[i]).toBeGreaterThan(a - b);
      expect(Number.isFinite(r.range[i])).toBe(true);
    }
    // Step 0: p1 ≈ 0.666, p2 ≈ 0.324 (measured): gap ln(0.666 / 0.324) ≈ 0.72.
    expect(r.top2[0][0] - r.top2[0][1]).toBeCloseTo(Math.log(0.6657 / 0.3236), 1);
  });
});
