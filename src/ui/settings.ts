/**
 * The sampling settings: one table of fields from which the settings panel is generated and
 * against which typed values are checked (a value out of range is marked at its field and blocks
 * Generate). Fields keep the text the user typed, so they can be emptied and retyped.
 */
export interface Settings {
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  /** Used only when `fixedSeed` is on; otherwise each generation draws a fresh seed. */
  seed: number;
  fixedSeed: boolean;
}

export type NumericSetting = Exclude<keyof Settings, 'fixedSeed'>;

export interface SettingField {
  key: NumericSetting;
  label: string;
  min: number;
  max: number;
  step: number;
  integer: boolean;
  hint?: string;
}

/** Meta's example_text_completion.py: temperature 0.6, top-p 0.9, no top-k, 64 tokens. */
export const DEFAULT_SETTINGS: Settings = {
  temperature: 0.6,
  topP: 0.9,
  topK: 0,
  maxTokens: 64,
  seed: 1,
  fixedSeed: false,
};

export const SETTING_FIELDS: readonly SettingField[] = [
  {
    key: 'temperature',
    label: 'Temperature',
    min: 0,
    max: 2,
    step: 0.05,
    integer: false,
    hint: '0 = greedy',
  },
  { key: 'topP', label: 'Top-p', min: 0.01, max: 1, step: 0.05, integer: false },
  { key: 'topK', label: 'Top-k', min: 0, max: 1_000_000, step: 1, integer: true, hint: '0 = off' },
  { key: 'maxTokens', label: 'Max tokens', min: 1, max: 4096, step: 1, integer: true },
  { key: 'seed', label: 'Seed', min: 0, max: Number.MAX_SAFE_INTEGER, step: 1, integer: true },
];

/** The typed text of each numeric field. */
export type SettingDrafts = Record<NumericSetting, string>;

export const draftsOf = (s: Settings): SettingDrafts =>
  Object.fromEntries(SETTING_FIELDS.map((f) => [f.key, String(s[f.key])])) as SettingDrafts;

/** Why `text` is not a valid value for `field`, in words that name the allowed range; undefined when valid. */
export function fieldProblem(field: SettingField, text: string): string | undefined {
  const range =
    field.max >= Number.MAX_SAFE_INTEGER ? `${field.min} or more` : `from ${field.min} to ${field.max}`;
  const t = text.trim();
  if (t === '') return `Enter a ${field.integer ? 'whole number' : 'number'} ${range}.`;
  const v = Number(t);
  if (!Number.isFinite(v)) return `Not a number: enter ${range}.`;
  if (field.integer && !Number.isInteger(v)) return `Enter a whole number ${range}.`;
  if (v < field.min || v > field.max) return `Out of range: enter ${range}.`;
  return undefined;
}

/** The settings the drafts describe, or the problems per field when any is invalid. */
export function parseSettings(
  drafts: SettingDrafts,
  fixedSeed: boolean,
): { settings: Settings; problems?: undefined } | { settings?: undefined; problems: Partial<SettingDrafts> } {
  const problems: Partial<SettingDrafts> = {};
  const values = { fixedSeed } as Settings;
  for (const f of SETTING_FIELDS) {
    // The seed field is off (and ignored) unless the seed is fixed.
    if (f.key === 'seed' && !fixedSeed) {
      values.seed = Number(drafts.seed) || 0;
      continue;
    }
    const p = fieldProblem(f, drafts[f.key]);
    if (p) problems[f.key] = p;
    else values[f.key] = Number(drafts[f.key].trim());
  }
  return Object.keys(problems).length > 0 ? { problems } : { settings: values };
}

/** The seed to ask for: the fixed one, or none (the engine draws a fresh one and reports it in the stats). */
export const seedFor = (s: Settings): number | undefined => (s.fixedSeed ? s.seed : undefined);

/** The sampler's options for the engine (no seed: a fresh one per run). */
export const samplingOf = (s: Settings) => ({
  temperature: s.temperature,
  topP: s.topP,
  topK: s.topK,
  seed: seedFor(s),
});
