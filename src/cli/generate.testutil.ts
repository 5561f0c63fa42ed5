/**
 * What the CLI's greedy-parity tests share (src/cli/generate.test.ts on --device cpu,
 * src/cli/generate-gpu.test.ts on --device gpu; two files so vitest runs them on both cores): the
 * fixtures and prompts, and both comparisons of the near-tie rule through the real CLI.
 */
import { expect } from 'vitest';
import {
  compareForced,
  compareGreedy,
  type LlamaCppGreedy,
  llamaCppGreedy,
} from '../engine/testing/llamacpp';
import { DEMO_MODEL, lastJson, runCliProcess } from './spawn.testutil';

export interface GenerateJson {
  prompt_tokens: number[][];
  tokens: number[][];
  text: string[];
  finish_reasons: string[];
  stats: Record<string, number | string>;
}

/** Prompts per fixture (the ones src/engine/reference/parity.test.ts uses for the same files). */
export const CASES: { file: string; prompts: string[] }[] = [
  { file: 'tiny-q4_0.gguf', prompts: ['Once upon a time', 'Hello, my name is'] },
  { file: 'tiny-f16-tied.gguf', prompts: ['Once upon a time', 'The quick brown fox'] },
  { file: 'tiny-q8_0.gguf', prompts: ['The weather today is', 'In the beginning'] },
  { file: 'tiny-f32.gguf', prompts: ['Once upon a time', 'I believe the meaning of life is'] },
];
export const N = 24;
export const MIN_CHECKED = 16;

export async function cli(args: string[]): Promise<GenerateJson> {
  const r = await runCliProcess(args, { timeoutMs: 1_800_000 });
  expect(r.code, r.stderr).toBe(0);
  return lastJson<GenerateJson>(r.stdout);
}

export const base = (model: string, device: string) => [
  'generate',
  '--model-path',
  model,
  '--device',
  device,
  '--temperature',
  '0',
  '--max-seq-len',
  '64',
  '--json',
];

/**
 * Both comparisons of the near-tie rule, through the real CLI:
 * 1. free-running: `--prompt` × k, N new tokens each; equal to llama.cpp's greedy run up to its
 *    first near-tie (compareGreedy);
 * 2. teacher-forced: one batched run whose prompts are, as `--prompt-ids`, the prompt followed by
 *    llama.cpp's first 0, 1, …, N−1 tokens, with `--max-tokens 1`: token 0 of sequence i is our
 *    argmax after llama.cpp's context i, so one near-tie does not end the comparison. Every step
 *    that is not a near-tie must agree, and at least 16 per prompt must be checked (compareForced).
 */
export async function expectParity(path: string, device: 'cpu' | 'gpu', prompts: string[], n = N) {
  const freeArgs = [...base(path, device), '--max-tokens', String(n)];
  for (const p of prompts) freeArgs.push('--prompt', p);
  const free = await cli(freeArgs);
  expect(free.stats.device).toBe(device);
  const theirs: LlamaCppGreedy[] = [];
  for (const [i, prompt] of free.prompt_tokens.entries()) {
    expect(prompt[0]).toBe(128000); // BOS included in prompt_tokens
    const t = await llamaCppGreedy(path, prompt, n);
    theirs.push(t);
    const cmp = compareGreedy(free.tokens[i], t, 1);
    expect(cmp.ok, `${path} ${device} prompt ${i + 1} free-running: ${cmp.message}`).toBe(true);
    expect(new Set(t.tokens).size, 'llama.cpp output is one repeated token').toBeGreaterThan(3);
  }
  const prefixes = free.prompt_tokens.flatMap((prompt, i) =>
    Array.from({ length: n }, (_, k) => [...prompt, ...theirs[i].tokens.slice(0, k)]),
  );
  const forcedArgs = [
    ...base(path, device),
    '--max-tokens',
    '1',
    '--batch-size',
    String(Math.min(prefixes.length, 64)),
  ];
  for (const ids of prefixes) forcedArgs.push('--prompt-ids', ids.join(','));
  const forced = await cli(forcedArgs);
  for (const [i, t] of theirs.entries()) {
    const ours = forced.tokens.slice(i * n, (i + 1) * n).map((toks) => toks[0]);
    const cmp = compareForced(ours, t, MIN_CHECKED);
    expect(cmp.ok, `${path} ${device} prompt ${i + 1} teacher-forced: ${cmp.message}`).toBe(true);
  }
}

// llama.cpp's greedy ids for "Once upon a time" from MODEL.md (prompt 128000 12805 5304 264 892).
export const MODEL_MD_IDS = [
  11, 1070, 574, 264, 2697, 3828, 7086, 48390, 13, 3005, 10456, 311, 1514, 449, 1077, 23939, 323, 8343, 76454,
  3691, 13, 3861, 1938, 11, 48390, 596, 3450, 1071, 11, 330, 43, 1570, 11, 1095, 596, 1514, 264, 2466, 19692,
  449, 264, 2466, 2579, 5041, 25765, 43, 1570, 574, 1633, 6380, 323, 1071, 11, 330, 9642, 11, 430, 596, 10705,
  0,
];

/**
 * `generate --temperature 0 "Once upon a time"` on the demo model gives llama.cpp's ids (MODEL.md):
 * n tokens on `device`, under the near-tie rule after at least 16 equal tokens.
 */
export async function expectDemoModelIds(device: 'cpu' | 'gpu', n: number) {
  const r = await runCliProcess(
    [
      'generate',
      '--model-path',
      DEMO_MODEL!,
      '--device',
      device,
      '--temperature',
      '0',
      '--prompt',
      'Once upon a time',
      '--max-tokens',
      String(n),
      '--json',
    ],
    { timeoutMs: 600_000 },
  );
  expect(r.code, r.stderr).toBe(0);
  const out = lastJson<GenerateJson>(r.stdout);
  expect(out.stats.device).toBe(device);
  expect(out.prompt_tokens).toEqual([[128000, 12805, 5304, 264, 892]]);
  const live = await llamaCppGreedy(DEMO_MODEL!, out.prompt_tokens[0], n);
  expect(live.tokens).toEqual(MODEL_MD_IDS.slice(0, n)); // the oracle still says what MODEL.md says
  // The near-tie rule (compareGreedy runs through ties both runs agree on: this model's first is
  // step 0, its top two 2.8% of the range apart): any difference must be at a near-tie, after
  // at least 16 equal tokens.
  const cmp = compareGreedy(out.tokens[0], live, MIN_CHECKED);
  expect(cmp.ok, cmp.message).toBe(true);
  expect(out.tokens[0].length).toBe(n);
  expect(r.stdout.startsWith(', there was a little girl named Lily.')).toBe(true);
}
