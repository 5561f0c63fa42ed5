/**
 * The done-when test: `generate --temperature 0 --json` through the real CLI gives llama.cpp's
 * greedy tokens (same file, same prompt ids) for ≥ 16 tokens per prompt, under the near-tie rule,
 * on every tiny fixture and the demo model, on --device cpu (here) and --device gpu
 * (src/cli/generate-gpu.test.ts: Dawn on SwiftShader; its own file so vitest runs the two on
 * both cores).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { base, CASES, cli, expectDemoModelIds, expectParity } from './generate.testutil';
import { DEMO_MODEL, FIXTURES } from './spawn.testutil';

describe('generate --device cpu matches llama.cpp greedy', () => {
  for (const c of CASES) {
    const path = join(FIXTURES, c.file);
    it.skipIf(!existsSync(path))(c.file, () => expectParity(path, 'cpu', c.prompts), 1_800_000);
  }
});

describe.skipIf(!DEMO_MODEL)('the demo model', () => {
  // 60 tokens on the CPU reference (24 on the GPU: generate-gpu.test.ts).
  it(
    '--device cpu --temperature 0 "Once upon a time" gives llama.cpp\'s ids (MODEL.md)',
    () => expectDemoModelIds('cpu', 60),
    900_000,
  );
});

describe('batching', () => {
  const path = join(FIXTURES, 'tiny-q8_0.gguf');
  it.skipIf(!existsSync(path))(
    '--batch-size 2 with three prompts gives the greedy tokens of one at a time',
    async () => {
      const prompts = ['Once upon a time', 'The meaning of life is', 'Hello'];
      const run = (ps: string[], batch: number) =>
        cli([
          ...base(path, 'cpu'),
          '--max-tokens',
          '20',
          '--batch-size',
          String(batch),
          ...ps.flatMap((p) => ['--prompt', p]),
        ]);
      const batched = await run(prompts, 2);
      expect(batched.stats.batches).toBe(2);
      for (const [i, p] of prompts.entries()) {
        const alone = await run([p], 1);
        expect(alone.prompt_tokens[0]).toEqual(batched.prompt_tokens[i]);
        expect(alone.tokens[0], `prompt ${i + 1}`).toEqual(batched.tokens[i]);
      }
    },
    900_000,
  );
});
