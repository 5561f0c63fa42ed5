// Build step for the service worker (Node only; used by vite.config.ts and the e2e tests).
//
// Why a plugin that runs after the build, instead of a static public/sw.js or a second Vite entry:
// the worker must know the exact hashed file names to precache (index-3f9a.js, the engine worker's
// chunk, wasm, ...) and must change whenever any of them changes, so the browser sees an update.
// Both are only known once Vite has written the output folder (public/ files included). So after
// the build we walk the folder, keep what policy.ts allows, hash the contents into a version, and
// bundle src/sw/service-worker.ts (with policy.ts) into <outDir>/sw.js with esbuild, injecting the
// list and the version as constants. No runtime library, nothing generated is committed.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Plugin, ResolvedConfig } from 'vite';
import { isPrecacheable, SW_FILE } from './policy.js';

export interface ServiceWorkerBuild {
  /** Content hash of the precached files (16 hex digits): the cache's name suffix. */
  version: string;
  /** Precached files, relative to the output folder, sorted. */
  precache: string[];
  /** Absolute path of the written worker script. */
  file: string;
}

function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * Writes <outDir>/sw.js for the built app in outDir. `entry` is the worker's TypeScript source
 * (defaults to src/sw/service-worker.ts next to this file).
 */
export async function writeServiceWorker(
  outDir: string,
  entry = fileURLToPath(new URL('./service-worker.ts', import.meta.url)),
): Promise<ServiceWorkerBuild> {
  const precache = listFiles(outDir).filter(isPrecacheable);
  if (!precache.includes('index.html')) {
    throw new Error(`service worker: ${outDir} has no index.html; run vite build first`);
  }
  const hash = createHash('sha256');
  for (const rel of precache) {
    hash.update(rel);
    hash.update('\0');
    hash.update(readFileSync(join(outDir, rel)));
    hash.update('\0');
  }
  const version = hash.digest('hex').slice(0, 16);
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'iife',
    target: 'es2022',
    minify: true,
    write: false,
    logLevel: 'silent',
    define: { __SW_VERSION__: JSON.stringify(version), __SW_PRECACHE__: JSON.stringify(precache) },
  });
  const file = join(outDir, SW_FILE);
  writeFileSync(file, result.outputFiles[0].text);
  return { version, precache, file };
}

/** Vite plugin: writes sw.js into the output folder at the end of `vite build` (never in dev). */
export function serviceWorker(): Plugin {
  let config: ResolvedConfig;
  return {
    name: 'app-service-worker',
    apply: 'build',
    configResolved(c) {
      config = c;
    },
    async closeBundle(error?: Error) {
      if (error) return; // the build failed: there is no complete output to precache
      const outDir = resolve(config.root, config.build.outDir);
      const sw = await writeServiceWorker(outDir);
      config.logger.info(`service worker: ${SW_FILE} v${sw.version}, ${sw.precache.length} files precached`);
    },
  };
}
