/** The presets: q4_0 by default, the same repository's Q4_K_M beside it, sizes that add up. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { readGguf } from '../engine/gguf/reader';
import { type LlamaShape, llamaTensorBytes } from '../engine/quant/mix';
import { MemorySource } from '../engine/source';
import { DEMO_MODEL_PATH } from '../node/paths';
import { DEMO_PRESET, PRESETS, presetFileLabel, presetOfUrl } from './presets';

/** docs/models.md "Shapes" (the models' config.json), by the model's name in the file name. */
const llama3 = { vocab: 128256, nKvHeads: 8, ropeFreqs: true };
const SHAPES: [RegExp, LlamaShape][] = [
  [/Llama-3\.2-1B/, { ...llama3, nLayers: 16, dim: 2048, headDim: 64, ffnDim: 8192, tied: true }],
  [/Llama-3\.2-3B/, { ...llama3, nLayers: 28, dim: 3072, headDim: 128, ffnDim: 8192, tied: true }],
  [/Llama-3\.1-8B/, { ...llama3, nLayers: 32, dim: 4096, headDim: 128, ffnDim: 14336, tied: false }],
  [
    /Llama-3-8B/,
    { ...llama3, nLayers: 32, dim: 4096, headDim: 128, ffnDim: 14336, tied: false, ropeFreqs: false },
  ],
];

const HF = /^https:\/\/huggingface\.co\/([\w.-]+\/[\w.-]+)\/resolve\/main\/([\w.-]+\.gguf)$/;

describe('presets', () => {
  const llama = PRESETS.filter((p) => p !== DEMO_PRESET);

  it('every Llama preset defaults to its q4_0 file and offers the Q4_K_M file of the same repository', () => {
    expect(llama.length).toBe(4);
    for (const p of llama) {
      const [, repo, file] = HF.exec(p.url) ?? [];
      expect(file, p.url).toMatch(/[-.]Q4_0\.gguf$/);
      expect(p.label).toMatch(/\(q4_0/);
      expect(p.alternatives.map((a) => a.quant)).toEqual(['Q4_K_M']);
      const [, altRepo, altFile] = HF.exec(p.alternatives[0].url) ?? [];
      expect(altRepo).toBe(repo);
      expect(altFile).toBe(file.replace('Q4_0', 'Q4_K_M'));
      // Q4_K_M spends ~4.9 bits per weight where Q4_0 spends ~4.5: 3-8% more bytes.
      const ratio = p.alternatives[0].approxBytes / p.approxBytes;
      expect(ratio).toBeGreaterThan(1.02);
      expect(ratio).toBeLessThan(1.1);
    }
  });

  it('each file’s size is its tensors’ bytes in llama-quantize’s mix plus a Llama 3 header, to 10 MB', async () => {
    // The header is mostly the tokenizer (128256 tokens, 280147 merges): the demo file carries the
    // same one, so its tensor-data offset stands for the header (a chat template adds a few KB).
    const demo = new Uint8Array(readFileSync(DEMO_MODEL_PATH));
    const header = (await readGguf(new MemorySource(demo, 'demo'))).dataOffset;
    expect(header).toBeGreaterThan(7e6);
    for (const p of llama) {
      for (const file of [{ quant: 'Q4_0', url: p.url, approxBytes: p.approxBytes }, ...p.alternatives]) {
        const shape = SHAPES.find(([re]) => re.test(file.url));
        expect(shape, file.url).toBeDefined();
        const computed = header + llamaTensorBytes(shape![1], file.quant as 'Q4_0' | 'Q4_K_M');
        expect(file.approxBytes, `${file.url}: computed ${computed}`).toBe(Math.round(computed / 1e7) * 1e7);
      }
    }
  });

  it('the demo stays a single file on this site', () => {
    expect(DEMO_PRESET.alternatives).toEqual([]);
    expect(DEMO_PRESET.url).toMatch(/models\/tinystories-llama3-q4_0\.gguf$/);
  });

  it('presetOfUrl finds a preset by either of its files; labels name the quantization', () => {
    const p = llama[0];
    const alt = p.alternatives[0];
    expect(presetOfUrl(p.url)).toEqual({
      preset: p,
      file: { quant: 'Q4_0', url: p.url, approxBytes: p.approxBytes },
    });
    expect(presetOfUrl(alt.url)).toEqual({ preset: p, file: alt });
    expect(presetOfUrl(DEMO_PRESET.url)?.file.quant).toBe('demo');
    expect(presetOfUrl('https://example.org/model.gguf')).toBeUndefined();
    expect(presetFileLabel(p, alt)).toBe('Llama 3.2 1B Instruct (Q4_K_M)');
    expect(presetFileLabel(p, presetOfUrl(p.url)!.file)).toBe(p.label);
  });
});
