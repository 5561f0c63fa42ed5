/**
 * The layers import one way (docs/ARCHITECTURE in README: page → worker API → engine; the engine
 * without DOM-only or Node APIs). Every non-test source file's imports are read and checked against
 * the table below, so a shortcut across layers fails here instead of in review.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const SRC = resolve(__dirname);

/** Layer of a file: the first folder under src/. */
const layerOf = (file: string) => relative(SRC, file).split('/')[0];

/** What each layer may import from the others (by layer or by file), and which packages it must not. */
const RULES: Record<string, { may: string[]; forbiddenPackages: RegExp }> = {
  engine: { may: ['engine'], forbiddenPackages: /^(node:|react|idb-keyval|comlink|webgpu$)/ },
  storage: { may: ['storage', 'engine'], forbiddenPackages: /^(node:|react)/ },
  worker: { may: ['worker', 'engine', 'storage'], forbiddenPackages: /^(node:|react)/ },
  // The page talks to the engine only through the worker's typed API; its saved conversations are
  // the page's own records (IndexedDB), not engine state.
  ui: {
    may: ['ui', 'worker/api.ts', 'worker/client.ts', 'storage/conversations.ts'],
    forbiddenPackages: /^(node:|webgpu$)/,
  },
  // Node hosts: the download recipe is shared with the browser (storage's pure modules).
  node: {
    may: ['node', 'engine', 'storage/resumable-download.ts', 'storage/manifest.ts'],
    forbiddenPackages: /^(react|idb-keyval)/,
  },
  cli: { may: ['cli', 'engine', 'node'], forbiddenPackages: /^(react|idb-keyval)/ },
  sw: { may: ['sw'], forbiddenPackages: /^(react|webgpu$)/ },
};
/** The service worker's Vite plugin runs in Node at build time, not in the browser. */
const NODE_AT_BUILD_TIME = new Set(['sw/vite-plugin.ts', 'csp.ts']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return /\.(ts|tsx)$/.test(e.name) && !/\.test(util)?\.ts$|\.testutil\.ts$/.test(e.name) ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'";]*?from\s+['"]([^'"]+)['"]/g)];
  const dynamic = [...text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)];
  return [...specs, ...dynamic].map((m) => m[1]);
}

describe('layers', () => {
  const files = sourceFiles(SRC).filter((f) => f !== __filename);

  it('finds the sources', () => {
    expect(files.length).toBeGreaterThan(40);
  });

  it('every import points the way the layers allow', () => {
    const problems: string[] = [];
    for (const file of files) {
      const rel = relative(SRC, file);
      const layer = layerOf(file);
      const rule = RULES[layer];
      if (!rule) continue; // top-level files (main entry points) are checked by tsc only
      for (const spec of importsOf(file)) {
        if (spec.startsWith('.')) {
          const target = relative(SRC, resolve(dirname(file), spec.replace(/\?raw$/, '')));
          if (target.startsWith('..')) {
            // Outside src/: only the WGSL kernels.
            if (!target.startsWith('../shaders/')) problems.push(`${rel} imports ${spec}`);
            continue;
          }
          const targetFile = /\.(ts|tsx)$/.test(target) ? target : `${target}.ts`;
          const ok = rule.may.some((m) =>
            m.includes('/') ? targetFile === m : layerOf(join(SRC, target)) === m,
          );
          if (!ok) problems.push(`${rel} (${layer}) imports ${spec} (${layerOf(join(SRC, target))})`);
        } else if (rule.forbiddenPackages.test(spec) && !NODE_AT_BUILD_TIME.has(rel)) {
          problems.push(`${rel} (${layer}) imports the package ${spec}`);
        }
      }
    }
    expect(problems).toEqual([]);
  });
});
