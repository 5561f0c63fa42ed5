/** Runs the real CLI as a child process, the way `npm run cli` does. */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEMO_MODEL_PATH } from '../node/paths';

export const ROOT = join(__dirname, '../..');
export const FIXTURES = join(ROOT, 'fixtures');
export const DEMO_MODEL = DEMO_MODEL_PATH;

/**
 * The CLI's cache dir (`LLAMA3_WEBGPU_CACHE_DIR`: downloads and the kernel self-check record) for
 * every run of this test file, unless a test passes its own: fresh per file, so the first GPU run
 * of a file really runs the kernel self-check (a record in ~/.cache from an earlier run would skip
 * it) and the file's later runs reuse that record instead of checking again; nothing is written
 * under the home directory. Vitest runs each file in its own process, so this is one dir per file.
 */
const fileCacheDir = mkdtempSync(join(tmpdir(), 'llama3-webgpu-cli-test-'));
process.on('exit', () => rmSync(fileCacheDir, { recursive: true, force: true }));

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCliProcess(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    // process.env carries VK_ICD_FILENAMES (vitest.config.ts) to the child for Dawn on SwiftShader.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', '--import', './scripts/raw-loader.mjs', 'src/cli/main.ts', ...args],
      {
        cwd: ROOT,
        env: { ...process.env, LLAMA3_WEBGPU_CACHE_DIR: fileCacheDir, ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 240_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** The JSON object on the last line of stdout. */
export function lastJson<T = Record<string, unknown>>(stdout: string): T {
  const lines = stdout.trimEnd().split('\n');
  return JSON.parse(lines[lines.length - 1]) as T;
}
