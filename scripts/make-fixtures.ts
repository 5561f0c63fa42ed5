/**
 * `npm run fixtures`: writes the tiny test models into fixtures/ (gitignored). Idempotent: a file is
 * rewritten only when it is missing or its line in fixtures/VERSION (generator version + options)
 * differs, so changing one fixture's options regenerates that file alone.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_GENERATOR_VERSION, makeTinyLlama, TINY_FIXTURES } from './fixtures/make-model';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'fixtures');
const stampPath = join(dir, 'VERSION');
mkdirSync(dir, { recursive: true });
const stamps = new Map<string, string>();
if (existsSync(stampPath)) {
  for (const line of readFileSync(stampPath, 'utf8').split('\n')) {
    const i = line.indexOf(' ');
    if (i > 0) stamps.set(line.slice(0, i), line.slice(i + 1));
  }
}
const t0 = performance.now();
for (const [name, opts] of Object.entries(TINY_FIXTURES)) {
  const path = join(dir, name);
  const key = `v${FIXTURE_GENERATOR_VERSION} ${JSON.stringify(opts)}`;
  if (stamps.get(name) === key && existsSync(path)) continue;
  const t = performance.now();
  const bytes = makeTinyLlama({ ...opts, name: name.replace(/\.gguf$/, '') });
  writeFileSync(path, bytes);
  stamps.set(name, key);
  // Written after each file, so an interrupted run keeps what it finished.
  writeFileSync(stampPath, [...stamps].map(([n, k]) => `${n} ${k}\n`).join(''));
  console.log(
    `fixtures/${name}: ${(bytes.length / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}
console.log(`fixtures up to date (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
