/**
 * The chat page without a model run: a saved conversation (as IndexedDB holds it) is restored after
 * a reload and offline, its hostile answer renders as text (nothing runs, no element, no link), and
 * axe-core finds no serious or critical WCAG 2.1 AA violation in light, dark and a 390×844 phone.
 * No model is loaded (the address names one that does not exist), so the file takes seconds.
 */
import { join } from 'node:path';
import AxeBuilder from '@axe-core/playwright';
import { expect, type Page, test } from '@playwright/test';
import { waitForServiceWorker } from './first-run';
import { appUrl, ROOT, shot } from './helpers';

/** An answer written to break out of its message, and one that uses the Markdown the page renders. */
const HOSTILE = [
  'Here: <img src=x onerror="window.pwned=1">',
  '<script>window.pwned=2</script>',
  '[click me](javascript:window.pwned=3)',
  '<a href="javascript:window.pwned=4">link</a> <svg onload="window.pwned=5"></svg>',
].join('\n\n');
const RICH = [
  'Three llamas:',
  '- **Alpaca**, the small one',
  '- *Guanaco*, the wild one',
  '',
  '| name | height |',
  '|---|---|',
  '| llama | 1.8 m |',
  '',
  '```js\nconst llama = { legs: 4 };\n```',
].join('\n');

const conversation = (id: string, updatedAt: number, messages: { role: string; content: string }[]) => ({
  id,
  title: '',
  system: '',
  messages,
  createdAt: updatedAt,
  updatedAt,
});

/** Writes conversations into the page's store, as ConversationStore.save does (idb-keyval layout). */
async function seed(page: Page, conversations: ReturnType<typeof conversation>[]) {
  await page.evaluate(async (list) => {
    // The page creates the database on open; wait for it rather than create a bare one.
    for (let i = 0; i < 100; i++) {
      if ((await indexedDB.databases()).some((d) => d.name === 'llama3-webgpu-conversations')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const db = await new Promise<IDBDatabase>((ok, fail) => {
      const r = indexedDB.open('llama3-webgpu-conversations');
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(r.error);
    });
    await new Promise<void>((ok, fail) => {
      const tx = db.transaction('conversations', 'readwrite');
      for (const c of list) tx.objectStore('conversations').put(c, `conv:${c.id}`);
      tx.oncomplete = () => ok();
      tx.onerror = () => fail(tx.error);
    });
    db.close();
  }, conversations);
}

const log = (page: Page) => page.getByRole('log', { name: 'Conversation' });

let page: Page;
test.describe.configure({ mode: 'serial' });

test.beforeAll(async ({ browser }) => {
  // axe-core's Playwright runner needs a page of a context made with newContext().
  page = await (await browser.newContext()).newPage();
  // A model address that answers nothing: the page shows its error and runs no model.
  await page.goto(appUrl({ model: 'http://127.0.0.1:9/none.gguf' }));
  await waitForServiceWorker(page);
  const now = Date.now();
  await seed(page, [
    conversation('rich', now - 1000, [
      { role: 'user', content: 'Tell me about llamas' },
      { role: 'assistant', content: RICH },
    ]),
    conversation('hostile', now, [
      { role: 'user', content: '<img src=z onerror="window.pwned=6">' },
      { role: 'assistant', content: HOSTILE },
    ]),
  ]);
});
test.afterAll(async () => {
  await page?.context().close();
});

test('a saved conversation is restored after a reload, and offline; model output never becomes live HTML', async () => {
  await page.context().setOffline(true);
  await page.reload();
  await page.getByRole('radio', { name: 'Chat' }).check();
  // The newest conversation opens; the list names both by their first message.
  const list = page.getByRole('navigation', { name: 'Conversations' });
  await expect(list.getByRole('button', { name: 'Tell me about llamas', exact: true })).toBeVisible();
  await expect(
    list.getByRole('button', { name: '<img src=z onerror="window.pwned=6">', exact: true }),
  ).toHaveAttribute('aria-current', 'page');
  await expect(log(page).getByRole('article', { name: 'You' })).toContainText('<img src=z onerror=');
  await expect(log(page).getByRole('article', { name: 'Assistant' })).toContainText(
    '<script>window.pwned=2</script>',
  );
  await expect(log(page).getByRole('link')).toHaveCount(0);
  expect(
    await log(page).locator('img, script, svg, iframe, [onerror], [onload], a[href^="javascript" i]').count(),
  ).toBe(0);
  expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
  await shot(page, 'chat-hostile');

  // The other conversation: lists, a table and a code block with its copy button.
  await list.getByRole('button', { name: 'Tell me about llamas', exact: true }).click();
  const answer = log(page).getByRole('article', { name: 'Assistant' });
  await expect(answer.getByRole('listitem')).toHaveCount(2);
  await expect(answer.getByRole('table')).toContainText('1.8 m');
  await expect(answer.locator('pre code')).toHaveText('const llama = { legs: 4 };');
  await expect(answer.getByRole('button', { name: 'Copy code' })).toBeVisible();
  await expect(answer.getByRole('button', { name: 'Copy', exact: true })).toBeVisible();
  await page.context().setOffline(false);
});

for (const [name, scheme, viewport] of [
  ['light', 'light', undefined],
  ['dark', 'dark', undefined],
  ['phone', 'light', { width: 390, height: 844 }],
] as const) {
  test(`axe-core: no serious or critical WCAG 2.1 AA violations (${name})`, async () => {
    await page.emulateMedia({ colorScheme: scheme });
    await page.setViewportSize(viewport ?? { width: 1280, height: 900 });
    await expect(log(page)).toBeVisible();
    const results = await new AxeBuilder({ page })
      .withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'])
      .analyze();
    const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    expect(bad.map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(' | ')}`)).toEqual([]);
    await shot(page, `chat-${name}`);
  });
}

test('rename and delete (confirmed) a conversation; the README pictures', async () => {
  await page.emulateMedia({ colorScheme: 'light' });
  await page.setViewportSize({ width: 1280, height: 900 });
  const list = page.getByRole('navigation', { name: 'Conversations' });
  // Delete asks first: dismissed, nothing changes; accepted, it is gone.
  page.once('dialog', (d) => d.dismiss());
  await list.getByRole('button', { name: /^Delete <img/ }).click();
  await expect(list.getByRole('listitem')).toHaveCount(2);
  page.once('dialog', (d) => d.accept());
  await list.getByRole('button', { name: /^Delete <img/ }).click();
  await expect(list.getByRole('listitem')).toHaveCount(1);

  await list.getByRole('button', { name: 'Rename Tell me about llamas' }).click();
  await page.getByLabel('Conversation name').fill('Llamas');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(list.getByRole('button', { name: 'Llamas', exact: true })).toBeVisible();
  await list.getByRole('button', { name: 'Llamas', exact: true }).click();
  await expect(log(page).getByRole('table')).toBeVisible();

  // docs/chat.png and docs/chat-phone.png are copied from these (the chat card; the phone's first screen).
  await page
    .locator('section.generate')
    .screenshot({ path: join(ROOT, 'test-results', 'screens', 'chat-docs.png') });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(ROOT, 'test-results', 'screens', 'chat-phone-docs.png') });
});
