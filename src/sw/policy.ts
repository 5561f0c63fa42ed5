// What the service worker may cache, in one place: used at build time (which built files go into the
// precache list) and at run time (which requests the worker answers). Pure functions, no DOM, no Node,
// so the same rules are tested in Vitest and shipped inside sw.js.
//
// The rule that matters: model bytes never enter the service-worker cache. They live in IndexedDB,
// chunked, managed by the app's model store (src/storage), which knows how to resume, verify and
// delete them. A second copy in Cache Storage would double the disk use of a multi-GB model and
// could not be evicted from the UI.

/** Prefix of the cache names this worker owns; the suffix is the build's version. */
export const CACHE_PREFIX = 'app-shell-';

/** The name of the service-worker script in the build output (at the app's base path). */
export const SW_FILE = 'sw.js';

/** The message a page posts to a waiting worker to make it take over now. */
export const SKIP_WAITING = 'SKIP_WAITING';

/**
 * True for paths (relative to the app's base, no leading slash, e.g. "models/x.gguf") whose bytes
 * must never be cached by the service worker: model files and everything under models/.
 */
export function isModelPath(relPath: string): boolean {
  const p = relPath.toLowerCase();
  return p.startsWith('models/') || p.endsWith('.gguf');
}

/**
 * True for a built file (path relative to the output folder, "/"-separated) that belongs in the
 * app-shell precache: everything the page needs to start and run offline (index.html, JS, CSS,
 * wasm, workers, manifest, icons), minus model files, source maps and the worker script itself.
 */
export function isPrecacheable(relPath: string): boolean {
  if (isModelPath(relPath)) return false;
  if (relPath === SW_FILE) return false;
  if (relPath.endsWith('.map')) return false;
  return true;
}

/** The cache name for one build version. */
export function cacheName(version: string): string {
  return CACHE_PREFIX + version;
}

/** Caches left by earlier versions of this worker: delete them once the new version is active. */
export function staleCaches(names: readonly string[], version: string): string[] {
  const current = cacheName(version);
  return names.filter((n) => n.startsWith(CACHE_PREFIX) && n !== current);
}

/** How the worker treats one request. */
export type Route =
  /** Leave it to the network: the worker does not call respondWith. */
  | { kind: 'network' }
  /** A page navigation inside the app: answer with the cached index.html. */
  | { kind: 'shell' }
  /** A precached file: answer from the cache, fall back to the network. */
  | { kind: 'precache' };

export interface RequestFacts {
  url: string;
  method: string;
  /** Request.mode: 'navigate' for page loads. */
  mode: string;
  /** True when the request carries a Range header (downloads with resume). */
  hasRange: boolean;
}

/**
 * Decides how the worker answers a request. `scope` is the registration scope (the app's base URL,
 * ending in "/"). Only same-origin GETs inside the scope are ever answered from the cache; model
 * files and range requests always go to the network (and from there into IndexedDB).
 */
export function route(req: RequestFacts, scope: string): Route {
  if (req.method !== 'GET' || req.hasRange) return { kind: 'network' };
  const url = new URL(req.url);
  const base = new URL(scope);
  if (url.origin !== base.origin || !url.pathname.startsWith(base.pathname)) return { kind: 'network' };
  const rel = decodeURIComponent(url.pathname.slice(base.pathname.length));
  if (isModelPath(rel)) return { kind: 'network' };
  if (req.mode === 'navigate') {
    // Only the app's own page is the shell; a navigation to a real file (e.g. a .md note) is not.
    const last = rel.split('/').pop() ?? '';
    if (rel === '' || rel === 'index.html' || !last.includes('.')) return { kind: 'shell' };
    return { kind: 'network' };
  }
  return { kind: 'precache' };
}
