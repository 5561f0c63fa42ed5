import { defineConfig } from '@playwright/test';

/**
 * End-to-end tests: the real page, worker, IndexedDB, downloads and faults, in Debian's Chromium
 * with WebGPU on SwiftShader (no GPU needed). Never `npx playwright install`: the system Chromium
 * is the browser. The app is built once and served by `vite preview` on a free port, which the
 * `wait` pattern below captures into process.env.E2E_APP_PORT for the tests.
 */
const DIST = 'node_modules/.cache/e2e-dist';
const VITE = 'node node_modules/vite/bin/vite.js';

export const CHROMIUM_FLAGS = [
  '--enable-unsafe-webgpu',
  '--enable-features=Vulkan',
  '--use-webgpu-adapter=swiftshader',
  '--use-vulkan=swiftshader',
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export default defineConfig({
  testDir: 'e2e',
  testMatch: /.*\.spec\.ts$/,
  // SwiftShader is ~1000× slower than a GPU: generous limits, one test at a time (2 shared cores).
  timeout: 480_000,
  expect: { timeout: 120_000 },
  workers: 1,
  fullyParallel: false,
  retries: 0,
  reporter: [['list']],
  outputDir: 'test-results/playwright',
  use: {
    browserName: 'chromium',
    launchOptions: { executablePath: '/usr/bin/chromium', args: CHROMIUM_FLAGS },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
    actionTimeout: 30_000,
  },
  webServer: {
    // VITE_TEST_HOOKS=1: this build alone reads test settings from the URL (src/ui/test-hooks.ts).
    command: `VITE_TEST_HOOKS=1 ${VITE} build --outDir ${DIST} --emptyOutDir --logLevel warn && ${VITE} preview --outDir ${DIST} --host 127.0.0.1 --port 0 --strictPort`,
    wait: { stdout: /http:\/\/127\.0\.0\.1:(?<e2e_app_port>\d+)/ },
    timeout: 240_000,
    reuseExistingServer: false,
    stdout: 'pipe',
  },
});
