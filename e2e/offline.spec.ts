// The installed app shell, production build: the second visit opens and generates with the server
// gone; model bytes live in IndexedDB, never in the service-worker cache; a new version waits for the
// user's "Reload to update" instead of swapping code under a running page.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, type Page, test } from '@playwright/test';
import { writeServiceWorker } from '../src/sw/vite-plugin';
import {
  DEMO_FILE,
  GREEDY_8,
  GREEDY_20,
  generateGreedy,
  guardedContext,
  modelStatus,
  PROMPT,
  privateBuild,
  waitForServiceWorker,
} from './first-run';
import { greedy, outputText, shot } from './helpers';
import { type PreviewServer, startDevServer, startPreview } from './preview';

let dist: string;
let server: PreviewServer | undefined;

test.beforeAll(async () => {
  dist = await privateBuild('offline');
});
test.afterAll(async () => {
  await server?.stop();
});

/** URLs in every Cache Storage cache of the page's origin. */
function cachedUrls(page: Page): Promise<string[]> {
  return page.evaluate(async () => {
    const urls: string[] = [];
    for (const name of await caches.keys()) {
      for (const req of await (await caches.open(name)).keys()) urls.push(req.url);
    }
    return urls;
  });
}

test('second visit with the server stopped: the shell comes from the service worker, the model from IndexedDB', async ({
  browser,
}) => {
  // Two loads and a generation of the demo model, in software (SwiftShader or the CPU reference).
  test.setTimeout(900_000);
  server = await startPreview(dist);
  const { context, requests, calls, foreign } = await guardedContext(browser, server.origin);
  const page = await context.newPage();
  await page.goto(server.url);
  await waitForServiceWorker(page);
  // First visit: the default (demo) model loads on open, from the origin into IndexedDB. Generating
  // with it on the first visit is demo.spec.ts's job; here the point is what the second visit can do.
  await expect(modelStatus(page)).toContainText('Bundled demo', { timeout: 300_000 });

  // The shell is precached; the model is not (it is in IndexedDB only).
  const cached = await cachedUrls(page);
  expect(cached).toContain(`${server.origin}/index.html`);
  expect(cached).toContain(`${server.origin}/manifest.webmanifest`);
  expect(cached.some((u) => /\/assets\/.*\.js$/.test(u))).toBe(true);
  expect(cached.filter((u) => u.includes('/models/') || u.endsWith('.gguf'))).toEqual([]);
  // The demo was downloaded once.
  expect(requests.filter((u) => u === `${server?.origin}/${DEMO_FILE}`).length).toBeGreaterThan(0);

  // Offline: nothing listens on the origin any more.
  await server.stop();
  await expect(page.request.get(server.url).then((r) => r.status())).rejects.toThrow();
  const before = calls.length;
  const nav = await page.reload();
  expect(nav?.fromServiceWorker(), 'page served by the service worker').toBe(true);
  // The demo is the only cached model, so it is still the default and loads on open, from IndexedDB.
  // Generate pressed at once waits for that load (saying so), then writes.
  const written = generateGreedy(page, 8);
  await expect(page.getByText('starts as soon as the model has loaded')).toBeVisible();
  expect(await written).toBe(GREEDY_8);
  await expect(modelStatus(page)).toContainText('Loaded from cache');
  // The model did not go to the network this time (the reload asked for no model bytes): at most
  // the revalidation's HEAD (it changed? — the server is gone, so it says nothing).
  const modelCalls = calls.slice(before).filter((c) => c.includes('/models/'));
  expect(modelCalls.filter((c) => !c.startsWith('HEAD '))).toEqual([]);
  expect(modelCalls.length).toBeLessThanOrEqual(1);

  await shot(page, 'offline-second-visit');
  expect(foreign, 'requests outside the app origin').toEqual([]);
  await context.close();
});

/** The version of the service worker that controls `page` (the build's content hash). */
function swVersion(page: Page): Promise<string> {
  return page.evaluate(
    () =>
      new Promise<string>((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = (e) => resolve(e.data.version);
        navigator.serviceWorker.controller!.postMessage({ type: 'GET_VERSION' }, [ch.port2]);
      }),
  );
}

test('a new version waits: a running generation goes on, "Reload to update" shows, the click switches', async ({
  browser,
}) => {
  test.setTimeout(600_000);
  server = await startPreview(dist);
  const { context, foreign } = await guardedContext(browser, server.origin);
  const page = await context.newPage();
  await page.goto(server.url);
  await waitForServiceWorker(page);
  const v1 = await swVersion(page);
  const title1 = await page.title();
  const banner = page.getByRole('button', { name: 'Reload to update' });
  // The first install is not an update.
  await expect(banner).toHaveCount(0);

  // A long greedy generation is running in this page while the new version arrives (the demo model
  // loads on open).
  await expect(modelStatus(page)).toContainText('Bundled demo', { timeout: 300_000 });
  await page.getByLabel('Prompt').fill(PROMPT);
  await greedy(page, 400);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  const stop = page.getByRole('button', { name: 'Stop' });
  await expect(stop).toBeEnabled();

  // Deploy a new version on the same origin: a changed index.html, and the sw.js the build step
  // writes for it (a new list hash → new bytes → the browser installs it next to the old one).
  await server.stop();
  const html = join(dist, 'index.html');
  writeFileSync(
    html,
    readFileSync(html, 'utf8').replace(/<title>([^<]*)<\/title>/, '<title>$1 (v2)</title>'),
  );
  const sw2 = await writeServiceWorker(dist);
  expect(sw2.version).not.toBe(v1);
  server = await startPreview(dist, server.port);

  // Another tab opens the app: the browser finds the new worker, installs it, and it waits.
  const other = await context.newPage();
  await other.goto(server.url);
  await expect(other.getByRole('button', { name: 'Reload to update' })).toBeVisible({ timeout: 60_000 });
  await other.close();

  // The generating page is told, and nothing else happens to it: same version, still generating.
  await expect(banner).toBeVisible({ timeout: 60_000 });
  expect(await page.title()).toBe(title1);
  expect(await swVersion(page)).toBe(v1);
  await expect(stop).toBeEnabled();
  await shot(page, 'update-banner');
  // Stop it ourselves: the text so far is the greedy story, uninterrupted by the update.
  await stop.click();
  const out = page.getByLabel('Output');
  await expect(out.locator('.finish').first()).toHaveText('stopped (interrupted)', { timeout: 120_000 });
  const text = (await outputText(page).textContent()) ?? '';
  expect(text.length).toBeGreaterThan(0);
  expect(GREEDY_20.startsWith(text) || text.startsWith(GREEDY_20), `greedy text: ${text}`).toBe(true);

  await banner.click();
  await expect(page).toHaveTitle(`${title1} (v2)`, { timeout: 60_000 });
  await waitForServiceWorker(page);
  expect(await swVersion(page)).toBe(sw2.version);
  await expect(banner).toHaveCount(0);
  expect(foreign, 'requests outside the app origin').toEqual([]);
  await context.close();
  await server.stop();
  server = undefined;
});

test('the dev server gets no service worker (hot reload is never served from a cache)', async ({
  browser,
}) => {
  const dev = await startDevServer();
  try {
    const context = await browser.newContext();
    const asked: string[] = [];
    context.on('request', (r) => asked.push(new URL(r.url()).pathname));
    const page = await context.newPage();
    await page.goto(dev.url);
    await expect(page.getByRole('heading', { name: 'Llama 3 on WebGPU' })).toBeVisible({ timeout: 120_000 });
    // Registration would have happened on mount; give a stray one time to show up.
    await page.waitForTimeout(2_000);
    expect(await page.evaluate(async () => (await navigator.serviceWorker.getRegistrations()).length)).toBe(
      0,
    );
    expect(await page.evaluate(() => navigator.serviceWorker.controller)).toBeNull();
    // The dev server has no sw.js (it would answer index.html), so a failed registration would also
    // leave none: the proof that the page did not even try is that nobody asked for sw.js.
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.filter((p) => p.endsWith('/sw.js'))).toEqual([]);
    await context.close();
  } finally {
    await dev.stop();
  }
});
