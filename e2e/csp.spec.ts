// The Content-Security-Policy (src/csp.ts) of the production build, as `vite preview` serves it: the
// page downloads a model from another origin (the local model server), runs it in the engine worker
// and generates, and nothing the app does is refused. Then the policy is shown to be in force: an
// injected inline script, an inline event handler, code from a string, and a plain-http download
// from another host (from the page and from the worker) are each refused and reported.
import { expect, type Page, test, type Worker } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CSP_HEADER, CSP_META } from '../src/csp';
import { GREEDY_8, generateGreedy } from './first-run';
import { appUrl, ROOT } from './helpers';
import { type ModelServer, startModelServer } from './model-server';

interface Violation {
  directive: string;
  blocked: string;
  /** The policy that refused it: the page enforces two, the meta tag's and the header's. */
  policy: string;
}

/** Records `securitypolicyviolation` events of the document from its first script on. */
function recordViolations(): void {
  const seen: { directive: string; blocked: string; policy: string }[] = [];
  (window as unknown as { cspViolations: typeof seen }).cspViolations = seen;
  document.addEventListener('securitypolicyviolation', (e) =>
    seen.push({ directive: e.effectiveDirective, blocked: e.blockedURI, policy: e.originalPolicy }),
  );
}

const pageViolations = (page: Page) =>
  page.evaluate(() => (window as unknown as { cspViolations: Violation[] }).cspViolations);

/** Starts recording the worker's own violations (it has its own global and its own policy). */
async function watchWorker(worker: Worker): Promise<void> {
  await worker.evaluate(() => {
    const seen: { directive: string; blocked: string; policy: string }[] = [];
    (self as unknown as { cspViolations: typeof seen }).cspViolations = seen;
    self.addEventListener('securitypolicyviolation', (e) =>
      seen.push({ directive: e.effectiveDirective, blocked: e.blockedURI, policy: e.originalPolicy }),
    );
  });
}

/** "directive meta|header" per violation, sorted (which directive refused it, under which delivery). */
const summary = (violations: Violation[]) =>
  violations
    .map(
      (v) =>
        `${v.directive} ${v.policy === CSP_HEADER ? 'header' : v.policy === CSP_META ? 'meta' : v.policy}`,
    )
    .sort();

const workerViolations = (worker: Worker) =>
  worker.evaluate(() => (self as unknown as { cspViolations: Violation[] }).cspViolations);

let server: ModelServer;

test.beforeAll(async () => {
  // The demo model, but from another origin: the download goes through connect-src.
  const demo = new Uint8Array(readFileSync(join(ROOT, 'public/models/tinystories-llama3-q4_0.gguf')));
  server = await startModelServer({ 'story.gguf': demo });
});
test.afterAll(() => server?.stop());

test('downloads, runs the worker and generates under the policy with no violation; the policy is in force', async ({
  page,
}) => {
  test.setTimeout(600_000); // one download, one load and 8 tokens in software (SwiftShader)
  const consoleCsp: string[] = [];
  page.context().on('console', (m) => {
    if (/Content[- ]Security[- ]Policy/i.test(m.text())) consoleCsp.push(m.text());
  });
  const workers: Worker[] = [];
  const watching: Promise<void>[] = [];
  page.on('worker', (w) => {
    workers.push(w);
    w.on('console', (m) => {
      if (/Content[- ]Security[- ]Policy/i.test(m.text())) consoleCsp.push(`worker: ${m.text()}`);
    });
    watching.push(watchWorker(w));
  });
  // Nothing may leave this machine, whatever the policy says.
  await page.context().route(/^https?:\/\/(?!127\.0\.0\.1[:/])/, (route) => route.abort('blockedbyclient'));
  await page.addInitScript(recordViolations);

  const model = server.fileUrl('story.gguf');
  const response = await page.goto(appUrl({ model }));
  // Both deliveries: the meta tag (any static host) and vite preview's header (adds frame-ancestors).
  expect(response?.headers()['content-security-policy']).toBe(CSP_HEADER);
  await expect(page.locator('meta[http-equiv="Content-Security-Policy"]')).toHaveAttribute(
    'content',
    CSP_META,
  );

  await expect(page.getByRole('status')).toContainText('Downloaded and cached', { timeout: 300_000 });
  expect(server.log.some((r) => r.method === 'GET' && r.path === 'story.gguf')).toBe(true);
  expect(await generateGreedy(page, 8)).toBe(GREEDY_8);
  await expect(page.getByRole('alert')).toHaveCount(0);

  await Promise.all(watching);
  expect(workers.length).toBeGreaterThan(0);
  expect(await pageViolations(page)).toEqual([]);
  for (const w of workers) expect(await workerViolations(w)).toEqual([]);
  expect(consoleCsp).toEqual([]);

  // In force, in the page: an injected inline script does not run...
  const inlineRan = await page.evaluate(async () => {
    const s = document.createElement('script');
    s.textContent = 'window.inlineRan = true;';
    document.head.append(s);
    await new Promise((r) => setTimeout(r, 100));
    return (window as unknown as { inlineRan?: boolean }).inlineRan === true;
  });
  expect(inlineRan).toBe(false);
  // ...nor does an inline event handler...
  const handlerRan = await page.evaluate(async () => {
    const b = document.createElement('button');
    b.setAttribute('onclick', 'window.handlerRan = true;');
    document.body.append(b);
    b.click();
    b.remove();
    return (window as unknown as { handlerRan?: boolean }).handlerRan === true;
  });
  expect(handlerRan).toBe(false);
  // ...nor code from a string (eval's kind; page.evaluate itself is exempt, a string timer is not)...
  const stringRan = await page.evaluate(async () => {
    (setTimeout as unknown as (code: string, ms: number) => number)('window.stringRan = true;', 0);
    await new Promise((r) => setTimeout(r, 100));
    return (window as unknown as { stringRan?: boolean }).stringRan === true;
  });
  expect(stringRan).toBe(false);
  // ...and so is plain http to another host.
  const httpFetch = await page.evaluate(() =>
    fetch('http://models.example.com/a.gguf').then(
      () => 'fetched',
      () => 'refused',
    ),
  );
  expect(httpFetch).toBe('refused');
  // Each refusal is reported once per policy in force: the meta tag's and the header's.
  await expect
    .poll(async () => summary(await pageViolations(page)))
    .toEqual([
      'connect-src header',
      'connect-src meta',
      'script-src header',
      'script-src meta',
      'script-src-attr header',
      'script-src-attr meta',
      'script-src-elem header',
      'script-src-elem meta',
    ]);
  for (const v of (await pageViolations(page)).filter((v) => v.directive === 'connect-src')) {
    expect(v.blocked).toBe('http://models.example.com/a.gguf');
  }

  // In the engine worker too (its policy is the header's: a meta tag does not reach a worker).
  const engineWorker = workers[0];
  const workerFetch = await engineWorker.evaluate(() =>
    fetch('http://models.example.com/b.gguf').then(
      () => 'fetched',
      () => 'refused',
    ),
  );
  expect(workerFetch).toBe('refused');
  await expect
    .poll(async () => summary(await workerViolations(engineWorker)))
    .toEqual(['connect-src header']);

  // And the refusals were reported where a person would look: the console.
  await expect.poll(() => consoleCsp.length).toBeGreaterThanOrEqual(4);
});
