import { describe, expect, it } from 'vitest';
import { cacheName, isModelPath, isPrecacheable, type RequestFacts, route, staleCaches } from './policy';

const scope = 'https://app.example/llama/';
const get = (url: string, extra: Partial<RequestFacts> = {}): RequestFacts => ({
  url,
  method: 'GET',
  mode: 'cors',
  hasRange: false,
  ...extra,
});

describe('service-worker policy', () => {
  it('never lets model bytes into the precache', () => {
    expect(isModelPath('models/tinystories-llama3-q4_0.gguf')).toBe(true);
    expect(isModelPath('models/MODEL.md')).toBe(true);
    expect(isModelPath('Models/X.GGUF')).toBe(true);
    expect(isModelPath('elsewhere/big.gguf')).toBe(true);
    expect(isModelPath('assets/models-ui-1a2b.js')).toBe(false);
    expect(isPrecacheable('models/tinystories-llama3-q4_0.gguf')).toBe(false);
    expect(isPrecacheable('sw.js')).toBe(false);
    expect(isPrecacheable('assets/index-1a2b.js.map')).toBe(false);
    for (const f of [
      'index.html',
      'assets/index-1a2b.js',
      'assets/worker-9f.js',
      'assets/x.wasm',
      'assets/index.css',
    ]) {
      expect(isPrecacheable(f)).toBe(true);
    }
    expect(isPrecacheable('manifest.webmanifest')).toBe(true);
    expect(isPrecacheable('icons/icon-192.png')).toBe(true);
  });

  it('answers navigations inside the scope with the shell', () => {
    expect(route(get(scope, { mode: 'navigate' }), scope)).toEqual({ kind: 'shell' });
    expect(route(get(`${scope}index.html`, { mode: 'navigate' }), scope)).toEqual({ kind: 'shell' });
    expect(route(get(`${scope}?model=demo`, { mode: 'navigate' }), scope)).toEqual({ kind: 'shell' });
    expect(route(get(`${scope}settings`, { mode: 'navigate' }), scope)).toEqual({ kind: 'shell' });
    // A navigation to a real file (a model note) is not the app.
    expect(route(get(`${scope}notes/readme.txt`, { mode: 'navigate' }), scope)).toEqual({ kind: 'network' });
  });

  it('serves same-origin assets from the precache and leaves everything else to the network', () => {
    expect(route(get(`${scope}assets/index-1a2b.js`), scope)).toEqual({ kind: 'precache' });
    expect(route(get(`${scope}models/tinystories-llama3-q4_0.gguf`), scope)).toEqual({ kind: 'network' });
    expect(route(get(`${scope}models/tinystories-llama3-q4_0.gguf`, { mode: 'navigate' }), scope)).toEqual({
      kind: 'network',
    });
    // Percent-encoded model paths are still model paths.
    expect(route(get(`${scope}m%6Fdels/x.bin`), scope)).toEqual({ kind: 'network' });
    expect(route(get(`${scope}assets/index-1a2b.js`, { hasRange: true }), scope)).toEqual({
      kind: 'network',
    });
    expect(route(get(`${scope}assets/index-1a2b.js`, { method: 'POST' }), scope)).toEqual({
      kind: 'network',
    });
    expect(route(get('https://huggingface.co/x/resolve/main/m.gguf'), scope)).toEqual({ kind: 'network' });
    expect(route(get('https://cdn.example/lib.js'), scope)).toEqual({ kind: 'network' });
    // Same origin but outside the app's base path: another app's files.
    expect(route(get('https://app.example/other/app.js'), scope)).toEqual({ kind: 'network' });
  });

  it('deletes only its own older caches', () => {
    const names = [cacheName('aaaa'), cacheName('bbbb'), 'someone-elses-cache', 'app-shell'];
    expect(staleCaches(names, 'bbbb')).toEqual([cacheName('aaaa')]);
  });
});
