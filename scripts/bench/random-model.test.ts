import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { llamaConfigFromGguf, validateLlamaTensors } from '../../src/engine/gguf/config';
import { readGguf, readTensorBytes } from '../../src/engine/gguf/reader';
import { GgmlType } from '../../src/engine/gguf/types';
import { dequantize } from '../../src/engine/reference/ops';
import { NodeFileSource } from '../../src/node/file-source';
import { PRESETS, tensorList, writeRandomModel } from './random-model';

describe('bench random-weight models', () => {
  it('writes a GGUF the reader accepts, with the preset shapes and finite weights', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'random-model-'));
    try {
      for (const allQ4 of [false, true]) {
        const path = join(dir, `tiny-${allQ4}.gguf`);
        const shape = { ...PRESETS.tiny, tied: !allQ4 };
        const size = writeRandomModel(path, shape, allQ4);
        expect(statSync(path).size).toBe(size);
        const source = await NodeFileSource.open(path);
        const file = await readGguf(source);
        const config = llamaConfigFromGguf(file);
        expect(config).toMatchObject({
          dim: 256,
          nLayers: 2,
          nHeads: 4,
          nKvHeads: 2,
          ffnDim: 512,
          vocabSize: 2048,
        });
        const t = validateLlamaTensors(file, config);
        expect(t.output.type).toBe(allQ4 ? GgmlType.Q4_0 : GgmlType.Q6_K);
        expect(config.tiedEmbeddings).toBe(!allQ4);
        for (const info of [t.output, t.layers[1].wDown, t.layers[0].attnNorm]) {
          const v = dequantize(info.type, await readTensorBytes(source, info), info.elements);
          expect(v.every(Number.isFinite)).toBe(true);
          expect(v.reduce((m, x) => Math.max(m, Math.abs(x)), 0)).toBeLessThan(20);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('8b preset has the real tensor shapes and a ~4.6 GB size', () => {
    const list = tensorList(PRESETS['8b'], false);
    expect(list.length).toBe(2 + 9 * 32 + 1);
    const q = list.find((x) => x.name === 'blk.0.attn_k.weight');
    expect(q?.dims).toEqual([4096, 1024]);
    const head = list.find((x) => x.name === 'output.weight');
    expect(head).toMatchObject({ dims: [4096, 128256], type: GgmlType.Q6_K });
  });
});
