import { mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, sep } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';
import { slowestFirst } from './scripts/test-budget.js';

/**
 * Dawn's Vulkan path loads libwayland-client, which prints "XDG_RUNTIME_DIR is invalid or not set"
 * on stderr when the variable does not name a directory (CI has no login session). The CLI points
 * it at a private directory itself (src/node/gpu.ts); the tests that create Dawn devices directly
 * get the same here.
 */
function runtimeDir(): string {
  const current = process.env.XDG_RUNTIME_DIR;
  try {
    if (current && isAbsolute(current) && statSync(current).isDirectory()) return current;
  } catch {
    // not a directory: use our own
  }
  const dir = join(tmpdir(), `llama3-webgpu-runtime-${process.getuid?.() ?? 0}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Starts the slowest files first (scripts/test-budget.ts says why), on any clone. */
class SlowestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    return slowestFirst(files, (f) => relative(this.ctx.config.root, f.moduleId).split(sep).join('/'));
  }
}

// Unit, kernel and parity tests run in Node. GPU tests use Dawn (npm `webgpu`) on SwiftShader;
// e2e tests live in e2e/ and run under Playwright, not here.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'scripts/**/*.test.ts'],
    // A safety net against hangs, not a speed limit (docs/testing.md keeps the budgets): with two
    // files sharing the 2 cores (maxWorkers below) a test can take twice its time alone, and the
    // slowest default-timeout tests (reference parity per fixture, the attention self-check) took
    // 40–50 s alone on this loaded machine.
    testTimeout: 240_000,
    hookTimeout: 300_000,
    pool: 'forks',
    // One file per core. Vitest's default for `run` is cores − 1, i.e. one file at a time on this
    // 2-core machine, which left a core idle whenever a file waits (llama.cpp, child processes,
    // single-threaded JS). Each file still runs its own tests one after another.
    maxWorkers: 2,
    sequence: { sequencer: SlowestFirst },
    env: { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json', XDG_RUNTIME_DIR: runtimeDir() },
  },
  assetsInclude: ['**/*.wgsl'],
});
