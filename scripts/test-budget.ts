/**
 * The CI's time budget per vitest file, and the order vitest starts files in (vitest.config.ts).
 *
 * Why an order: vitest runs two files at a time here (one per core), and a run ends when its
 * last file does. Started last, the 12-minute GPU CLI parity file would leave one core idle for
 * most of its run; started first (longest first), the short files fill the other core beside it.
 * Vitest's own order needs a results cache from an earlier run, which a fresh clone (CI) lacks, so
 * the order is this committed list.
 *
 * Seconds are wall time of the file in a whole-CI run on the shared 2-core machine (SwiftShader,
 * other work beside it), rounded up: a budget, not a promise. A file that is not listed runs after
 * the listed ones that are slower than NEW_FILE_S, before the faster ones. docs/testing.md keeps
 * the same table for people; scripts/test-budget.test.ts checks every listed file exists.
 */
export const TEST_BUDGET_S: Readonly<Record<string, number>> = {
  'src/cli/generate-gpu.test.ts': 720,
  'src/engine/gpu/sampling.test.ts': 390,
  'src/engine/reference/parity.test.ts': 345,
  'src/engine/gpu/linear.test.ts': 135,
  'src/engine/gpu/kernels.test.ts': 130,
  'src/cli/generate.test.ts': 125,
  'src/engine/gpu/parity.test.ts': 400,
  'src/cli/cli.test.ts': 80,
  'src/engine/generation.test.ts': 40,
  'src/engine/gpu/attention_f16.test.ts': 40,
  'src/engine/gpu/check/self-check.test.ts': 35,
  'src/engine/reference/model.test.ts': 35,
  'src/engine/gpu/kquant.test.ts': 30,
  'src/engine/engine.test.ts': 25,
  'scripts/bench/bench.test.ts': 25,
  'src/worker/engine-host.test.ts': 21,
  'src/engine/gpu/custom-ops.test.ts': 20,
  'src/engine/gpu/cost.test.ts': 19,
  'src/engine/inspect.test.ts': 18,
  'src/engine/tokenizer/llamacpp-parity.test.ts': 18,
  'src/engine/sampling/non-finite.test.ts': 14,
};

/** Where a file missing from the table goes: before files faster than this. */
export const NEW_FILE_S = 20;

/** The items, the slowest budget first (`path`: repository-relative, "/"); ties keep their order. */
export function slowestFirst<T>(items: readonly T[], path: (item: T) => string): T[] {
  const budget = (item: T) => TEST_BUDGET_S[path(item)] ?? NEW_FILE_S;
  return items
    .map((item, i) => ({ item, i, s: budget(item) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map(({ item }) => item);
}
