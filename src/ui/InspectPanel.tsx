/**
 * "What is this file?" before a download: reads the GGUF header at a URL (Range requests of a few
 * MB, through the worker's `inspect`) and shows what `npm run cli -- inspect` prints: shapes,
 * parameters, tensor-type mix, context, chat template, GPU memory, and whether it runs here and why
 * not. Nothing is downloaded or cached. The facts and their wording come from the engine
 * (inspectionFacts), so the page and the CLI say the same thing.
 */
import { useEffect, useState } from 'react';
import { inspectionFacts, type ModelInspection } from '../worker/api';
import { asEngineError } from '../worker/client';
import { formatBytes } from './format';

/** Two columns, labels aligned (inline: the panel brings its own layout). */
const FACT_ROW = { display: 'grid', gridTemplateColumns: '9rem 1fr', gap: '0.5rem' } as const;

type State =
  | { kind: 'idle' }
  | { kind: 'reading'; url: string }
  | { kind: 'done'; url: string; info: ModelInspection }
  | { kind: 'failed'; url: string; message: string };

export function InspectPanel(props: { url: string; inspect: (url: string) => Promise<ModelInspection> }) {
  const url = props.url.trim();
  const [state, setState] = useState<State>({ kind: 'idle' });
  // A result belongs to one URL: editing the box or picking another preset clears it.
  useEffect(() => {
    setState((s) => (s.kind !== 'idle' && s.url !== url ? { kind: 'idle' } : s));
  }, [url]);

  const run = async () => {
    setState({ kind: 'reading', url });
    try {
      const info = await props.inspect(url);
      setState((s) => (s.kind === 'reading' && s.url === url ? { kind: 'done', url, info } : s));
    } catch (e) {
      const message = asEngineError(e).message;
      setState((s) => (s.kind === 'reading' && s.url === url ? { kind: 'failed', url, message } : s));
    }
  };

  return (
    <div className="inspect-panel">
      <button
        type="button"
        disabled={!/^https?:\/\//i.test(url) || state.kind === 'reading'}
        onClick={run}
        title="Read the file's header (a few MB) and say what it is and whether it runs here"
      >
        {state.kind === 'reading' ? 'Reading the header…' : 'Inspect before downloading'}
      </button>
      {state.kind === 'failed' && (
        <p className="hint error" role="alert">
          {state.message}
        </p>
      )}
      {state.kind === 'done' && (
        <section aria-label="Model file facts">
          <p className={state.info.runnable ? 'hint ok' : 'hint error'}>
            {state.info.runnable
              ? 'This version can run this file.'
              : 'This version cannot run this file: see why below.'}
          </p>
          <dl className="inspect-facts" style={{ margin: 0 }}>
            {inspectionFacts(state.info, formatBytes).map(([label, value], i) => (
              // Lines are fixed in order for one result: the index is a stable key.
              // biome-ignore lint/suspicious/noArrayIndexKey: see above
              <div key={i} className="inspect-fact" style={FACT_ROW}>
                <dt>{label}</dt>
                <dd>{value}</dd>
              </div>
            ))}
          </dl>
        </section>
      )}
    </div>
  );
}
