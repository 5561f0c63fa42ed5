/** The sampling settings, generated from SETTING_FIELDS (settings.ts). */
import { useState } from 'react';
import { type SettingDrafts, SETTING_FIELDS, type SettingField } from '../settings';

/** On a phone the settings fold away under the conversation; elsewhere they start open. */
const narrow = () => typeof matchMedia === 'function' && matchMedia('(max-width: 640px)').matches;

export function SettingsPanel(props: {
  drafts: SettingDrafts;
  problems: Partial<SettingDrafts>;
  fixedSeed: boolean;
  onDraft: (key: SettingField['key'], text: string) => void;
  onFixedSeed: (on: boolean) => void;
}) {
  const [open, setOpen] = useState(() => !narrow());
  const invalid = Object.keys(props.problems).length > 0;
  return (
    <details
      className="settings-fold"
      open={open || invalid}
      onToggle={(e) => setOpen((e.target as HTMLDetailsElement).open)}
    >
      <summary>Settings{invalid ? ' (check the marked fields)' : ''}</summary>
      <div className="settings">
        {SETTING_FIELDS.map((f) => {
          const problem = props.problems[f.key];
          const off = f.key === 'seed' && !props.fixedSeed;
          const hintId = `setting-${f.key}-hint`;
          return (
            <label className={`num${problem ? ' invalid' : ''}`} key={f.key}>
              <span className="label">{f.label}</span>
              <input
                type="text"
                inputMode={f.integer ? 'numeric' : 'decimal'}
                aria-label={f.label}
                aria-invalid={problem ? true : undefined}
                aria-describedby={problem || f.hint ? hintId : undefined}
                disabled={off}
                value={off ? 'random' : props.drafts[f.key]}
                onChange={(e) => props.onDraft(f.key, e.target.value)}
              />
              {problem ? (
                <small id={hintId} className="field-error">
                  {problem}
                </small>
              ) : (
                f.hint && <small id={hintId}>{f.hint}</small>
              )}
            </label>
          );
        })}
        <label className="check">
          <input
            type="checkbox"
            checked={props.fixedSeed}
            onChange={(e) => props.onFixedSeed(e.target.checked)}
          />
          Fixed seed
        </label>
      </div>
    </details>
  );
}
