// First visit, production build: with nothing cached the app picks the bundled demo model, loads it
// from its own origin (no other host is reachable, and none is even tried), and writes llama.cpp's
// greedy story from "Once upon a time".
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
}, testInfo) => {
  const { context, requests, foreign } = await guardedContext(browser, server.origin);
  const page = await context.newPage();
  await page.goto(server.url);

  // Said plainly, next to the real presets, and selected.
  const demo = page.getByRole('button', { name: new RegExp(DEMO_LABEL) });
  await expect(demo).toBeVisible();
  await expect(demo).toHaveClass(/selected/);
  await expect(page.getByRole('button', { name: /Llama 3\.2 1B Instruct/ })).toBeVisible();

  // Loaded without asking: a plain fetch from the app's own origin, kept in the cache.
  await expect(modelStatus(page)).toContainText('Downloaded and cached', { timeout: 180_000 });
  expect(requests).toContain(`${server.origin}/${DEMO_FILE}`);

  const text = await generateGreedy(page);
  expect(text).toBe(GREEDY_20);
  await expect(page.getByRole('article', { name: 'Output 1' })).toContainText(`Once upon a time${GREEDY_20}`);

  await page.screenshot({ path: testInfo.outputPath('first-run.png') });
  expect(foreign, 'requests outside the app origin').toEqual([]);
  await context.close();
});
