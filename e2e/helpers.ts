/**
 * Shared pieces of the app's e2e tests: the app's address, the stub model, the CLI oracle,
 * screenshots, and a look into the page's IndexedDB.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, type Page } from '@playwright/test';

export const ROOT = resolve(import.meta.dirname, '..');
export const TINY = join(ROOT, 'fixtures', 'tiny-q4_0.gguf');
/** Small chunks so a ~50 MB stub model spans many chunks (resume from a chunk boundary). */
export const CHUNK = 4 * 1024 * 1024;

export function tinyModel(): Uint8Array {
  if (!existsSync(TINY)) throw new Error(`${TINY} is missing: run \`npm run fixtures\` first`);
  return new Uint8Array(readFileSync(TINY));
}

export const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** The app's URL (vite preview's port comes from playwright.config.ts's webServer.wait). */
export function appUrl(params: Record<string, string> = {}): string {
  const port = process.env.E2E_APP_PORT;
  if (!port) throw new Error('E2E_APP_PORT is not set: run the tests through playwright.config.ts');
  const q = new URLSearchParams({ chunkSize: String(CHUNK), ...params });
  return `http://127.0.0.1:${port}/?${q}`;
}

export async function shot(page: Page, name: string): Promise<void> {
  const dir = join(ROOT, 'test-results', 'screens');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
}

/** The CLI's greedy continuation of `prompt` (the engine run in Node: an independent host). */
export async function cliGreedy(modelPath: string, prompt: string, maxTokens: number): Promise<string> {
  const { stdout } = await promisify(execFile)(
    'npm',
    [
      'run',
      '--silent',
      'cli',
      '--',
      'generate',
      '--model-path',
      modelPath,
      '--prompt',
      prompt,
      '--temperature',
      '0',
      '--max-tokens',
      String(maxTokens),
      '--json',
    ],
    {
      cwd: ROOT,
      timeout: 400_000,
      maxBuffer: 16 << 20,
      // Dawn finds the software (SwiftShader) Vulkan driver only through this variable.
      env: { ...process.env, VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' },
    },
  );
  const last = stdout.trim().split('\n').pop() ?? '';
  const out = JSON.parse(last) as { text: string[] };
  return out.text[0];
}

/**
 * The CLI's greedy reply to a conversation (`generate --messages FILE --json`: the same engine in
 * Node, an independent host).
 */
export async function cliChatGreedy(
  modelPath: string,
  messages: { role: string; content: string }[],
  maxTokens: number,
): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'chat-e2e-'));
  const file = join(dir, 'messages.json');
  writeFileSync(file, JSON.stringify(messages));
  try {
    const { stdout } = await promisify(execFile)(
      'npm',
      [
        'run',
        '--silent',
        'cli',
        '--',
        'generate',
        '--model-path',
        modelPath,
        '--messages',
        file,
        '--temperature',
        '0',
        '--max-tokens',
        String(maxTokens),
        '--json',
      ],
      {
        cwd: ROOT,
        timeout: 400_000,
        maxBuffer: 16 << 20,
        env: { ...process.env, VK_ICD_FILENAMES: '/usr/lib/chromium/vk_swiftshader_icd.json' },
      },
    );
    const last = stdout.trim().split('\n').pop() ?? '';
    return (JSON.parse(last) as { text: string[] }).text[0];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The greedy replies, turn by turn, to a conversation of these user messages (the CLI, once per turn). */
export async function cliChatTurns(modelPath: string, users: string[], maxTokens: number): Promise<string[]> {
  const messages: { role: string; content: string }[] = [];
  const replies: string[] = [];
  for (const content of users) {
    messages.push({ role: 'user', content });
    const reply = await cliChatGreedy(modelPath, messages, maxTokens);
    messages.push({ role: 'assistant', content: reply });
    replies.push(reply);
  }
  return replies;
}

/** The cache manager's line for a model (by its file name). */
export function cacheEntry(page: Page, name: string) {
  return page.getByRole('listitem').filter({ hasText: name });
}

/** Load a model by URL through the UI and wait until it is ready. */
export async function loadByUrl(page: Page, url: string): Promise<void> {
  await page.getByLabel('Model URL').fill(url);
  await page.getByRole('button', { name: 'Load model' }).click();
  await expect(page.getByRole('status')).toBeVisible({ timeout: 300_000 });
}

/** Set greedy decoding and a token budget. */
export async function greedy(page: Page, maxTokens: number): Promise<void> {
  await page.getByLabel('Temperature').fill('0');
  await page.getByLabel('Max tokens').fill(String(maxTokens));
}

/** Generated text of output `i` (without the echoed prompt). */
export function outputText(page: Page, i = 0) {
  return page.getByLabel('Output').locator('article').nth(i).locator('.text');
}

/** sha-256 of the cached copy of `url`, read back from the page's IndexedDB (manifest + chunk records). */
export async function cachedSha256(
  page: Page,
  url: string,
): Promise<{ sha: string; complete: boolean; chunks: number }> {
  return page.evaluate(async (id) => {
    const db = await new Promise<IDBDatabase>((ok, fail) => {
      const r = indexedDB.open('llama3-webgpu');
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(r.error);
    });
    const get = (key: string) =>
      new Promise<unknown>((ok, fail) => {
        const r = db.transaction('models').objectStore('models').get(key);
        r.onsuccess = () => ok(r.result);
        r.onerror = () => fail(r.error);
      });
    const m = (await get(`m:${id}`)) as { complete: boolean; storedChunks: number };
    const parts: ArrayBuffer[] = [];
    for (let i = 0; i < m.storedChunks; i++) {
      const chunk = (await get(`c:${String(i).padStart(6, '0')}:${id}`)) as { data: Blob };
      parts.push(await chunk.data.arrayBuffer());
    }
    const all = await new Blob(parts).arrayBuffer();
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', all));
    db.close();
    return {
      sha: [...d].map((x) => x.toString(16).padStart(2, '0')).join(''),
      complete: m.complete,
      chunks: m.storedChunks,
    };
  }, url);
}

/** Chunks the page's cache holds for `url` so far (0 when there is no manifest). */
export async function cachedChunkCount(page: Page, url: string): Promise<number> {
  return page.evaluate(async (id) => {
    const db = await new Promise<IDBDatabase>((ok, fail) => {
      const r = indexedDB.open('llama3-webgpu');
      r.onsuccess = () => ok(r.result);
      r.onerror = () => fail(r.error);
    });
    try {
      if (!db.objectStoreNames.contains('models')) return 0;
      const m = await new Promise<{ storedChunks: number } | undefined>((ok, fail) => {
        const r = db.transaction('models').objectStore('models').get(`m:${id}`);
        r.onsuccess = () => ok(r.result);
        r.onerror = () => fail(r.error);
      });
      return m?.storedChunks ?? 0;
    } finally {
      db.close();
    }
  }, url);
}
