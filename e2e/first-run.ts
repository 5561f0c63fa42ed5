// Shared steps of the demo and offline specs: a production build served by a preview server of our
// own, a fresh browser context that may talk to nothing but the app's origin, and one greedy
// generation with the demo model.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, expect, type Page } from '@playwright/test';
import { greedy, outputText } from './helpers';
import { buildApp, ROOT } from './preview';

/** The build playwright.config.ts's webServer makes before any test runs. */
const SHARED_DIST = join(ROOT, 'node_modules', '.cache', 'e2e-dist');

export const DEMO_FILE = 'models/tinystories-llama3-q4_0.gguf';
export const DEMO_LABEL = 'Demo: TinyStories 37M — a toy; pick a Llama 3 model for real use';
export const PROMPT = 'Once upon a time';
/**
 * llama.cpp's greedy continuation of "Once upon a time" (BOS added) with the demo model, its first
 * 20 tokens: ids 11 1070 574 264 2697 3828 7086 48390 13 3005 10456 311 1514 449 1077 23939 323 8343
 * 76454 3691 (public/models/MODEL.md).
 */
export const GREEDY_20 =
  ', there was a little girl named Lily. She loved to play with her toys and eat yummy food';
/** Its first 8 tokens (11 1070 574 264 2697 3828 7086 48390). */
export const GREEDY_8 = ', there was a little girl named Lily';

/**
 * A private copy of the production build (sw.js included) for one spec: the specs stop and restart
 * their server and the update test rewrites files, which must not touch the shared build.
 */
export async function privateBuild(name: string): Promise<string> {
  const out = join(ROOT, 'node_modules', '.cache', `e2e-${name}`);
  rmSync(out, { recursive: true, force: true });
  if (existsSync(join(SHARED_DIST, 'index.html')) && existsSync(join(SHARED_DIST, 'sw.js'))) {
    cpSync(SHARED_DIST, out, { recursive: true });
  } else {
    await buildApp(out);
  }
  return out;
}

export interface Guarded {
  context: BrowserContext;
  /** Every request the browser attempted (pages, workers, the service worker), in order. */
  requests: string[];
  /** The same as "METHOD url". */
  calls: string[];
  /** Requests to anything but the app's origin: each was aborted, and there must be none. */
  foreign: string[];
}

/** A fresh context (empty IndexedDB, no service worker) where only `origin` is reachable. */
export async function guardedContext(browser: Browser, origin: string): Promise<Guarded> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const requests: string[] = [];
  const calls: string[] = [];
  const foreign: string[] = [];
  const isOurs = (url: string) => url.startsWith(`${origin}/`) || url === origin;
  context.on('request', (r) => {
    requests.push(r.url());
    calls.push(`${r.method()} ${r.url()}`);
    if (!isOurs(r.url()) && !r.url().startsWith('data:') && !r.url().startsWith('blob:'))
      foreign.push(r.url());
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    return isOurs(url) ? route.continue() : route.abort('blockedbyclient');
  });
  return { context, requests, calls, foreign };
}

/** Waits until the page is controlled by the service worker (first visit: after install + claim). */
export async function waitForServiceWorker(page: Page): Promise<void> {
  await page.waitForFunction(() => navigator.serviceWorker?.controller !== null, undefined, {
    timeout: 60_000,
  });
}

/** Loaded-model status line: "Bundled demo" (or "Downloaded and cached") on the first visit, "Loaded from cache" later. */
export function modelStatus(page: Page) {
  return page
    .getByRole('status')
    .filter({ hasText: /Loaded from cache|Downloaded and cached|Bundled demo|Local file/ });
}

/**
 * Greedy (temperature 0), `tokens` tokens from "Once upon a time" (loading the selected model first
 * when none is loaded); returns the generated text.
 */
export async function generateGreedy(page: Page, tokens = 20): Promise<string> {
  await page.getByLabel('Prompt').fill(PROMPT);
  await greedy(page, tokens);
  await page.getByRole('button', { name: 'Generate', exact: true }).click();
  // The finish reason appears when the generation is over: no end-of-text this early → the length limit.
  await expect(page.getByLabel('Output').locator('.finish').first()).toHaveText(
    'stopped at the length limit',
    {
      timeout: 480_000,
    },
  );
  return (await outputText(page).textContent()) ?? '';
}
