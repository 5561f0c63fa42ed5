import { defineConfig } from 'vitest/config';

// Unit, kernel and parity tests run in Node. GPU tests use Dawn (npm `webgpu`) on SwiftShader;
// e2e tests live in e2e/ and run under Playwright, not here.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'scripts/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    pool: 'forks',
    env: { VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' },
  },
  assetsInclude: ['**/*.wgsl'],
});
