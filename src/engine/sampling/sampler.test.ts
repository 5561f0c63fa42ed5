import { describe, expect, it } from 'vitest';
import { EngineError } from '../errors';
import type { SamplingOptions } from '../generation';
import { Rng, sampleToken, samplingDistribution } from './sampler';

const opts = (o: Partial<SamplingOptions>): SamplingOptions => ({
  temperature: 1,
  topP: 1,
  topK: 0,
  seed: 0,
  ...o,
});

/** Logits whose softmax at T = 1 is exactly `probs` (up to rounding). */
const logitsOf = (probs: number[]) => new Float32Array(probs.map(Math.log));

describe('Rng (PCG32)', () => {
  it('matches the PCG reference stream (pcg32_srandom(42, 54), pcg32-demo output)', () => {
    const r = new Rng(42, 54n);
    const got = Array.from({ length: 6 }, () => r.nextU32());
    expect(got).toEqual([0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e]);
  });
  it('same seed → same sequence; different seeds differ; next() is in [0, 1)', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    const c = new Rng(8);
    const sa = Array.from({ length: 100 }, () => a.next());
    const sb = Array.from({ length: 100 }, () => b.next());
    const sc = Array.from({ length: 100 }, () => c.next());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
    expect(sa.every((u) => u >= 0 && u < 1)).toBe(true);
  });
  it('is roughly uniform (mean and decile counts over 100k draws)', () => {
    const r = new Rng(123);
    const bins = new Array(10).fill(0);
    let sum = 0;
    for (let i = 0; i < 100_000; i++) {
      const u = r.next();
      sum += u;
      bins[Math.floor(u * 10)]++;
    }
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.005);
    for (const b of bins) expect(Math.abs(b - 10_000)).toBeLessThan(500); // ~5σ
  });
  it('rejects a seed that is not a safe integer', () => {
    expect(() => new Rng(1.5)).toThrow(EngineError);
  });
});

describe('sampleToken', () => {
  it('temperature 0 is argmax (first on ties) and ignores u', () => {
    const l = new Float32Array([0.1, 3, -2, 3, 1]);
    for (const u of [0, 0.5, 0.999]) expect(sampleToken(l, opts({ temperature: 0 }), u)).toBe(1);
  });

  it('top-p keeps tokens until the preceding mass exceeds p (the crossing token stays)', () => {
    // sorted: 0.4 (id 2), 0.3 (id 0), 0.2 (id 3), 0.1 (id 1)
    const l = logitsOf([0.3, 0.1, 0.4, 0.2]);
    const kept = (p: number) => Array.from(samplingDistribution(l, opts({ topP: p })).ids);
    expect(kept(0.1)).toEqual([2]); // before: 0 ≤ .1 keep; then .4 > .1 stop
    expect(kept(0.4)).toEqual([2, 0]); // preceding mass of id 0 is 0.4 ≤ 0.4: kept (boundary)
    expect(kept(0.45)).toEqual([2, 0]);
    expect(kept(0.75)).toEqual([2, 0, 3]);
    expect(kept(0.95)).toEqual([2, 0, 3, 1]);
    expect(kept(1)).toEqual([2, 0, 3, 1]);
    const d = samplingDistribution(l, opts({ topP: 0.5 }));
    expect(d.probs[0]).toBeCloseTo(0.4 / 0.7, 6);
    expect(d.probs[1]).toBeCloseTo(0.3 / 0.7, 6);
  });

  it('top-k keeps the k most likely, then top-p applies to the renormalized rest', () => {
    const l = logitsOf([0.05, 0.5, 0.15, 0.3]);
    expect(Array.from(samplingDistribution(l, opts({ topK: 2 })).ids)).toEqual([1, 3]);
    const d = samplingDistribution(l, opts({ topK: 3, topP: 0.5 }));
    // within top-3 (0.5, 0.3, 0.15)/0.95: preceding of the 2nd is 0.526 > 0.5 → only id 1
    expect(Array.from(d.ids)).toEqual([1]);
    expect(d.probs[0]).toBe(1);
    expect(Array.from(samplingDistribution(l, opts({ topK: 99 })).ids)).toEqual([1, 3, 2, 0]);
  });

  it('temperature scales the logits before softmax', () => {
    const l = new Float32Array([2, 0]);
    const at = (t: number) => samplingDistribution(l, opts({ temperature: t })).probs[0];
    expect(at(1)).toBeCloseTo(1 / (1 + Math.exp(-2)), 9);
    expect(at(2)).toBeCloseTo(1 / (1 + Math.exp(-1)), 9);
    expect(at(0.5)).toBeCloseTo(1 / (1 + Math.exp(-4)), 9);
  });

  it('picks by u on the cumulative distribution', () => {
    const l = logitsOf([0.25, 0.5, 0.25]); // order: 1 (0.5), 0 (0.25), 2 (0.25)
    expect(sampleToken(l, opts({}), 0)).toBe(1);
    expect(sampleToken(l, opts({}), 0.49)).toBe(1);
    expect(sampleToken(l, opts({}), 0.51)).toBe(0);
    expect(sampleToken(l, opts({}), 0.76)).toBe(2);
    expect(sampleToken(l, opts({}), 0.9999999999)).toBe(2);
  });

  it('empirical frequencies over many draws match the distribution (chi-square)', () => {
    const probs = [0.05, 0.3, 0.02, 0.13, 0.4, 0.1];
    const l = logitsOf(probs);
    const s = opts({ temperature: 1, topP: 0.9 });
    const { ids, probs: kept } = samplingDistribution(l, s);
    const expected = new Map<number, number>();
    ids.forEach((id, i) => {
      expected.set(id, kept[i]);
    });
    const rng = new Rng(2024);
    const N = 50_000;
    const counts = new Map<number, number>();
    for (let i = 0; i < N; i++) {
      const t = sampleToken(l, s, rng.next());
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
    // top-p 0.9 over (.4, .3, .13, .1, .05, .02): preceding masses .0 .4 .7 .83 .93 → 4 kept
    expect([...counts.keys()].sort()).toEqual([1, 3, 4, 5]);
    let chi2 = 0;
    for (const [id, p] of expected) chi2 += ((counts.get(id) ?? 0) - N * p) ** 2 / (N * p);
    // 3 degrees of freedom: P(χ² > 16.3) ≈ 0.001.
    expect(chi2).toBeLessThan(16.3);
  });

  it('same seed → same sampled sequence', () => {
    const l = new Float32Array(50).map((_, i) => Math.sin(i) * 3);
    const run = (seed: number) => {
      const r = new Rng(seed);
      return Array.from({ length: 40 }, () =>
        sampleToken(l, opts({ temperature: 0.8, topP: 0.95 }), r.next()),
      );
    };
    expect(run(5)).toEqual(run(5));
    expect(run(5)).not.toEqual(run(6));
  });

  it('rejects out-of-range options', () => {
    const l = new Float32Array([1, 2]);
    expect(() => sampleToken(l, opts({ temperature: -1 }), 0.5)).toThrow(/temperature/);
    expect(() => sampleToken(l, opts({ topP: 0 }), 0.5)).toThrow(/top-p/);
    expect(() => sampleToken(l, opts({ topK: 1.5 }), 0.5)).toThrow(/top-k/);
  });
});

describe('non-finite logits (corrupt weights)', () => {
  // Before the check, argmax over NaNs returned token 0 and a draw returned undefined.
  const poisoned: [string, number][] = [
    ['NaN', Number.NaN],
    ['+Inf', Number.POSITIVE_INFINITY],
    ['-Inf', Number.NEGATIVE_INFINITY],
  ];
  for (const [label, bad] of poisoned) {
    for (const temperature of [0, 0.6]) {
      it(`a ${label} logit at T=${temperature} is EngineError('non-finite'), never a token`, () => {
        const l = new Float32Array([0.5, 2, -1, 0.25, 1]);
        l[3] = bad;
        let e: unknown;
        try {
          sampleToken(l, opts({ temperature, topP: 0.9 }), 0.5);
        } catch (err) {
          e = err;
        }
        expect(e).toBeInstanceOf(EngineError);
        expect((e as EngineError).code).toBe('non-finite');
        expect((e as EngineError).message).toMatch(
          new RegExp(
            `^the model produced NaN/Inf values \\(the logit of token 3 is ${label.replace('+', '')}`,
          ),
        );
        expect((e as EngineError).message).toMatch(/weights are probably corrupt; re-download it/);
      });
    }
  }

  it('all logits NaN (what a NaN weight makes of every row) is refused too', () => {
    const l = new Float32Array(1000).fill(Number.NaN);
    expect(() => sampleToken(l, opts({ temperature: 0 }), 0)).toThrow(/NaN\/Inf/);
  });

  it('huge but finite logits still sample', () => {
    const l = new Float32Array([3e38, -3e38, 1e38]);
    expect(sampleToken(l, opts({ temperature: 0 }), 0)).toBe(0);
    expect(sampleToken(l, opts({ temperature: 0.6 }), 0.99)).toBe(0);
  });

  it('equal logits are sampled in id order (the tie rule), not always token 0', () => {
    const flat = new Float32Array(10).fill(1.5);
    // top-p 0.9 is taken at f32 (0.89999998): 9 ≤ 0.9·10 fails, so ids 0..8 are kept.
    expect(Array.from(samplingDistribution(flat, opts({ topP: 0.9 })).ids)).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8,
    ]);
    for (let k = 0; k < 9; k++) expect(sampleToken(flat, opts({ topP: 0.9 }), (k + 0.5) / 9)).toBe(k);
    // u · Σ is exact: u = 4/8 with 8 kept picks id 4, the first whose cumulative count exceeds 4.
    expect(sampleToken(flat, opts({ topK: 8 }), 0.5)).toBe(4);
    expect(sampleToken(flat, opts({ topK: 8 }), 0.5 - 2 ** -32)).toBe(3);
    // −0 and +0 are the same logit: ordered by id.
    expect(sampleToken(new Float32Array([-0, 0]), opts({}), 0)).toBe(0);
    expect(sampleToken(new Float32Array([0, -0]), opts({}), 0.75)).toBe(1);
  });
});
