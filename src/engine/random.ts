/**
 * mulberry32: a tiny seeded uniform [0, 1) generator for test inputs and fuzzing, so a failing case
 * can be replayed from its seed. (Sampling uses the PCG32 `Rng` in sampling/sampler.ts instead.)
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
