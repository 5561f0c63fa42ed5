/**
 * The app end to end: real page, worker, IndexedDB, downloads from a real local HTTP server with
 * faults, and generation on the stub model (fixtures/tiny-q4_0.gguf, random weights, real vocab).
 */
import { expect, test } from '@playwright/test';
import { type ModelServer, startModelServer } from './model-server';
import {
  appUrl,
  CHUNK,
  cachedChunkCount,
  cacheEntry,
  cachedSha256,
  cliGreedy,
  greedy,
  loadByUrl,
  outputText,
  sha256,
  shot,
  TINY,
  tinyModel,
} from './helpers';

const PROMPT = 'Once upon a time';
const N = 8;
const model = tinyModel();
let server: ModelServer;
let expectedGreedy: Promise<string>;

// The service worker (offline app shell) has its own specs; here every load goes to the network or
// the model cache, never to a cached copy of an older build.
test.use({ serviceWorkers: 'block' });

test.beforeAll(async () => {
  server = await startModelServer({ 'tiny.gguf': model });
  // The CLI runs in parallel with the first browser test.
  expectedGreedy = cliGreedy(TINY, PROMPT, N);
  expectedGreedy.catch(() => {});
});
test.afterAll(() => server?.stop());
test.beforeEach(() => {
  server.faults = {};
  server.log = [];
});

test('loads a model by URL with visible progress, streams tokens equal to the CLI greedy text', async ({
  page,
}) => {
  server.faults = { delayMsPerPiece: 1 };
  await page.goto(appUrl());
  await shot(page, '01-start');
  // The page starts loading the bundled demo on open; loading another model replaces that load.
  await page.getByLabel('Model URL').fill(server.fileUrl('tiny.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  const bar = page.getByRole('progressbar');
  await expect(bar).toBeVisible();
  await expect(page.getByText(/Downloading .* of 53\.9 MB/)).toBeVisible();
  await shot(page, '02-downloading');
  await expect(page.getByRole('status')).toContainText('Downloaded and cached', { timeout: 300_000 });
  await expect(page.getByRole('status')).toContainText('tiny-q4_0');
  await expect(bar).toBeHidden();
  await expect(page.getByRole('alert')).toHaveCount(0);
  // The first load read the file while it downloaded (one GET, from byte 0).
  expect(server.log.filter((r) => r.method === 'GET').map((r) => r.range)).toEqual([undefined]);

  await greedy(page, N);
  await page.getByLabel('Prompt').fill(PROMPT);
  // Record every text the output shows, to see tokens arrive one by one.
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { seen: string[] }).seen = seen;
    const target = document.querySelector('[aria-label="Output"]')!;
    new MutationObserver(() => {
      const t = target.querySelector('.text')?.textContent ?? '';
      if (seen[seen.length - 1] !== t) seen.push(t);
    }).observe(target, { subtree: true, childList: true, characterData: true });
  });
  await page.getByLabel('Prompt').press('Control+Enter');
  await expect(page.getByRole('button', { name: 'Stop' })).toBeEnabled();
  await expect(page.getByLabel('Stats')).toBeVisible({ timeout: 300_000 });
  await shot(page, '03-generated');
  const text = await outputText(page).textContent();
  expect(text).toBe(await expectedGreedy);
  const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
  const growing = seen.filter((s) => s.length > 0 && s !== text && text?.startsWith(s));
  expect(growing.length).toBeGreaterThan(0); // partial texts were shown before the end
  await expect(page.getByLabel('Stats')).toContainText('tok/s');
});

test('a cached model loads (?model= in the address) with the server stopped and the network off', async ({
  page,
  context,
}) => {
  const own = await startModelServer({ 'tiny.gguf': model });
  const url = own.fileUrl('tiny.gguf');
  await page.goto(appUrl());
  await loadByUrl(page, url);
  await expect(page.getByRole('status')).toContainText('Downloaded and cached');
  await own.stop();
  // Nothing reaches the model's host any more (the server is gone as well).
  await context.route(`${own.url}/**`, (r) => r.abort('internetdisconnected'));
  // A new visit with `?model=<url>` in the address loads that model on open: from the cache.
  await page.goto(appUrl({ model: url }));
  await expect(page.getByRole('status')).toContainText('Loaded from cache', { timeout: 300_000 });
  await expect(page.getByRole('listitem').filter({ hasText: 'tiny.gguf' })).toBeVisible();
  // The page is up; from now on nothing reaches any network.
  await context.setOffline(true);
  await shot(page, '04-loaded-from-cache');
  await greedy(page, 1);
  await page.getByLabel('Prompt').fill(PROMPT);
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByLabel('Stats')).toBeVisible({ timeout: 300_000 });
  expect((await outputText(page).textContent())?.length).toBeGreaterThan(0);
});

test('resumes after the server cuts the socket; the cached bytes equal the file', async ({ page }) => {
  const cutAt = Math.floor(model.length * 0.4);
  // Paced, so the browser has read what was sent before the reset (an RST discards unread bytes).
  server.faults = { cutAfterBytes: cutAt, cutTimes: 1, delayMsPerPiece: 1 };
  const url = server.fileUrl('tiny.gguf');
  await page.goto(appUrl());
  await loadByUrl(page, url);
  const gets = server.log.filter((r) => r.method === 'GET');
  expect(gets.length).toBe(2);
  // Resume from the end of a complete chunk, at or before the cut.
  const from = Number(/^bytes=(\d+)-$/.exec(gets[1].range ?? '')?.[1]);
  expect(from % CHUNK).toBe(0);
  expect(from).toBeGreaterThanOrEqual(CHUNK);
  expect(from).toBeLessThanOrEqual(cutAt);
  expect(gets[1].status).toBe(206);
  const cached = await cachedSha256(page, url);
  expect(cached.complete).toBe(true);
  expect(cached.chunks).toBe(Math.ceil(model.length / CHUNK));
  expect(cached.sha).toBe(sha256(model));
});

test('a download cut by a page reload is listed as partial and resumes from its chunks', async ({ page }) => {
  server.faults = { delayMsPerPiece: 2 };
  const url = server.fileUrl('tiny.gguf');
  await page.goto(appUrl());
  await page.getByLabel('Model URL').fill(url);
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect.poll(() => cachedChunkCount(page, url), { timeout: 120_000 }).toBeGreaterThanOrEqual(3);
  // The worker dies with the page, in the middle of the download.
  await page.reload();
  const partial = page.getByRole('listitem').filter({ hasText: 'tiny.gguf' });
  await expect(partial).toContainText('partial, resumes on load');
  await shot(page, '11-partial');
  server.faults = {};
  server.log = [];
  await partial.getByRole('button', { name: 'Resume' }).click();
  await expect.poll(() => server.log.find((r) => r.method === 'GET')?.range).toMatch(/^bytes=\d+-$/);
  const from = Number(/\d+/.exec(server.log.find((r) => r.method === 'GET')?.range ?? '')?.[0]);
  expect(from % CHUNK).toBe(0);
  expect(from).toBeGreaterThanOrEqual(3 * CHUNK);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(page.getByRole('alert')).toContainText('Stopped');
});

test('two tabs opening the same model download it once: the second waits, then reads the cache', async ({
  page,
  context,
}) => {
  server.faults = { delayMsPerPiece: 2 };
  const url = server.fileUrl('tiny.gguf');
  await page.goto(appUrl({ model: url }));
  await expect(page.getByText(/Downloading .* of 53\.9 MB/)).toBeVisible();
  const second = await context.newPage();
  await second.goto(appUrl({ model: url }));
  await expect(second.getByText('Another tab is downloading this model')).toBeVisible();
  await shot(second, '13-waiting-for-other-tab');
  await expect(page.getByRole('status')).toContainText('Downloaded and cached', { timeout: 300_000 });
  await expect(second.getByRole('status')).toContainText('Loaded from cache', { timeout: 300_000 });
  expect(server.log.filter((r) => r.method === 'GET')).toHaveLength(1);
  await second.close();
});

test('rejects a web page served instead of the model, and caches nothing', async ({ page }) => {
  server.faults = { html: true };
  await page.goto(appUrl());
  await page.getByLabel('Model URL').fill(server.fileUrl('tiny.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Not a usable GGUF file');
  await expect(alert).toContainText('not a GGUF file');
  await expect(alert).toContainText('<!DOCTYPE');
  await shot(page, '05-not-gguf');
  await expect(cacheEntry(page, 'tiny.gguf')).toHaveCount(0);
});

test('rejects a truncated file, and caches nothing', async ({ page }) => {
  server.faults = { truncateTo: Math.floor(model.length / 2) };
  await page.goto(appUrl());
  await page.getByLabel('Model URL').fill(server.fileUrl('tiny.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Not a usable GGUF file');
  await shot(page, '06-truncated');
  await expect(cacheEntry(page, 'tiny.gguf')).toHaveCount(0);
  await expect(page.getByRole('status')).toHaveCount(0);
});

test('a full disk (quota) stops the download with storage-full and keeps nothing', async ({
  page,
  context,
}) => {
  server.faults = { delayMsPerPiece: 1 };
  // Room for three chunks, set before the first visit. Chromium enforces this quota on IndexedDB
  // writes (estimate() would still report ~10 GiB).
  const origin = new URL(appUrl()).origin;
  const cdp = await context.newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin, quotaSize: 3 * CHUNK });
  await page.goto(appUrl());
  // The demo model (28.7 MB) that loads on open does not fit either.
  const alert = page.getByRole('alert');
  await expect(alert).toContainText('Not enough storage');
  await expect(alert).toContainText('needs 28.7 MB');
  await page.getByLabel('Model URL').fill(server.fileUrl('tiny.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(alert).toContainText('needs 53.9 MB');
  await expect(alert).toContainText('Not enough storage');
  await shot(page, '10-storage-full');
  await expect(cacheEntry(page, 'tiny.gguf')).toHaveCount(0);
  await expect(page.getByText('Nothing cached yet')).toBeVisible();
  await cdp.send('Storage.overrideQuotaForOrigin', { origin });
});

test('opens a local file; stop, chat and a batch of prompts', async ({ page }) => {
  await page.goto(appUrl());
  await page.getByLabel('Open GGUF file').setInputFiles(TINY);
  await expect(page.getByRole('status')).toContainText('Local file', { timeout: 300_000 });

  // Stop mid-generation: the text so far stays, the reason says interrupted.
  await page.getByLabel('Max tokens').fill('200');
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Prompt').fill(PROMPT);
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(outputText(page)).not.toBeEmpty();
  await page.getByRole('button', { name: 'Stop' }).click();
  await expect(page.getByLabel('Output').locator('.finish')).toHaveText('stopped (interrupted)');
  await expect(page.getByRole('button', { name: 'Generate' })).toBeEnabled();
  await shot(page, '07-stopped');

  // Chat mode: the message goes through the chat template and is answered under it; the box clears.
  // The stub is a base model (no "Instruct" in its name), so the page opened in completion and
  // says that chat may ramble.
  await page.getByRole('radio', { name: 'Chat' }).check();
  await expect(page.getByRole('note').filter({ hasText: 'base model' })).toBeVisible();
  await page.getByLabel('Max tokens').fill('1');
  await page.getByLabel('Message').fill('Hello!');
  await page.getByLabel('Message').press('Enter');
  const conversation = page.getByRole('log', { name: 'Conversation' });
  await expect(conversation.getByRole('article', { name: 'You' })).toHaveText(/Hello!/);
  await expect(page.getByLabel('Message')).toHaveValue('');
  await expect(page.getByLabel('Stats')).toBeVisible({ timeout: 300_000 });
  await expect(conversation.getByRole('article', { name: 'Assistant' })).toHaveCount(1);
  await shot(page, '08-chat');

  // A batch: one prompt per line, one output each; the first equals the single-prompt greedy text.
  await page.getByRole('radio', { name: 'Completion' }).check();
  await page.getByLabel('Batch (one per line)').check();
  await page.getByLabel('Max tokens').fill(String(N));
  await page.getByLabel('Prompt').fill(`${PROMPT}\nThe capital of France is`);
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByLabel('Stats')).toBeVisible({ timeout: 300_000 });
  await expect(page.getByLabel('Output').locator('article')).toHaveCount(2);
  await expect(outputText(page, 0)).toHaveText(await expectedGreedy);
  await expect(outputText(page, 1)).not.toBeEmpty();
  await shot(page, '09-batch');
});
