import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Script } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import { writeServiceWorker } from './vite-plugin';

const dirs: string[] = [];
function fakeBuild(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sw-build-'));
  dirs.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, rel)), { recursive: true });
    writeFileSync(join(dir, rel), text);
  }
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const files = {
  'index.html': '<!doctype html><script type="module" src="/assets/index-1a2b.js"></script>',
  'assets/index-1a2b.js': 'console.log(1)',
  'assets/engine.worker-77.js': 'self.onmessage = () => {}',
  'assets/index-1a2b.js.map': '{}',
  'manifest.webmanifest': '{}',
  'icons/icon-192.png': 'png',
  'models/tinystories-llama3-q4_0.gguf': 'GGUF',
  'models/MODEL.md': '# model',
};

describe('writeServiceWorker', () => {
  it('precaches the shell, not models or source maps, and writes a script that parses', async () => {
    const dir = fakeBuild(files);
    const sw = await writeServiceWorker(dir);
    expect(sw.precache).toEqual([
      'assets/engine.worker-77.js',
      'assets/index-1a2b.js',
      'icons/icon-192.png',
      'index.html',
      'manifest.webmanifest',
    ]);
    expect(sw.version).toMatch(/^[0-9a-f]{16}$/);
    const text = readFileSync(join(dir, 'sw.js'), 'utf8');
    expect(text).toContain(JSON.stringify(sw.version));
    expect(text).toContain('"assets/engine.worker-77.js"');
    expect(text).not.toContain('tinystories');
    expect(text).not.toContain('MODEL.md');
    expect(text).not.toContain('__SW_PRECACHE__');
    expect(() => new Script(text)).not.toThrow();
    // Running it twice (sw.js now exists) lists the same files: the worker never precaches itself.
    expect((await writeServiceWorker(dir)).precache).toEqual(sw.precache);
  });

  it('changes version when any shell file changes, and only then', async () => {
    const a = await writeServiceWorker(fakeBuild(files));
    const same = await writeServiceWorker(fakeBuild(files));
    const newCode = await writeServiceWorker(
      fakeBuild({ ...files, 'assets/index-1a2b.js': 'console.log(2)' }),
    );
    const newModel = await writeServiceWorker(fakeBuild({ ...files, 'models/MODEL.md': '# changed' }));
    expect(same.version).toBe(a.version);
    expect(newCode.version).not.toBe(a.version);
    // Model files are not part of the shell: changing them is not an app update.
    expect(newModel.version).toBe(a.version);
  });

  it('refuses an output folder without index.html', async () => {
    await expect(writeServiceWorker(fakeBuild({ 'assets/a.js': 'x' }))).rejects.toThrow(/no index.html/);
  });
});
