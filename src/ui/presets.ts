/**
 * Models offered in the picker. One entry per model: adding a model (e.g. a bundled demo file under
 * public/models/) is a one-line change. Each preset's default file is its q4_0 GGUF; each Llama 3
 * preset also offers the same repository's Q4_K_M file (`alternatives`), the most downloaded
 * quantization, which the K-quant kernels run. Sizes are computed, rounded to 10 MB: the tensor bytes
 * of each model's shapes in llama-quantize's mix (`llamaTensorBytes`, src/engine/quant/mix.ts) plus a
 * Llama 3 header (presets.test.ts checks every entry); they agree with the Hugging Face pages' tables.
 * They are shown with "≈"; the exact size comes from the server before the download starts.
 * docs/models.md lists the same files with their type mix.
 */
export interface PresetFile {
  /** llama-quantize's name for the file's mix: "Q4_0", "Q4_K_M". */
  quant: string;
  /** A direct download URL (Hugging Face `resolve` URL) or a path on this site. */
  url: string;
  /** Approximate size in bytes, for the picker. */
  approxBytes: number;
}

export interface ModelPreset {
  /** Label in the picker. */
  label: string;
  /** A direct download URL (Hugging Face `resolve` URL) or a path on this site. */
  url: string;
  /** Approximate size in bytes, for the picker. */
  approxBytes: number;
  /** Instruct models are meant for chat mode; base models for completion. */
  kind: 'base' | 'instruct';
  /** Other files of the same model (Q4_K_M), offered beside the default `url`. */
  alternatives: readonly PresetFile[];
}

const hf = (repo: string, file: string) => `https://huggingface.co/${repo}/resolve/main/${file}`;

/** Absolute URL of a file this site serves (the worker resolves URLs against its own script, not the page). */
function onThisSite(path: string): string {
  const base = import.meta.env?.BASE_URL ?? '/';
  return typeof location === 'undefined' ? base + path : new URL(base + path, location.href).href;
}

/**
 * The model that ships with the app (public/models/, see MODEL.md there): a 37M-parameter Llama 3
 * trained on TinyStories. Served from this site, so the first run needs no download dialog and no
 * other host; the default whenever no other model is cached.
 */
export const DEMO_PRESET: ModelPreset = {
  label: 'Demo: TinyStories 37M — a toy; pick a Llama 3 model for real use',
  url: onThisSite('models/tinystories-llama3-q4_0.gguf'),
  approxBytes: 28_681_440,
  kind: 'base',
  alternatives: [],
};

export const PRESETS: readonly ModelPreset[] = [
  DEMO_PRESET,
  {
    label: 'Llama 3.2 1B Instruct (q4_0)',
    url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_0.gguf'),
    approxBytes: 0.77e9,
    kind: 'instruct',
    alternatives: [
      {
        quant: 'Q4_K_M',
        url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_K_M.gguf'),
        approxBytes: 0.81e9,
      },
    ],
  },
  {
    label: 'Llama 3.2 3B Instruct (q4_0)',
    url: hf('bartowski/Llama-3.2-3B-Instruct-GGUF', 'Llama-3.2-3B-Instruct-Q4_0.gguf'),
    approxBytes: 1.92e9,
    kind: 'instruct',
    alternatives: [
      {
        quant: 'Q4_K_M',
        url: hf('bartowski/Llama-3.2-3B-Instruct-GGUF', 'Llama-3.2-3B-Instruct-Q4_K_M.gguf'),
        approxBytes: 2.02e9,
      },
    ],
  },
  {
    label: 'Llama 3.1 8B Instruct (q4_0)',
    url: hf('bartowski/Meta-Llama-3.1-8B-Instruct-GGUF', 'Meta-Llama-3.1-8B-Instruct-Q4_0.gguf'),
    approxBytes: 4.66e9,
    kind: 'instruct',
    alternatives: [
      {
        quant: 'Q4_K_M',
        url: hf('bartowski/Meta-Llama-3.1-8B-Instruct-GGUF', 'Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf'),
        approxBytes: 4.92e9,
      },
    ],
  },
  {
    label: 'Llama 3 8B (q4_0, base)',
    url: hf('QuantFactory/Meta-Llama-3-8B-GGUF', 'Meta-Llama-3-8B.Q4_0.gguf'),
    approxBytes: 4.66e9,
    kind: 'base',
    alternatives: [
      {
        quant: 'Q4_K_M',
        url: hf('QuantFactory/Meta-Llama-3-8B-GGUF', 'Meta-Llama-3-8B.Q4_K_M.gguf'),
        approxBytes: 4.92e9,
      },
    ],
  },
];

/**
 * The preset a URL belongs to and which of its files it is: the default (`quant` "Q4_0", the demo's
 * "demo") or an alternative such as Q4_K_M.
 */
export function presetOfUrl(url: string): { preset: ModelPreset; file: PresetFile } | undefined {
  for (const preset of PRESETS) {
    if (preset.url === url) {
      const quant = preset === DEMO_PRESET ? 'demo' : 'Q4_0';
      return { preset, file: { quant, url, approxBytes: preset.approxBytes } };
    }
    const file = preset.alternatives.find((a) => a.url === url);
    if (file) return { preset, file };
  }
  return undefined;
}

/** A preset file's label: the preset's, with the alternative's quantization in place of "q4_0". */
export function presetFileLabel(preset: ModelPreset, file: PresetFile): string {
  return file.url === preset.url ? preset.label : preset.label.replace(/\(q4_0/, `(${file.quant}`);
}
