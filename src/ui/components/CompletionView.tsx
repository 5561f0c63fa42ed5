/**
 * Completion mode: a prompt (or a batch, one per line) continued by the model; plain text output
 * with the prompt echoed.
 */
import type { KeyboardEvent, ReactNode } from 'react';
import type { GenerateOutcome } from '../../worker/api';
import { finishInWords } from '../format';

export interface CompletionOutput {
  prompt: string;
  text: string;
}

/** The prompts a completion sends: the text, or its non-empty lines in a batch. */
export function promptsOf(prompt: string, batch: boolean): string[] {
  return batch
    ? prompt
        .split('\n')
        .map((p) => p.trim())
        .filter((p) => p.length > 0)
    : [prompt];
}

export function CompletionView(props: {
  prompt: string;
  batch: boolean;
  generating: boolean;
  queued: boolean;
  canGenerate: boolean;
  outputs: CompletionOutput[];
  result?: GenerateOutcome;
  /** The settings panel and the stats, placed by the view. */
  settings: ReactNode;
  stats?: ReactNode;
  /** Shown above the prompt (the mode switch). */
  controls: ReactNode;
  onPrompt: (text: string) => void;
  onBatch: (on: boolean) => void;
  onGenerate: () => void;
  onStop: () => void;
}) {
  const { batch, outputs, result } = props;
  const count = promptsOf(props.prompt, batch).length;
  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      props.onGenerate();
    }
  };
  return (
    <>
      <div className="row controls">
        {props.controls}
        <label className="check">
          <input type="checkbox" checked={batch} onChange={(e) => props.onBatch(e.target.checked)} />
          Batch (one per line)
        </label>
      </div>
      <textarea
        aria-label="Prompt"
        className="prompt"
        rows={batch ? 6 : 4}
        placeholder={batch ? 'One prompt per line' : 'I believe the meaning of life is'}
        value={props.prompt}
        onChange={(e) => props.onPrompt(e.target.value)}
        onKeyDown={onKey}
      />
      {props.settings}
      <div className="row actions">
        <button type="button" className="primary" onClick={props.onGenerate} disabled={!props.canGenerate}>
          Generate
        </button>
        <button type="button" onClick={props.onStop} disabled={!props.generating}>
          Stop
        </button>
        <span className="hint">Ctrl/⌘ + Enter</span>
        {props.queued && <span className="hint">starts as soon as the model has loaded…</span>}
        {batch && (
          <span className="hint">
            {count} prompt{count === 1 ? '' : 's'}
          </span>
        )}
      </div>

      <section aria-label="Output" className="outputs" aria-live="polite" aria-busy={props.generating}>
        {outputs.map((o, i) => (
          // biome-ignore lint/suspicious/noArrayIndexKey: outputs are positional (one per prompt)
          <article key={i} className="output" aria-label={`Result ${i + 1}`}>
            {outputs.length > 1 && <header className="output-prompt">{o.prompt}</header>}
            <pre className="gen">
              {outputs.length === 1 ? <span className="echo">{o.prompt}</span> : null}
              <span className="text">{o.text}</span>
              {props.generating && <span className="cursor" aria-hidden="true" />}
            </pre>
            {result && (
              <small className="finish" data-reason={result.finishReasons[i]}>
                {finishInWords(result.finishReasons[i])}
              </small>
            )}
          </article>
        ))}
      </section>
      {result?.warnings.map((w) => (
        <p key={w} className="hint" role="note">
          {w}
        </p>
      ))}
      {props.stats}
    </>
  );
}
