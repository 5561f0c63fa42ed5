/**
 * A RandomAccessSource over a local file (Node): positional reads through one fs/promises
 * FileHandle, never the whole file in memory. Used by the CLI and by tests on real model files.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { EngineError } from '../engine/errors';
import type { RandomAccessSource } from '../engine/source';

/** Read-only, and non-blocking where the platform has the flag (not Windows, which has no FIFOs). */
const NONBLOCKING_READ = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

function notRegular(path: string, st: Stats): EngineError {
  const kind = st.isDirectory()
    ? 'a directory'
    : st.isFIFO()
      ? 'a named pipe (FIFO)'
      : st.isCharacterDevice()
        ? 'a character device'
        : st.isBlockDevice()
          ? 'a block device'
          : st.isSocket()
            ? 'a socket'
            : 'not a file';
  return new EngineError(
    'bad-argument',
    `${path} is ${kind}, not a regular file; give the path of a GGUF model file`,
  );
}

export class NodeFileSource implements RandomAccessSource {
  private handle: FileHandle | undefined;

  private constructor(
    handle: FileHandle,
    readonly size: number,
    readonly name: string,
  ) {
    this.handle = handle;
  }

  /**
   * Opens `path` read-only; errors name the path and the OS reason. Only a regular file is
   * accepted: opening a FIFO waits for a writer forever, and a device or directory has no size to
   * read a model from. Call `close()` when done.
   */
  static async open(path: string): Promise<NodeFileSource> {
    let handle: FileHandle;
    try {
      // Checked before opening, so that a FIFO or device is never opened at all...
      const before = await stat(path);
      if (!before.isFile()) throw notRegular(path, before);
      // ...and non-blocking, so that a FIFO swapped in since the check cannot hang the open either.
      handle = await open(path, NONBLOCKING_READ);
    } catch (e) {
      if (e instanceof EngineError) throw e;
      throw new EngineError('bad-argument', `cannot open model file ${path}: ${(e as Error).message}`, {
        cause: e,
      });
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw notRegular(path, st);
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
