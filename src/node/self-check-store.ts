/**
 * The Node hosts' memory of passed kernel self-checks: a JSON array of keys in
 * `<cache dir>/self-check.json` (`$LLAMA3_WEBGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/llama3-webgpu`,
 * else `~/.cache/llama3-webgpu`), so each CLI run (and each test process) does not re-check the
 * kernels on the same adapter. A file, not memory only: every CLI command is a new process, and
 * on SwiftShader the checks cost seconds per process. A missing or unreadable file only means
 * checking again; failures are never stored.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SelfCheckCache } from '../engine/gpu/check/self-check';
import { cacheDir } from './download';

export const selfCheckFile = (env: NodeJS.ProcessEnv = process.env) => join(cacheDir(env), 'self-check.json');

export function fileSelfCheckStore(path: string = selfCheckFile()): SelfCheckCache {
  return new SelfCheckCache({
    async load() {
      const keys: unknown = JSON.parse(await readFile(path, 'utf8'));
      return Array.isArray(keys) ? keys.filter((k): k is string => typeof k === 'string') : [];
    },
    async save(keys) {
      // Write then rename: a process reading at the same time sees the old file or the new one.
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(keys));
      await rename(tmp, path);
    },
  });
}
