import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../src/node/paths';
import { NEW_FILE_S, slowestFirst, TEST_BUDGET_S } from './test-budget';

describe('the CI time budget (scripts/test-budget.ts)', () => {
  it('names only test files that exist (a renamed file would silently lose its place)', () => {
    const missing = Object.keys(TEST_BUDGET_S).filter((p) => !existsSync(join(REPO_ROOT, p)));
    expect(missing).toEqual([]);
  });

  it('orders the slowest first, unlisted files at NEW_FILE_S, ties in their given order', () => {
    const [slowest] = Object.entries(TEST_BUDGET_S).sort((a, b) => b[1] - a[1]);
    const fast = Object.entries(TEST_BUDGET_S).find(([, s]) => s < NEW_FILE_S)!;
    const order = slowestFirst(['new-b.test.ts', fast[0], 'new-a.test.ts', slowest[0]], (p) => p);
    expect(order).toEqual([slowest[0], 'new-b.test.ts', 'new-a.test.ts', fast[0]]);
  });
});
