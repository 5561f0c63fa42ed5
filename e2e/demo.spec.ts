// First visit, production build: with nothing cached the app picks the bundled demo model and loads
// it on open from its own origin (no other host is reachable, and none is even tried); then it writes
// llama.cpp's greedy story from "Once upon a time".
import { join } from 'node:path';
import { expect, test } from '@playwright/test';
import {
  DEMO_FILE,
  DEMO_LABEL,
  GREEDY_20,
  generateGreedy,
  guardedContext,
  modelStatus,
  privateBuild,
} from './first-run';
import { ROOT, shot } from './helpers';
import { type PreviewServer, startPreview } from './preview';

let server: PreviewServer;

test.beforeAll(async () => {
  server = await startPreview(await privateBuild('demo'));
});
test.afterAll(async () => {
  await server?.stop();
});

test('first visit: the demo model is the default, loads from this origin and writes the greedy story', async ({
  browser,
}) => {
  test.setTimeout(600_000); // one load and one generation in software (SwiftShader or the CPU reference)
  const { context, requests, foreign } = await guardedContext(browser, server.origin);
  const page = await context.newPage();
  await page.goto(server.url);

  // Said plainly, next to the real presets, and selected.
  const demo = page.getByRole('button', { name: new RegExp(DEMO_LABEL) });
  await expect(demo).toBeVisible();
  await expect(demo).toHaveClass(/selected/);
  await expect(page.getByRole('button', { name: /Llama 3\.2 1B Instruct \(q4_0\)/ })).toBeVisible();
  await expect(page.getByRole('button', { name: /Llama 3\.2 1B Instruct \(Q4_K_M\)/ })).toBeVisible();

  // Opening the page loads it, with a plain fetch from the app's own origin (no dialog), and caches it.
  await expect(modelStatus(page)).toContainText('Bundled demo', { timeout: 300_000 });
  expect([...new Set(requests.filter((u) => u.includes('/models/')))]).toEqual([
    `${server.origin}/${DEMO_FILE}`,
  ]);
  await expect(page.getByRole('alert')).toHaveCount(0);

  // Typing "Once upon a time" and pressing Generate writes llama.cpp's greedy story.
  const text = await generateGreedy(page);
  expect(text).toBe(GREEDY_20);
  await expect(page.getByLabel('Output')).toContainText(`Once upon a time${GREEDY_20}`);

  await shot(page, 'demo-first-run');
  // The README's picture (docs/first-run.png is copied from this one): the page down to the stats.
  const stats = await page.getByLabel('Stats').boundingBox();
  if (stats) {
    await page.screenshot({
      path: join(ROOT, 'test-results', 'screens', 'first-run-docs.png'),
      fullPage: true,
      clip: { x: 0, y: 0, width: page.viewportSize()?.width ?? 1100, height: stats.y + stats.height + 24 },
    });
  }
  expect(foreign, 'requests outside the app origin').toEqual([]);
  await context.close();
});
