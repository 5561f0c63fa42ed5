/**
 * Models offered in the picker. One entry per line: adding a model (e.g. a bundled demo file under
 * public/models/) is a one-line change. Sizes are approximate (q4_0 arithmetic: 4.5 bits per
 * weight, plus a q6_K output head where the file has one) and shown with "≈"; the exact size comes
 * from the server before the download starts.
 */
export interface ModelPreset {
  /** Label in the picker. */
  label: string;
  /** A direct download URL (Hugging Face `resolve` URL) or a path on this site. */
  url: string;
  /** Approximate size in bytes, for the picker. */
  approxBytes: number;
  /** Instruct models are meant for chat mode; base models for completion. */
  kind: 'base' | 'instruct';
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
};

export const PRESETS: readonly ModelPreset[] = [
  DEMO_PRESET,
  {
    label: 'Llama 3.2 1B Instruct (q4_0)',
    url: hf('bartowski/Llama-3.2-1B-Instruct-GGUF', 'Llama-3.2-1B-Instruct-Q4_0.gguf'),
    approxBytes: 0.77e9,
    kind: 'instruct',
  },
  {
    label: 'Llama 3.2 3B Instruct (q4_0)',
    url: hf('bartowski/Llama-3.2-3B-Instruct-GGUF', 'Llama-3.2-3B-Instruct-Q4_0.gguf'),
    approxBytes: 1.92e9,
    kind: 'instruct',
  },
  {
    label: 'Llama 3.1 8B Instruct (q4_0)',
    url: hf('bartowski/Meta-Llama-3.1-8B-Instruct-GGUF', 'Meta-Llama-3.1-8B-Instruct-Q4_0.gguf'),
    approxBytes: 4.66e9,
    kind: 'instruct',
  },
  {
    label: 'Llama 3 8B (q4_0, base)',
    url: hf('QuantFactory/Meta-Llama-3-8B-GGUF', 'Meta-Llama-3-8B.Q4_0.gguf'),
    approxBytes: 4.66e9,
    kind: 'base',
  },
];
