/**
 * `generate --device gpu` (Dawn on SwiftShader) through the real CLI against llama.cpp's greedy
 * tokens, under the near-tie rule: the GPU half of src/cli/generate.test.ts (same fixtures, prompts
 * and comparisons, generate.testutil.ts), in its own file so vitest runs it beside the CPU half.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'vitest';
import { CASES, expectDemoModelIds, expectParity } from './generate.testutil';
import { DEMO_MODEL, FIXTURES } from './spawn.testutil';

// SwiftShader runs the GPU path at about a second per token on this 2-core machine, so by default
// the GPU check takes the first prompt of each fixture the GPU layouts accept (tiny-f32's FFN of 200
// is refused: src/engine/gpu/parity.test.ts), 24 tokens as on the CPU (fewer leave too few steps
// that are not near-ties); CLI_GPU_PARITY=all runs every prompt.
const GPU_ALL = process.env.CLI_GPU_PARITY === 'all';
describe('generate --device gpu matches llama.cpp greedy', () => {
  for (const c of CASES.filter((c) => c.file !== 'tiny-f32.gguf')) {
    const path = join(FIXTURES, c.file);
    it.skipIf(!existsSync(path))(
      c.file,
      () => expectParity(path, 'gpu', GPU_ALL ? c.prompts : c.prompts.slice(0, 1)),
      3_600_000,
    );
  }
});

describe.skipIf(!DEMO_MODEL)('the demo model', () => {
  // 24 tokens on the GPU (SwiftShader: about a second per token here); 60 on the CPU reference.
  it(
    '--device gpu --temperature 0 "Once upon a time" gives llama.cpp\'s ids (MODEL.md)',
    () => expectDemoModelIds('gpu', 24),
    900_000,
  );
});
