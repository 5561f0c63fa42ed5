/**
 * `npm run fixtures`: writes the tiny test models into fixtures/ (gitignored). Idempotent: a file is
 * rewritten only when it is missing or fixtures/VERSION names another generator version.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_GENERATOR_VERSION, makeTinyLlama, TINY_FIXTURES } from './fixtures/make-model';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = join(root, 'fixtures');
const stampPath = join(dir, 'VERSION');
mkdirSync(dir, { recursive: true });
const stamp = existsSync(stampPath) ? readFileSync(stampPath, 'utf8').trim() : '';
const current = stamp === `make-model ${FIXTURE_GENERATOR_VERSION}`;
const t0 = performance.now();
for (const [name, opts] of Object.entries(TINY_FIXTURES)) {
  const path = join(dir, name);
  if (current && existsSync(path)) continue;
  const t = performance.now();
  const bytes = makeTinyLlama({ ...opts, name: name.replace(/\.gguf$/, '') });
  writeFileSync(path, bytes);
  console.log(
    `fixtures/${name}: ${(bytes.length / 1e6).toFixed(1)} MB in ${((performance.now() - t) / 1000).toFixed(1)} s`,
  );
}
writeFileSync(stampPath, `make-model ${FIXTURE_GENERATOR_VERSION}\n`);
console.log(`fixtures up to date (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
