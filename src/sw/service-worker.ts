// The app's service worker: keeps the built app shell (index.html, JS/CSS/wasm, the engine worker,
// manifest, icons) in Cache Storage so a second visit opens with the network off. Model bytes are
// never cached here (see policy.ts): they live in IndexedDB, managed by src/storage.
//
// Built by src/sw/vite-plugin.ts as its own bundle (sw.js at the app's base path) after `vite build`
// has written everything else, so it can list the exact hashed files to precache and take a version
// from their contents. Not used in dev: the page registers it only in production builds.
//
// Update flow: a new build means a new sw.js (its version and list change). The browser installs it
// next to the running one; it precaches the new shell and then WAITS (no skipWaiting on install), so
// a page in the middle of a generation keeps its code and its worker. The page sees the waiting
// worker and shows "Reload to update"; the click posts SKIP_WAITING, this worker activates, drops the
// old caches and claims the page, and the page reloads into the new version.
import { cacheName, type Route, route, SKIP_WAITING, staleCaches } from './policy';

declare const self: ServiceWorkerGlobalScope;
/** Content hash of the precached files, injected at build time. */
declare const __SW_VERSION__: string;
/** Precached files, relative to the scope ("index.html", "assets/index-abc.js", ...), injected at build time. */
declare const __SW_PRECACHE__: string[];

const VERSION = __SW_VERSION__;
const CACHE = cacheName(VERSION);

function scopeUrl(rel: string): string {
  return new URL(rel, self.registration.scope).href;
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // cache: 'reload' skips the HTTP cache so a new version never precaches an old file.
      await cache.addAll(__SW_PRECACHE__.map((rel) => new Request(scopeUrl(rel), { cache: 'reload' })));
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of staleCaches(await caches.keys(), VERSION)) await caches.delete(name);
      // Take over pages opened before this worker existed (the first visit), so they are served by
      // it without a reload. The page reloads on controllerchange only after its own update click.
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('message', (event) => {
  if (event.data && event.data.type === SKIP_WAITING) void self.skipWaiting();
  // The page asks which version serves it (shown in the UI's about line and used by the e2e test).
  if (event.data && event.data.type === 'GET_VERSION') event.ports[0]?.postMessage({ version: VERSION });
});

async function fromCache(request: Request, r: Route): Promise<Response> {
  const cache = await caches.open(CACHE);
  const key = r.kind === 'shell' ? scopeUrl('index.html') : request.url;
  // ignoreVary: the server may answer `Vary: Origin` (vite preview does), and the page's module-script
  // requests carry an Origin header that the install-time requests did not: without it every
  // precached script would miss the cache, which only shows once the network is gone.
  const hit = await cache.match(key, { ignoreVary: true });
  if (hit) return hit;
  // Not precached (or the cache was evicted): the network is the only other source.
  return fetch(request);
}

self.addEventListener('fetch', (event) => {
  const req = event.request;
  const r = route(
    { url: req.url, method: req.method, mode: req.mode, hasRange: req.headers.has('range') },
    self.registration.scope,
  );
  if (r.kind === 'network') return; // not ours: the browser fetches it as if there were no worker
  event.respondWith(fromCache(req, r));
});
