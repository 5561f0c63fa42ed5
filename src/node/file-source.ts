/**
 * A RandomAccessSource over a local file (Node): positional reads through one fs/promises
 * FileHandle, never the whole file in memory. Used by the CLI and by tests on real model files.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { EngineError } from '../engine/errors';
import type { RandomAccessSource } from '../engine/source';

export class NodeFileSource implements RandomAccessSource {
  private handle: FileHandle | undefined;

  private constructor(
    handle: FileHandle,
    readonly size: number,
    readonly name: string,
  ) {
    this.handle = handle;
  }

  /** Opens `path` read-only; errors name the path and the OS reason. Call `close()` when done. */
  static async open(path: string): Promise<NodeFileSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw new EngineError('bad-argument', `cannot open model file ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new EngineError('bad-argument', `${path} is not a regular file`);
      return new NodeFileSource(handle, st.size, path);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new RangeError(`read ${offset}+${length}: offset and length must be non-negative integers`);
    }
    if (offset + length > this.size) {
      throw new RangeError(`read ${offset}+${length} past the end of ${this.name} (${this.size} bytes)`);
    }
    const h = this.handle;
    if (!h) throw new EngineError('bad-argument', `${this.name} was closed; open it again to read`);
    const out = new Uint8Array(length);
    // One read may return fewer bytes than asked (large reads, some file systems): loop.
    let done = 0;
    while (done < length) {
      const { bytesRead } = await h.read(out, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new EngineError(
          'storage',
          `${this.name} ended at byte ${offset + done} while reading ${length} bytes at ${offset}; ` +
            `it was ${this.size} bytes when opened, so it changed on disk`,
        );
      }
      done += bytesRead;
    }
    return out;
  }

  /** Closes the file handle; later reads fail. Safe to call twice. */
  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }
}
