// Page side of the service worker: registration and the "Reload to update" hand-off.
//
// Registered only in production builds: in `vite dev` files change under the same URLs all the
// time and a worker serving them from a cache would show stale code (and the dev server has no
// sw.js anyway). The worker itself is built by src/sw/vite-plugin.ts.
//
// A new version never takes over on its own (it would swap the code under a running generation):
// it installs, waits, and we tell the UI, which shows a banner; applyUpdate() is the banner's click.

/** Message type the waiting worker understands (src/sw/policy.ts SKIP_WAITING; kept literal here so
 * the page bundle does not pull in the worker's module). */
const SKIP_WAITING = 'SKIP_WAITING';

export type UpdateListener = (ready: boolean) => void;

let waiting: ServiceWorker | null = null;
let reloading = false;
let registration: Promise<ServiceWorkerRegistration | null> | null = null;
const listeners = new Set<UpdateListener>();

function setWaiting(sw: ServiceWorker | null): void {
  waiting = sw;
  for (const l of listeners) l(sw !== null);
}

/** Calls `listener(true)` whenever a new version is installed and waiting (and now, if one is). */
export function onUpdateReady(listener: UpdateListener): () => void {
  listeners.add(listener);
  listener(waiting !== null);
  return () => listeners.delete(listener);
}

/** True while a new version waits for applyUpdate(). */
export function updateReady(): boolean {
  return waiting !== null;
}

/**
 * Registers `<base>sw.js` once per page (later calls return the same promise). Resolves to null where
 * service workers are unavailable (http on a non-localhost host, some private modes): the app still
 * works, just not offline.
 */
export function registerServiceWorker(
  base: string = import.meta.env.BASE_URL,
): Promise<ServiceWorkerRegistration | null> {
  if (registration) return registration;
  registration = (async () => {
    if (typeof navigator === 'undefined' || !('serviceWorker' in navigator)) return null;
    const sw = navigator.serviceWorker;
    // The new worker claims the page after applyUpdate(); reload into the new version then. The
    // first install also claims the page (controller null → worker), which must not reload it.
    sw.addEventListener('controllerchange', () => {
      if (reloading) window.location.reload();
    });
    let reg: ServiceWorkerRegistration;
    try {
      reg = await sw.register(`${base}sw.js`, { scope: base });
    } catch (err) {
      console.warn('Service worker registration failed; the app will not work offline.', err);
      return null;
    }
    // Only a worker that replaces a running one is an "update"; the very first install is not.
    if (reg.waiting && sw.controller) setWaiting(reg.waiting);
    reg.addEventListener('updatefound', () => {
      const next = reg.installing;
      if (!next) return;
      next.addEventListener('statechange', () => {
        if (next.state === 'installed' && sw.controller) setWaiting(next);
      });
    });
    return reg;
  })();
  return registration;
}

/** Activates the waiting version and reloads the page into it (the banner's click). */
export function applyUpdate(): void {
  if (!waiting) return;
  reloading = true;
  waiting.postMessage({ type: SKIP_WAITING });
}
