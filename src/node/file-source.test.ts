import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { llamaConfigFromGguf, validateLlamaTensors } from '../engine/gguf/config';
import { readGguf, readTensorBytes } from '../engine/gguf/reader';
import { engineError, tinyLlama } from '../engine/gguf/test-helpers';
import { MemorySource } from '../engine/source';
import { NodeFileSource } from './file-source';

const dir = mkdtempSync(join(tmpdir(), 'file-source-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('NodeFileSource', () => {
  const bytes = tinyLlama({ dim: 64, nLayers: 2, tied: true });
  const path = join(dir, 'tiny.gguf');
  writeFileSync(path, bytes);

  it('reads a GGUF header and tensors at offsets, the same as from memory', async () => {
    const src = await NodeFileSource.open(path);
    try {
      expect(src.size).toBe(bytes.length);
      expect(src.name).toBe(path);
      const f = await readGguf(src, { initialWindow: 300 });
      expect(f).toEqual(await readGguf(new MemorySource(bytes)));
      const t = validateLlamaTensors(f, llamaConfigFromGguf(f));
      // Concurrent reads on one handle do not mix.
      const reads = await Promise.all(f.tensors.map((x) => readTensorBytes(src, x)));
      for (const [i, x] of f.tensors.entries()) {
        expect(reads[i]).toEqual(bytes.subarray(x.offset, x.offset + x.byteLength));
      }
      expect(t.output).toBe(t.tokenEmbd);
    } finally {
      await src.close();
    }
  });

  it('rejects reads past the end with RangeError and reads nothing for length 0', async () => {
    const src = await NodeFileSource.open(path);
    await expect(src.read(bytes.length - 1, 2)).rejects.toThrow(RangeError);
    await expect(src.read(-1, 1)).rejects.toThrow(RangeError);
    expect(await src.read(bytes.length, 0)).toEqual(new Uint8Array(0));
    await src.close();
    await src.close(); // twice is fine
    const e = await engineError(() => src.read(0, 4));
    expect(e.message).toBe(`${path} was closed; open it again to read`);
  });

  it('names the path when a file cannot be opened or is a directory', async () => {
    const missing = join(dir, 'nope.gguf');
    const e = await engineError(() => NodeFileSource.open(missing));
    expect(e.code).toBe('bad-argument');
    expect(e.message).toMatch(new RegExp(`^cannot open model file ${missing}: ENOENT`));
    const d = await engineError(() => NodeFileSource.open(dir));
    expect(d.message).toBe(`${dir} is a directory, not a regular file; give the path of a GGUF model file`);
  });

  it.skipIf(process.platform === 'win32')(
    'refuses a FIFO or a device at once instead of waiting on it',
    async () => {
      // Opening a FIFO for reading blocks until some process opens it for writing: none will.
      const fifo = join(dir, 'model.fifo');
      execFileSync('mkfifo', [fifo]);
      const within = <T>(p: Promise<T>) =>
        Promise.race([
          p,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('still waiting after 3 s')), 3000),
          ),
        ]);
      const e = await engineError(() => within(NodeFileSource.open(fifo)));
      expect(e.code).toBe('bad-argument');
      expect(e.message).toBe(
        `${fifo} is a named pipe (FIFO), not a regular file; give the path of a GGUF model file`,
      );
      const dev = await engineError(() => within(NodeFileSource.open('/dev/zero')));
      expect(dev.message).toBe(
        '/dev/zero is a character device, not a regular file; give the path of a GGUF model file',
      );
    },
  );

  it('reports a file that shrank after it was opened', async () => {
    const p = join(dir, 'shrinks.gguf');
    writeFileSync(p, bytes);
    const src = await NodeFileSource.open(p);
    truncateSync(p, 100);
    const e = await engineError(() => src.read(50, 200));
    expect(e.code).toBe('storage');
    expect(e.message).toMatch(/ended at byte 100 while reading 200 bytes at 50; .* changed on disk/);
    await src.close();
  });
});
