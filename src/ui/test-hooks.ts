/**
 * Settings the end-to-end tests pass in the page's URL (`?chunkSize=` bytes: small chunks to cross
 * chunk boundaries and resume with a small model). They exist only in builds made with
 * VITE_TEST_HOOKS=1, which playwright.config.ts sets for its own build: Vite replaces the flag at
 * build time, so in any other build no URL can change how the app stores models.
 */
import { checkChunkSize } from '../worker/api';

export const TEST_HOOKS_ENABLED: boolean = import.meta.env?.VITE_TEST_HOOKS === '1';

export interface TestHooks {
  chunkSize?: number;
  /** Downloads above this many bytes are confirmed first (`?confirmAbove=`; the tiny model is 54 MB). */
  confirmAbove?: number;
}

/** The hooks in `search` (location.search); nothing unless enabled, and only valid values. */
export function testHooks(search: string, enabled = TEST_HOOKS_ENABLED): TestHooks {
  if (!enabled) return {};
  const params = new URLSearchParams(search);
  const hooks: TestHooks = {};
  const confirmAbove = params.get('confirmAbove');
  if (confirmAbove !== null && /^\d{1,12}$/.test(confirmAbove)) hooks.confirmAbove = Number(confirmAbove);
  const raw = params.get('chunkSize');
  if (raw === null) return hooks;
  try {
    hooks.chunkSize = checkChunkSize(/^\d{1,10}$/.test(raw) ? Number(raw) : Number.NaN);
  } catch (e) {
    console.warn(`?chunkSize=${raw.slice(0, 20)} ignored: ${e instanceof Error ? e.message : e}`);
  }
  return hooks;
}
