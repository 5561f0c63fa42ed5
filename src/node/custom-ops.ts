/**
 * `--custom-ops-path DIR`: every `<kernel>.wgsl` in DIR replaces the built-in kernel of that name.
 * Names are checked (and the WGSL verified against the reference) by the GPU kernel registry when
 * the model loads; here we only read the files.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { EngineError } from '../engine/errors';

export async function readCustomOps(dir: string): Promise<Map<string, string>> {
  let entries: string[];
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
    entries = await readdir(dir);
  } catch (e) {
    throw new EngineError('bad-argument', `--custom-ops-path ${dir}: ${(e as Error).message}`, { cause: e });
  }
  const kernels = new Map<string, string>();
  for (const f of entries.sort()) {
    if (!f.endsWith('.wgsl')) continue;
    kernels.set(basename(f, '.wgsl'), await readFile(join(dir, f), 'utf8'));
  }
  if (kernels.size === 0) {
    throw new EngineError(
      'bad-argument',
      `--custom-ops-path ${dir} holds no .wgsl files (expected <kernel>.wgsl)`,
    );
  }
  return kernels;
}
