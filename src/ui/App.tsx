/**
 * The page: pick a model (preset, URL, local file, cache), watch it download and load, generate.
 * Talks to the engine only through the EngineApi proxy. Model output is rendered as text nodes,
 * never as HTML.
 */
import { type DragEvent, type KeyboardEvent, useCallback, useEffect, useRef, useState } from 'react';
import type {
  EngineErrorCode,
  CachedModelInfo,
  Environment,
  GenerateOutcome,
  LoadProgress,
  ModelInfo,
  ModelSourceSpec,
  RemoteChange,
  StorageInfo,
} from '../worker/api';
import { asEngineError, Comlink, type RemoteEngine } from '../worker/client';
import { formatBytes, formatDuration, formatMs, formatRate } from './format';
import { DEMO_PRESET, PRESETS } from './presets';
import { UpdateBanner } from './pwa/UpdateBanner';

interface Settings {
  temperature: number;
  topP: number;
  topK: number;
  maxTokens: number;
  seed: number;
}

/** Meta's example_text_completion.py: temperature 0.6, top-p 0.9, no top-k, 64 tokens, seed 1. */
const DEFAULT_SETTINGS: Settings = { temperature: 0.6, topP: 0.9, topK: 0, maxTokens: 64, seed: 1 };

interface UiError {
  code: EngineErrorCode;
  message: string;
}

type Busy = 'idle' | 'loading' | 'generating';

export function App({ engine }: { engine: RemoteEngine }) {
  const [env, setEnv] = useState<Environment>();
  // `?model=<url>` in the address names the model; otherwise the bundled demo is selected.
  const [addressModel] = useState(() => new URLSearchParams(location.search).get('model'));
  const [url, setUrl] = useState(() => addressModel ?? DEMO_PRESET.url);
  const [busy, setBusy] = useState<Busy>('idle');
  const [progress, setProgress] = useState<LoadProgress>();
  const [model, setModel] = useState<ModelInfo>();
  /** The file at the cached model's URL changed since it was cached (a HEAD after the load). */
  const [remoteChange, setRemoteChange] = useState<RemoteChange>();
  const [lastSource, setLastSource] = useState<ModelSourceSpec>();
  const [error, setError] = useState<UiError>();
  const [mode, setMode] = useState<'completion' | 'chat'>('completion');
  const [batch, setBatch] = useState(false);
  const [prompt, setPrompt] = useState('');
  const [settings, setSettings] = useState<Settings>(DEFAULT_SETTINGS);
  const [outputs, setOutputs] = useState<{ prompt: string; text: string }[]>([]);
  const [result, setResult] = useState<GenerateOutcome>();
  /** Generate was pressed while the model loads: it starts when the load is done. */
  const [queued, setQueued] = useState(false);
  const [cached, setCached] = useState<CachedModelInfo[]>([]);
  const [storage, setStorage] = useState<StorageInfo>();
  const [persisted, setPersisted] = useState<boolean>();
  const [dragging, setDragging] = useState(false);
  const askedPersist = useRef(false);
  const autoLoaded = useRef(false);
  /** The user has picked or typed a model: the page never replaces their choice. */
  const userChose = useRef(false);
  /** The URL box had the focus: its text is the user's, even before they type. */
  const urlTouched = useRef(false);
  /** Each load gets a number; only the newest may change the page (a newer load pre-empts it). */
  const loadSeq = useRef(0);

  const refreshCache = useCallback(async () => {
    try {
      setCached(await engine.listCached());
      setStorage(await engine.storageUse());
    } catch {
      // the cache list is informative only
    }
  }, [engine]);

  const loadNow = useCallback(
    async (spec: ModelSourceSpec): Promise<ModelInfo | undefined> => {
      // persist() only works on the page, ideally inside a user gesture: ask once, on the first load.
      if (!askedPersist.current && navigator.storage?.persist) {
        askedPersist.current = true;
        navigator.storage.persist().then(setPersisted, () => setPersisted(false));
      }
      // The worker stops any load in progress when a new one starts; its outcome is then stale.
      const seq = ++loadSeq.current;
      const current = () => seq === loadSeq.current;
      setBusy('loading');
      setError(undefined);
      setModel(undefined);
      setRemoteChange(undefined);
      setProgress({ phase: 'probe', loadedBytes: 0, totalBytes: 0 });
      setLastSource(spec);
      try {
        const info = await engine.load(
          spec,
          Comlink.proxy((p: LoadProgress) => current() && setProgress(p)),
        );
        if (!current()) return;
        setModel(info);
        if (info.fromCache && info.id) {
          // Offline or slow, the check answers nothing: it never delays or fails the load.
          engine.checkForUpdate(info.id).then(
            (change) => current() && setRemoteChange(change),
            () => {},
          );
        }
        return info;
      } catch (e) {
        if (!current()) return;
        const err = asEngineError(e);
        setError({ code: err.code, message: err.message });
      } finally {
        if (current()) {
          setBusy('idle');
          setProgress(undefined);
        }
        refreshCache();
      }
    },
    [engine, refreshCache],
  );

  /** The newest load: a Generate pressed while it runs waits for it. */
  const pendingLoad = useRef<Promise<ModelInfo | undefined>>(undefined);
  const load = useCallback(
    (spec: ModelSourceSpec) => {
      const p = loadNow(spec);
      pendingLoad.current = p;
      return p;
    },
    [loadNow],
  );

  /** Resolves true once the newest load has a model; false when it fails or is stopped. */
  const loaded = async (): Promise<boolean> => {
    for (;;) {
      const p = pendingLoad.current;
      if (!p) return false;
      const info = await p;
      if (p !== pendingLoad.current) continue; // a newer load replaced it: wait for that one
      return info !== undefined;
    }
  };

  /** A load the user asked for (button, preset, file, cache entry): their choice from now on. */
  const userLoad = (spec: ModelSourceSpec) => {
    userChose.current = true;
    return load(spec);
  };

  useEffect(() => {
    const environment = engine.environment().then(
      (e) => e,
      (e): Environment => ({ webgpu: false, problem: String(e) }),
    );
    environment.then(setEnv);
    refreshCache();
    navigator.storage?.persisted?.().then(setPersisted, () => {});
    if (autoLoaded.current) return; // React's StrictMode runs this effect twice in development
    autoLoaded.current = true;
    if (addressModel) {
      load({ kind: 'url', url: addressModel });
      return;
    }
    // First visit (no other model cached): load the bundled demo from this site right away, so the
    // page is ready for a prompt. A real model already in the cache (gigabytes) is selected instead,
    // and loads when the user asks. Either way a choice the user made meanwhile wins.
    Promise.all([environment, engine.listCached()]).then(
      ([gpu, list]) => {
        if (userChose.current || loadSeq.current > 0) return;
        const others = list
          .filter((c) => c.complete && c.url !== DEMO_PRESET.url)
          .sort((a, b) => b.updatedAt - a.updatedAt);
        if (others.length > 0) setUrl((u) => (urlTouched.current ? u : others[0].url));
        else if (gpu.webgpu) load({ kind: 'url', url: DEMO_PRESET.url });
      },
      () => {},
    );
  }, [engine, refreshCache, load, addressModel]);

  const prompts = batch
    ? prompt
        .split('\n')
        .map((p) => p.trim())
        .filter((p) => p.length > 0)
    : [prompt];

  const generate = async () => {
    if (busy === 'generating' || queued || prompts.every((p) => p.length === 0)) return;
    if (!model || busy === 'loading') {
      // Pressed while a model loads (the demo on a first visit): start when it is ready. With
      // nothing loaded and the demo selected, load it first.
      if (busy === 'idle') {
        if (url !== DEMO_PRESET.url) return;
        load({ kind: 'url', url });
      }
      setQueued(true);
      const ready = await loaded();
      setQueued(false);
      if (!ready) return;
    }
    setBusy('generating');
    // A load started during this generation stops it and owns the error line from then on.
    const loadAtStart = loadSeq.current;
    setError(undefined);
    setResult(undefined);
    setOutputs(prompts.map((p) => ({ prompt: p, text: '' })));
    try {
      const r = await engine.generate(
        { prompts, mode, maxTokens: settings.maxTokens, sampling: settings },
        Comlink.proxy(({ seq, delta }: { seq: number; delta: string }) => {
          if (!delta) return;
          setOutputs((o) => o.map((x, i) => (i === seq ? { ...x, text: x.text + delta } : x)));
        }),
      );
      // The final text is authoritative (a split multi-byte character may still be pending).
      setOutputs(prompts.map((p, i) => ({ prompt: p, text: r.text[i] ?? '' })));
      setResult(r);
    } catch (e) {
      const err = asEngineError(e);
      if (loadSeq.current === loadAtStart) setError({ code: err.code, message: err.message });
    } finally {
      // A model load started meanwhile (it stopped this generation) owns the busy state now.
      setBusy((b) => (b === 'generating' ? 'idle' : b));
    }
  };

  const stop = () => {
    engine.interrupt();
  };

  const onPromptKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  };

  const openFile = (file: File | undefined) => {
    if (!file) return;
    if (!file.name.toLowerCase().endsWith('.gguf')) {
      setError({
        code: 'bad-gguf',
        message: `${file.name} is not a .gguf file. Pick a GGUF model file (for example Llama-3.2-1B-Instruct-Q4_0.gguf).`,
      });
      return;
    }
    userLoad({ kind: 'file', file });
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    openFile(e.dataTransfer.files[0]);
  };

  const num = (key: keyof Settings) => (e: React.ChangeEvent<HTMLInputElement>) => {
    const v = e.target.valueAsNumber;
    if (!Number.isNaN(v)) setSettings((s) => ({ ...s, [key]: v }));
  };

  const canGenerate =
    (!!model || url === DEMO_PRESET.url || busy === 'loading') &&
    busy !== 'generating' &&
    !queued &&
    prompts.some((p) => p.length > 0);

  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: the whole page is a drop target for .gguf files
    <div
      className={`app${dragging ? ' dragging' : ''}`}
      onDragOver={(e) => {
        e.preventDefault();
        setDragging(true);
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
    >
      <UpdateBanner />
      <header className="top">
        <h1>Llama 3 on WebGPU</h1>
        <p className="tagline">Runs entirely in your browser. Weights are cached on this device.</p>
        {env?.webgpu && env.adapter && <p className="hint adapter">GPU: {env.adapter}</p>}
      </header>

      {env && !env.webgpu && (
        <div className="banner error" role="alert">
          <strong>WebGPU is not available.</strong> {env.problem}
        </div>
      )}

      <section className="card" aria-labelledby="model-h">
        <h2 id="model-h">Model</h2>
        <div className="presets">
          {PRESETS.map((p) => (
            <button
              key={p.url}
              type="button"
              className={`preset${url === p.url ? ' selected' : ''}`}
              onClick={() => {
                userChose.current = true;
                setUrl(p.url);
                if (p.kind === 'instruct') setMode('chat');
              }}
            >
              <span>{p.label}</span>
              <small>≈ {formatBytes(p.approxBytes)}</small>
            </button>
          ))}
        </div>
        <form
          className="row"
          onSubmit={(e) => {
            e.preventDefault();
            if (url.trim()) userLoad({ kind: 'url', url: url.trim() });
          }}
        >
          <label className="grow">
            <span className="label">Model URL</span>
            <input
              type="url"
              aria-label="Model URL"
              placeholder="https://huggingface.co/…/resolve/main/model.gguf"
              value={url}
              onFocus={() => {
                urlTouched.current = true;
              }}
              onChange={(e) => {
                userChose.current = true;
                setUrl(e.target.value);
              }}
            />
          </label>
          <button type="submit" className="primary" disabled={!url.trim()}>
            Load model
          </button>
        </form>
        <div className="row file-row">
          <label className="file">
            <span>Open GGUF file</span>
            <input
              type="file"
              aria-label="Open GGUF file"
              accept=".gguf"
              onChange={(e) => {
                openFile(e.target.files?.[0]);
                e.target.value = '';
              }}
            />
          </label>
          <span className="hint">
            …or drop a .gguf file anywhere on the page. Local files are read in place, not cached.
          </span>
        </div>

        {busy === 'loading' && progress && (
          <LoadingView name={lastSource && sourceName(lastSource)} progress={progress} onStop={stop} />
        )}

        {model && (
          <div className="model-status" role="status">
            <strong>{model.config.name || model.name}</strong>
            <span>
              {formatBytes(model.sizeBytes)} · {model.config.nLayers} layers · dim {model.config.dim} ·
              context {model.maxSeqLen}
            </span>
            <span className="tag">
              {model.fromCache ? 'Loaded from cache' : model.cached ? 'Downloaded and cached' : 'Local file'}
            </span>
            <span>loaded in {formatMs(model.loadMs)}</span>
          </div>
        )}
        {model?.id && remoteChange && (
          <p className="hint" role="note">
            The file at this model's address is not the one in the cache: {remoteChange.reason}.{' '}
            <button
              type="button"
              onClick={() => model.id && userLoad({ kind: 'url', url: model.id, refresh: true })}
            >
              Download again
            </button>
          </p>
        )}
        {persisted === false && cached.length > 0 && (
          <p className="hint">
            The browser has not granted persistent storage: it may evict cached models when disk space runs
            low.
          </p>
        )}
      </section>

      {error && <ErrorView error={error} onReload={lastSource ? () => userLoad(lastSource) : undefined} />}

      <section className="card" aria-labelledby="gen-h">
        <h2 id="gen-h">Generate</h2>
        <div className="row controls">
          <fieldset className="segmented">
            <legend className="visually-hidden">Mode</legend>
            <label>
              <input
                type="radio"
                name="mode"
                checked={mode === 'completion'}
                onChange={() => setMode('completion')}
              />
              Completion
            </label>
            <label>
              <input type="radio" name="mode" checked={mode === 'chat'} onChange={() => setMode('chat')} />
              Chat
            </label>
          </fieldset>
          <label className="check">
            <input type="checkbox" checked={batch} onChange={(e) => setBatch(e.target.checked)} />
            Batch (one per line)
          </label>
        </div>
        <textarea
          aria-label="Prompt"
          className="prompt"
          rows={batch ? 6 : 4}
          placeholder={
            mode === 'chat'
              ? 'Ask something…'
              : batch
                ? 'One prompt per line'
                : 'I believe the meaning of life is'
          }
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
          onKeyDown={onPromptKey}
        />
        <div className="settings">
          <NumberField
            label="Temperature"
            value={settings.temperature}
            step={0.05}
            min={0}
            max={2}
            onChange={num('temperature')}
          />
          <NumberField
            label="Top-p"
            value={settings.topP}
            step={0.05}
            min={0.01}
            max={1}
            onChange={num('topP')}
          />
          <NumberField
            label="Top-k"
            value={settings.topK}
            step={1}
            min={0}
            onChange={num('topK')}
            hint="0 = off"
          />
          <NumberField
            label="Max tokens"
            value={settings.maxTokens}
            step={1}
            min={1}
            max={4096}
            onChange={num('maxTokens')}
          />
          <NumberField label="Seed" value={settings.seed} step={1} min={0} onChange={num('seed')} />
        </div>
        <div className="row actions">
          <button type="button" className="primary" onClick={generate} disabled={!canGenerate}>
            Generate
          </button>
          <button type="button" onClick={stop} disabled={busy !== 'generating'}>
            Stop
          </button>
          <span className="hint">Ctrl/⌘ + Enter</span>
          {queued && <span className="hint">starts as soon as the model has loaded…</span>}
          {batch && (
            <span className="hint">
              {prompts.length} prompt{prompts.length === 1 ? '' : 's'}
            </span>
          )}
        </div>

        <section aria-label="Output" className="outputs" aria-live="polite" aria-busy={busy === 'generating'}>
          {outputs.map((o, i) => (
            // biome-ignore lint/suspicious/noArrayIndexKey: outputs are positional (one per prompt)
            <article key={i} className="output" aria-label={`Result ${i + 1}`}>
              {outputs.length > 1 && <header className="output-prompt">{o.prompt}</header>}
              <pre className="gen">
                {mode === 'completion' && outputs.length === 1 ? (
                  <span className="echo">{o.prompt}</span>
                ) : null}
                <span className="text">{o.text}</span>
                {busy === 'generating' && <span className="cursor" aria-hidden="true" />}
              </pre>
              {result && <small className="finish">{result.finishReasons[i]}</small>}
            </article>
          ))}
        </section>
        {result?.warnings.map((w) => (
          <p key={w} className="hint" role="note">
            {w}
          </p>
        ))}
        {result && <StatsView result={result} model={model} />}
      </section>

      <CacheView
        cached={cached}
        storage={storage}
        persisted={persisted}
        busy={busy}
        onLoad={(c) => {
          setUrl(c.url);
          userLoad({ kind: 'url', url: c.url });
        }}
        onDelete={async (c) => {
          await engine.deleteCached(c.id).catch(() => {});
          refreshCache();
        }}
      />
    </div>
  );
}

function NumberField(props: {
  label: string;
  value: number;
  step: number;
  min?: number;
  max?: number;
  hint?: string;
  onChange: (e: React.ChangeEvent<HTMLInputElement>) => void;
}) {
  return (
    <label className="num">
      <span className="label">{props.label}</span>
      <input
        type="number"
        aria-label={props.label}
        value={props.value}
        step={props.step}
        min={props.min}
        max={props.max}
        onChange={props.onChange}
      />
      {props.hint && <small>{props.hint}</small>}
    </label>
  );
}

/** What a load is loading, for people: the preset's label, the file name, or the URL's last part. */
function sourceName(spec: ModelSourceSpec): string {
  if (spec.kind === 'file') return spec.file.name;
  const url = spec.kind === 'url' ? spec.url : spec.id;
  const preset = PRESETS.find((p) => p.url === url);
  if (preset) return preset.label.split(' — ')[0];
  try {
    return decodeURIComponent(new URL(url).pathname.split('/').pop() || url);
  } catch {
    return url;
  }
}

function LoadingView({
  name,
  progress,
  onStop,
}: {
  name?: string;
  progress: LoadProgress;
  onStop: () => void;
}) {
  const p = progress;
  const downloading = p.phase === 'download' || p.phase === 'probe';
  const frac = p.totalBytes > 0 ? p.loadedBytes / p.totalBytes : undefined;
  const label =
    p.phase === 'waiting'
      ? 'Another tab is downloading this model: waiting for it to finish…'
      : p.phase === 'probe'
        ? 'Contacting the server…'
        : p.phase === 'download'
          ? `Downloading ${formatBytes(p.loadedBytes)} of ${formatBytes(p.totalBytes)}`
          : p.phase === 'verify'
            ? 'Verifying the download…'
            : `Loading weights onto the GPU (${p.phase})`;
  return (
    <div className="loading">
      <div className="row">
        {name && <strong className="loading-name">{name}</strong>}
        <span>{label}</span>
        {downloading && p.bytesPerSecond ? (
          <span className="hint">
            {formatBytes(p.bytesPerSecond)}/s · {formatDuration(p.etaSeconds)} left
          </span>
        ) : null}
        {p.resumedFrom ? <span className="hint">resumed at {formatBytes(p.resumedFrom)}</span> : null}
        <button type="button" className="small" onClick={onStop}>
          Cancel
        </button>
      </div>
      <progress aria-label={downloading ? 'Download progress' : 'Loading progress'} max={1} value={frac} />
    </div>
  );
}

const ERROR_TITLES: Partial<Record<EngineErrorCode, string>> = {
  'bad-gguf': 'Not a usable GGUF file',
  'unsupported-model': 'Unsupported model',
  'no-webgpu': 'WebGPU is not available',
  'gpu-limits': 'This GPU is too limited',
  'gpu-out-of-memory': 'Out of GPU memory',
  'device-lost': 'The GPU device was lost',
  network: 'Download failed',
  'storage-full': 'Not enough storage',
  storage: 'Cache problem',
  interrupted: 'Stopped',
  'context-overflow': 'Prompt too long',
  'bad-argument': 'Check the settings',
  'bad-tokenizer': 'Unusable tokenizer',
  'bad-template': "The model's chat template failed",
  'non-finite': 'The model produced invalid numbers',
  'kernel-rejected': 'A GPU kernel failed its check',
};

function ErrorView({ error, onReload }: { error: UiError; onReload?: () => void }) {
  return (
    <div
      className={`banner ${error.code === 'interrupted' ? 'info' : 'error'}`}
      role="alert"
      data-code={error.code}
    >
      <strong>{ERROR_TITLES[error.code] ?? 'Something went wrong'}.</strong> <span>{error.message}</span>
      {error.code === 'device-lost' && onReload && (
        <button type="button" className="small" onClick={onReload}>
          Reload the model
        </button>
      )}
    </div>
  );
}

function StatsView({ result, model }: { result: GenerateOutcome; model?: ModelInfo }) {
  const s = result.stats;
  return (
    <dl className="stats" aria-label="Stats">
      {model && (
        <>
          <dt>Load</dt>
          <dd>{formatMs(model.loadMs)}</dd>
        </>
      )}
      <dt>First token</dt>
      <dd>{formatMs(s.timeToFirstTokenMs)}</dd>
      <dt>Prefill</dt>
      <dd>
        {formatRate(s.prefillTokensPerSecond)} tok/s ({s.promptTokens} tokens)
      </dd>
      <dt>Decode</dt>
      <dd>
        {formatRate(s.decodeTokensPerSecond)} tok/s ({s.generatedTokens} tokens)
      </dd>
    </dl>
  );
}

function CacheView(props: {
  cached: CachedModelInfo[];
  storage?: StorageInfo;
  persisted?: boolean;
  busy: Busy;
  onLoad: (c: CachedModelInfo) => void;
  onDelete: (c: CachedModelInfo) => void;
}) {
  const { cached, storage } = props;
  return (
    <section className="card" aria-labelledby="cache-h">
      <h2 id="cache-h">Cached models</h2>
      {cached.length === 0 ? (
        <p className="hint">Nothing cached yet. Models loaded from a URL are kept here for offline use.</p>
      ) : (
        <ul className="cache-list">
          {cached.map((c) => (
            <li key={c.id}>
              <span className="name" title={c.url}>
                {c.name}
              </span>
              <span className="size">
                {c.complete
                  ? formatBytes(c.sizeBytes)
                  : `${formatBytes(c.storedBytes)} of ${formatBytes(c.sizeBytes)} (partial, resumes on load)`}
              </span>
              <button type="button" className="small" onClick={() => props.onLoad(c)}>
                {c.complete ? 'Load' : 'Resume'}
              </button>
              <button
                type="button"
                className="small danger"
                disabled={props.busy !== 'idle'}
                aria-label={`Delete ${c.name}`}
                onClick={() => props.onDelete(c)}
              >
                Delete
              </button>
            </li>
          ))}
        </ul>
      )}
      {storage && (
        <p className="hint storage-use">
          Models use {formatBytes(storage.modelBytes)}
          {storage.usage !== undefined && ` · this site uses ${formatBytes(storage.usage)}`}
          {!storage.persistentStore && ' · storage is unavailable here: models are kept in memory only'}
          {props.persisted ? ' · persistent' : ''}
        </p>
      )}
    </section>
  );
}
