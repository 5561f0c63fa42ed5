/**
 * Memory amplification: a header's parsed values must stay a small multiple of its bytes. Before the
 * bound, a 63 MB header of one-byte values or tiny nested arrays became over 1 GB (8–22×). Headers
 * are generated here (~15 MB, about a second); memory is read after a forced GC.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { MemorySource } from '../source';
import { readGguf } from './reader';
import { engineError } from './test-helpers';
import { type GgufValue, GgufValueType as T } from './types';
import { type GgufKv, writeGguf } from './writer';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function used(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const arch: GgufKv = { key: 'general.architecture', type: T.STRING, value: 'llama' };
const array = (key: string, arrayType: T, value: GgufValue[]): GgufKv => ({
  key,
  type: T.ARRAY,
  arrayType,
  value,
});

/** ~15 MB: 2-byte strings, int32s, and one-element nested arrays (16 file bytes each; before the
 * bound each became a 184-byte JS array, as push leaves a capacity of 17). */
function mixedHeader(): Uint8Array {
  return writeGguf(
    [
      arch,
      array(
        'tokens',
        T.STRING,
        Array.from({ length: 600_000 }, (_, i) =>
          String.fromCharCode(97 + (i % 26), 97 + (((i / 26) | 0) % 26)),
        ),
      ),
      array(
        'types',
        T.INT32,
        Array.from({ length: 1_000_000 }, (_, i) => i),
      ),
      array(
        'nested',
        T.ARRAY,
        Array.from({ length: 300_000 }, (_, i) => [i]),
      ),
    ],
    [],
  );
}

describe('header memory stays within 4× the header', { timeout: 120_000 }, () => {
  it('a ~15 MB header of 2-byte strings, int32s and one-element nested arrays', async () => {
    const bytes = mixedHeader(); // built in its own frame, so its input arrays are garbage now
    const size = bytes.length;
    const before = used();
    const file = await readGguf(new MemorySource(bytes));
    const after = used();
    expect((file.metadata.get('nested') as number[][])[299_999]).toEqual([299_999]);
    const growth = after - before;
    console.log(
      `header ${(size / 1e6).toFixed(1)} MB → ${(growth / 1e6).toFixed(1)} MB of parsed values (${(growth / size).toFixed(2)}×)`,
    );
    expect(growth).toBeLessThan(4 * size);
    expect(bytes.length).toBe(size); // the file's own bytes stay alive through both measurements
  });

  const hostile: [string, GgufKv][] = [
    [
      '3M uint8 values (8 bytes of memory per byte of file)',
      array('u8', T.UINT8, new Array(3_000_000).fill(7)),
    ],
    ['3M bools', array('flags', T.BOOL, new Array(3_000_000).fill(true))],
  ];
  for (const [label, kv] of hostile) {
    it(`${label} is refused before the memory is taken`, async () => {
      const bytes = writeGguf([arch, kv], []);
      const e = await engineError(() => readGguf(new MemorySource(bytes)));
      expect(e.code).toBe('bad-gguf');
      expect(e.message).toMatch(
        new RegExp(
          `^metadata "${kv.key}": the header's first [\\d.]+ MB would take about [\\d.]+ MB of memory, more than 4× its size`,
        ),
      );
    });
  }
});
