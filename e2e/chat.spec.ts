/**
 * The chat with a model, end to end: the real page, worker and IndexedDB, and a stub instruct model
 * (fixtures/tiny-q8_0.gguf: random weights, the real Llama 3 vocabulary and Meta's chat template;
 * served as "…-instruct.gguf", so the page opens it in chat). One model load for the whole file
 * (SwiftShader is slow); the expected replies come from the CLI's `generate --messages` on the same
 * conversation (the same engine in Node).
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page, test } from '@playwright/test';
import { waitForServiceWorker } from './first-run';
import { appUrl, cliChatTurns, ROOT, shot } from './helpers';
import { type ModelServer, startModelServer } from './model-server';

const STUB = join(ROOT, 'fixtures', 'tiny-q8_0.gguf');
const FILE = 'tiny-llama3-instruct.gguf';
/** The same bytes under another name, for a download that is cancelled. */
const SLOW = 'slow-download.gguf';
const USERS = ['Hello! Who are you?', 'Tell me more.'];
const N = 6;
let server: ModelServer;
let page: Page;
let expected: Promise<string[]>;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ browser }) => {
  const stub = new Uint8Array(readFileSync(STUB));
  server = await startModelServer({ [FILE]: stub, [SLOW]: stub });
  // The CLI computes the expected replies while the browser loads the model.
  expected = cliChatTurns(STUB, USERS, N);
  expected.catch(() => {});
  page = await (await browser.newContext()).newPage();
});
test.afterAll(async () => {
  await page?.context().close();
  await server?.stop();
});

const log = () => page.getByRole('log', { name: 'Conversation' });
const answers = () => log().getByRole('article', { name: 'Assistant' });

/** Sends a message and waits until its answer is complete (the n-th answer in the log). */
async function send(text: string, n: number) {
  await page.getByLabel('Message').fill(text);
  await page.getByLabel('Message').press('Enter');
  await expect(page.getByLabel('Message')).toHaveValue('');
  await expect(answers()).toHaveCount(n, { timeout: 300_000 });
  // The streaming answer has no buttons; the finished last answer has "Regenerate".
  await expect(
    answers()
      .nth(n - 1)
      .getByRole('button', { name: 'Regenerate' }),
  ).toBeVisible({
    timeout: 300_000,
  });
}

test('a two-turn greedy conversation equals `generate --messages`, and turn 2 reuses the cache', async () => {
  // One model load, two turns and the CLI's two runs, all in software on shared cores.
  test.setTimeout(900_000);
  await page.goto(appUrl({ model: server.fileUrl(FILE) }));
  await expect(page.getByRole('status')).toContainText('Downloaded and cached', { timeout: 300_000 });
  // An instruct model opens in chat.
  await expect(page.getByRole('radio', { name: 'Chat' })).toBeChecked();
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Max tokens').fill(String(N));

  await send(USERS[0], 1);
  await expect(log().getByRole('article', { name: 'You' })).toHaveText(
    new RegExp(USERS[0].replace('?', '\\?')),
  );
  await expect(answers()).toHaveCount(1);
  const [reply1, reply2] = await expected;
  await expect(answers().first().locator('.md')).toHaveText(reply1.trim());

  await send(USERS[1], 2);
  await expect(answers()).toHaveCount(2);
  await expect(answers().nth(1).locator('.md')).toHaveText(reply2.trim());
  // Turn 2 prefilled only what follows the cached conversation.
  await expect(page.getByLabel('Stats')).toContainText(/\([1-9]\d* tokens, [1-9]\d* reused\)/);
  await expect(page.getByLabel('Context used')).toBeVisible();
  await shot(page, 'chat-two-turns');
});

test('Regenerate at temperature 0.6 draws a new sample', async () => {
  const before = await answers().nth(1).locator('.md').textContent();
  await page.getByLabel('Temperature').fill('0.6');
  await page.getByLabel('Max tokens').fill('16');
  await page.getByRole('button', { name: 'Regenerate' }).click();
  // The old answer goes, the new one streams (no buttons), then it is finished.
  await expect(page.getByRole('button', { name: 'Regenerate' })).toBeHidden();
  await expect(page.getByRole('button', { name: 'Regenerate' })).toBeVisible({ timeout: 300_000 });
  await expect(answers()).toHaveCount(2);
  expect(await answers().nth(1).locator('.md').textContent()).not.toBe(before);
  await expect(page.getByLabel('Stats')).toContainText(/Seed\s*\d+/);
});

test('a load that fails or is cancelled keeps the loaded model, which still answers', async () => {
  const alert = page.getByRole('alert');
  await page.getByLabel('Model URL').fill(server.fileUrl('missing.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(alert).toContainText('Loading missing.gguf failed');
  await expect(alert).toContainText('404');
  await expect(alert).toContainText('Still using tiny');
  await shot(page, 'load-failed-still-using');

  // A server that answers but sends no CORS headers: the one case that names CORS.
  const noCors = createServer((_req, res) => res.writeHead(200, { 'Content-Length': 4 }).end('GGUF'));
  await new Promise<void>((r) => noCors.listen(0, '127.0.0.1', r));
  try {
    const { port } = noCors.address() as AddressInfo;
    await page.getByLabel('Model URL').fill(`http://127.0.0.1:${port}/elsewhere.gguf`);
    await page.getByRole('button', { name: 'Load model' }).click();
    await expect(alert).toContainText('Loading elsewhere.gguf failed');
    await expect(alert).toContainText('blocked by CORS');
    await expect(alert).toContainText('Still using tiny');
  } finally {
    noCors.closeAllConnections();
    await new Promise((r) => noCors.close(r));
  }

  // Cancelled mid-download (a slow server): the model loaded before is still the one in use.
  server.faults = { delayMsPerPiece: 50 };
  await page.getByLabel('Model URL').fill(server.fileUrl(SLOW));
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(page.getByText(/Downloading .* of /)).toBeVisible();
  await page.getByRole('button', { name: 'Cancel' }).click();
  await expect(alert).toContainText(`Loading ${SLOW} was cancelled. Still using tiny`);
  server.faults = {};

  await page.getByLabel('Max tokens').fill('1');
  await send('Still there?', 3);
  await expect(page.getByRole('alert')).toHaveCount(0);
});

test('the conversation is restored after a reload, offline', async () => {
  const texts = await log().getByRole('article').allTextContents();
  await waitForServiceWorker(page);
  await page.context().setOffline(true);
  // No model in the address: the cached model is selected, not loaded; the conversation is there.
  await page.goto(appUrl());
  await expect(page.getByRole('radio', { name: 'Chat' })).toBeChecked();
  await expect(log().getByRole('article')).toHaveCount(texts.length);
  expect(await log().getByRole('article').allTextContents()).toEqual(texts);
  await expect(page.getByRole('navigation', { name: 'Conversations' })).toContainText(USERS[0]);
  await shot(page, 'chat-restored-offline');
  // Offline, a model that is not cached cannot load, and the page says why.
  await page.getByLabel('Model URL').fill(server.fileUrl('not-cached.gguf'));
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(page.getByRole('alert')).toContainText('you are offline');
  await page.context().setOffline(false);
});

test('a large download asks first, in a dialog: size, GPU memory against the adapter, Escape cancels', async () => {
  // This build confirms downloads above 1 kB (real ones: above 500 MB).
  await page.goto(appUrl({ confirmAbove: '1000' }));
  await page.getByLabel('Model URL').fill(server.fileUrl(SLOW));
  await page.getByRole('button', { name: 'Load model' }).click();
  const dialog = page.getByRole('dialog', { name: `Download ${SLOW}?` });
  await expect(dialog).toBeVisible();
  await expect(dialog).toContainText(/\d+(\.\d)? MB to download/);
  // The estimate comes from the header (Range requests), at the context a load here picks.
  await expect(dialog).toContainText(
    /about [\d.]+ MB: weights [\d.]+ MB \+ KV cache [\d.]+ [kM]B at [\d,]+ positions/,
  );
  await expect(dialog).toContainText(/one buffer up to [\d.]+ [MG]B, one binding up to/);
  await shot(page, 'download-dialog');
  for (const scheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    const axe = await new AxeBuilder({ page })
      .include('dialog')
      .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
      .analyze();
    const bad = axe.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    expect(
      bad.map((v) => `${scheme} ${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(' | ')}`),
    ).toEqual([]);
  }
  await page.emulateMedia({ colorScheme: 'light' });
  // Focus starts on Download and stays inside the dialog.
  const download = dialog.getByRole('button', { name: /^Download/ });
  await expect(download).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(dialog.getByRole('button', { name: 'Cancel' })).toBeFocused();
  await page.keyboard.press('Tab');
  await expect(download).toBeFocused();
  await page.keyboard.press('Shift+Tab');
  await expect(dialog.getByRole('button', { name: 'Cancel' })).toBeFocused();
  // Escape cancels: nothing loads.
  await page.keyboard.press('Escape');
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('progressbar')).toHaveCount(0);
  await page.getByRole('button', { name: 'Load model' }).click();
  await dialog.getByRole('button', { name: 'Cancel' }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByRole('progressbar')).toHaveCount(0);
});
