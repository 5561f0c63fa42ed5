/**
 * The project stands alone: a clone with nothing beside it passes the README's test command. So no
 * file the project runs, tests or documents reaches outside the repository, and every file the
 * Markdown links to, or any file names as a `.md`, is in the repository.
 *
 * Checked over every text file of the working tree except installed, generated and ignored output
 * (the same list as biome.json and .gitignore).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../src/node/paths';

const SKIP_DIRS = new Set([
  '.git',
  'node_modules',
  'dist',
  'dist-node',
  'fixtures',
  'test-results',
  'playwright-report',
  '.cache',
  '.device',
]);
const CODE = new Set(['.ts', '.tsx', '.mjs', '.js', '.cjs', '.sh', '.py']);
const TEXT = new Set([...CODE, '.json', '.md', '.html', '.css', '.wgsl', '.yml', '.yaml', '.webmanifest']);
const SELF = relative(REPO_ROOT, import.meta.filename);

/** Repository-relative paths (with "/") of every text file, this one excepted. */
function textFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        if (!SKIP_DIRS.has(name)) walk(path);
        continue;
      }
      const rel = relative(REPO_ROOT, path).split(sep).join('/');
      // .ci/ holds extension-less scripts (.ci/run).
      if ((TEXT.has(extname(name)) || rel.startsWith('.ci/')) && rel !== SELF) out.push(rel);
    }
  };
  walk(REPO_ROOT);
  return out.sort();
}

const files = textFiles();
const read = (rel: string) => readFileSync(join(REPO_ROOT, rel), 'utf8');
const insideRepo = (abs: string) => abs === REPO_ROOT || abs.startsWith(REPO_ROOT + sep);
const lineOf = (text: string, index: number) => text.slice(0, index).split('\n').length;

/** Markdown without its fenced code blocks and inline code (links there are examples, not links). */
function markdownProse(text: string): string {
  return text
    .replace(/^```[\s\S]*?^```/gm, (block) => block.replace(/[^\n]/g, ' '))
    .replace(/`[^`\n]*`/g, (code) => ' '.repeat(code.length));
}

/** Every file name in the repository (for `.md` names mentioned without their folder). */
const allNames = new Set(files.map((f) => basename(f)));

describe('the project stands alone', () => {
  it('scans the source, tests, scripts, CI and docs', () => {
    for (const expected of [
      'README.md',
      'docs/testing.md',
      'src/node/paths.ts',
      '.ci/run',
      'e2e/helpers.ts',
    ]) {
      expect(files).toContain(expected);
    }
  });

  it('no file names the shared folder beside the checkout, or this machine', () => {
    // The folder a session's project sits next to, and the absolute root of this machine's copies.
    const outside = /\.\.\/shared\b|\/work\/(?:shared|main)\b|SHARED_DIR/g;
    const found: string[] = [];
    for (const rel of files) {
      const text = read(rel);
      for (const m of text.matchAll(outside)) found.push(`${rel}:${lineOf(text, m.index)}: ${m[0]}`);
    }
    expect(found).toEqual([]);
  });

  it('every relative path in code resolves inside the repository', () => {
    const found: string[] = [];
    for (const rel of files.filter((f) => CODE.has(extname(f)))) {
      const text = read(rel);
      for (const m of text.matchAll(/(['"`])(\.\.?\/[^'"`\s$]*)\1/g)) {
        const target = resolve(REPO_ROOT, dirname(rel), m[2]);
        if (!insideRepo(target)) found.push(`${rel}:${lineOf(text, m.index)}: ${m[2]}`);
      }
    }
    expect(found).toEqual([]);
  });

  it('every relative Markdown link leads to a file in the repository', () => {
    const broken: string[] = [];
    let checked = 0;
    for (const rel of files.filter((f) => f.endsWith('.md'))) {
      const text = markdownProse(read(rel));
      const links = [
        ...text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g),
        ...text.matchAll(/^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)/gm),
      ];
      for (const m of links) {
        const href = m[1];
        if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('#')) continue; // a URL or an anchor
        const path = decodeURIComponent(href.replace(/[?#].*$/, ''));
        const target = path.startsWith('/') ? join(REPO_ROOT, path) : resolve(REPO_ROOT, dirname(rel), path);
        checked++;
        if (!insideRepo(target) || !existsSync(target))
          broken.push(`${rel}:${lineOf(text, m.index)}: ${href}`);
      }
    }
    expect(broken).toEqual([]);
    expect(checked).toBeGreaterThan(3);
  });

  it('every .md file a file mentions is in the repository', () => {
    const missing: string[] = [];
    for (const rel of files) {
      const text = read(rel);
      for (const m of text.matchAll(/(?<![\w/.-])((?:[\w.-]+\/)*[\w-]+\.md)\b/g)) {
        const name = m[1];
        // Beside the file, from the root, or as the app serves it (public/ is the site's root).
        const atPath = [
          resolve(REPO_ROOT, dirname(rel), name),
          join(REPO_ROOT, name),
          join(REPO_ROOT, 'public', name),
        ].some((p) => existsSync(p));
        const bareName = !name.includes('/') && allNames.has(name);
        if (!atPath && !bareName) missing.push(`${rel}:${lineOf(text, m.index)}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
