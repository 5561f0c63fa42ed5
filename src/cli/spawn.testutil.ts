/** Runs the real CLI as a child process, the way `npm run cli` does. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DEMO_MODEL_PATH } from '../node/paths';

export const ROOT = join(__dirname, '../..');
export const FIXTURES = join(ROOT, 'fixtures');
export const DEMO_MODEL = DEMO_MODEL_PATH;

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
      { cwd: ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] },
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
