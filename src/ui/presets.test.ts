/** The presets: q4_0 by default, the same repository's Q4_K_M beside it, sizes that add up. */
import { describe, expect, it } from 'vitest';
import { DEMO_PRESET, PRESETS, presetFileLabel, presetOfUrl } from './presets';

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
