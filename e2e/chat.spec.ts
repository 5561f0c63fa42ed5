/**
 * The chat with a model, end to end: the real page, worker and IndexedDB, and a stub instruct model
 * (fixtures/tiny-q8_0.gguf: random weights, the real Llama 3 vocabulary and Meta's chat template;
 * served as "…-instruct.gguf", so the page opens it in chat). One model load for the whole file
 * (SwiftShader is slow); the expected replies come from the same engine in Node (e2e/chat-oracle.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, type Page, test } from '@playwright/test';
import { waitForServiceWorker } from './first-run';
import { appUrl, nodeChatGreedy, ROOT, shot } from './helpers';
import { type ModelServer, startModelServer } from './model-server';

const STUB = join(ROOT, 'fixtures', 'tiny-q8_0.gguf');
const FILE = 'tiny-llama3-instruct.gguf';
const USERS = ['Hello! Who are you?', 'Tell me more.'];
const N = 6;
let server: ModelServer;
let page: Page;
let expected: Promise<string[]>;

test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ browser }) => {
  server = await startModelServer({ [FILE]: new Uint8Array(readFileSync(STUB)) });
  // Node computes the expected replies while the browser loads the model.
  expected = nodeChatGreedy(STUB, USERS, N);
  expected.catch(() => {});
  page = await (await browser.newContext()).newPage();
});
test.afterAll(async () => {
  await page?.context().close();
  await server?.stop();
});

const log = () => page.getByRole('log', { name: 'Conversation' });
const answers = () => log().getByRole('article', { name: 'Assistant' });

async function send(text: string) {
  await page.getByLabel('Message').fill(text);
  await page.getByLabel('Message').press('Enter');
  await expect(page.getByLabel('Message')).toHaveValue('');
  await expect(page.getByRole('button', { name: 'Stop' })).toBeHidden({ timeout: 300_000 });
}

test('a two-turn greedy conversation equals the engine in Node, and turn 2 reuses the cache', async () => {
  await page.goto(appUrl({ model: server.fileUrl(FILE) }));
  await expect(page.getByRole('status')).toContainText('Downloaded and cached', { timeout: 300_000 });
  // An instruct model opens in chat.
  await expect(page.getByRole('radio', { name: 'Chat' })).toBeChecked();
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Max tokens').fill(String(N));

  await send(USERS[0]);
  await expect(log().getByRole('article', { name: 'You' })).toHaveText(
    new RegExp(USERS[0].replace('?', '\\?')),
  );
  await expect(answers()).toHaveCount(1);
  const [reply1, reply2] = await expected;
  await expect(answers().first().locator('.md')).toHaveText(reply1.trim());

  await send(USERS[1]);
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
  await expect(page.getByRole('button', { name: 'Stop' })).toBeHidden({ timeout: 300_000 });
  await expect(answers()).toHaveCount(2);
  expect(await answers().nth(1).locator('.md').textContent()).not.toBe(before);
  await expect(page.getByLabel('Stats')).toContainText(/Seed\s*\d+/);
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
  await page.context().setOffline(false);
});
