// A browser without WebGPU: the page says so plainly, does not start the demo's load on open, and a
// load the user asks for is refused with the same message before a single model byte is fetched.
import { expect, test } from '@playwright/test';
import { CHROMIUM_FLAGS } from '../playwright.config';
import { appUrl, cacheEntry, shot } from './helpers';

// Chromium on Linux exposes WebGPU only behind these flags: without them there is no adapter.
const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];
test.use({
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: [...CHROMIUM_FLAGS.filter((f) => !WEBGPU_FLAGS.includes(f)), '--disable-gpu'],
  },
  serviceWorkers: 'block',
});

test('no WebGPU: a clear banner, no model download, and Load model explains why', async ({ page }) => {
  const modelRequests: string[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('.gguf')) modelRequests.push(r.url());
  });
  await page.goto(appUrl());
  const banner = page.getByRole('alert').filter({ hasText: 'WebGPU is not available' });
  await expect(banner).toBeVisible();
  await expect(banner).toContainText(/Chrome or Edge|chrome:\/\/gpu/);
  // The demo stays selected but is not loaded: this machine could not run it.
  await expect(page.getByRole('button', { name: /Demo: TinyStories 37M/ })).toHaveClass(/selected/);
  await page.waitForTimeout(1_000);
  await expect(page.getByRole('status')).toHaveCount(0);

  await page.getByRole('button', { name: 'Load model' }).click();
  const refusal = page.locator('[role="alert"][data-code="no-webgpu"]');
  await expect(refusal).toContainText('WebGPU is not available');
  await shot(page, '12-no-webgpu');
  expect(modelRequests).toEqual([]);
  await expect(page.getByText('Nothing cached yet')).toBeVisible();
  await expect(cacheEntry(page, 'tinystories')).toHaveCount(0);
});
