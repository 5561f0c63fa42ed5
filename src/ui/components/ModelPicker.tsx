/**
 * Choosing a model: the presets, a URL, a local file (or a file dropped on the page), with the
 * load's progress and the loaded model's line under them.
 */
import type { ModelInfo, ModelInspection, ModelSourceSpec, RemoteChange } from '../../worker/api';
import { formatBytes, formatMs } from '../format';
import { InspectPanel } from '../InspectPanel';
import { DEMO_PRESET, PRESETS, presetFileLabel, presetOfUrl } from '../presets';
import type { SessionState } from '../session';
import { LoadingView } from './LoadingView';

/** What a load is loading, for people: the preset's label, the file name, or the URL's last part. */
export function sourceName(spec: ModelSourceSpec): string {
  if (spec.kind === 'file') return spec.file.name;
  const url = spec.kind === 'url' ? spec.url : spec.id;
  const preset = presetOfUrl(url);
  if (preset) return presetFileLabel(preset.preset, preset.file).split(' — ')[0];
  try {
    return decodeURIComponent(new URL(url).pathname.split('/').pop() || url);
  } catch {
    return url;
  }
}

/** One button per preset file: each preset's default file, then the alternatives (its Q4_K_M). */
const PRESET_CHOICES = [
  ...PRESETS.map((p) => ({ url: p.url, label: p.label, approxBytes: p.approxBytes })),
  ...PRESETS.flatMap((p) =>
    p.alternatives.map((a) => ({ url: a.url, label: presetFileLabel(p, a), approxBytes: a.approxBytes })),
  ),
];

/** The loaded model, for people: the name in its header, else its file name. */
export const modelName = (model: ModelInfo) => model.config.name || model.name;

export function ModelPicker(props: {
  session: SessionState;
  url: string;
  persisted?: boolean;
  anyCached: boolean;
  onPreset: (url: string) => void;
  /** The selected preset is not cached or loaded: its size, for one "Download" button. */
  pendingDownload?: { url: string; approxBytes: number };
  onUrlChange: (url: string) => void;
  onUrlFocus: () => void;
  onLoadUrl: (url: string, refresh?: boolean) => void;
  onFile: (file: File | undefined) => void;
  onStop: () => void;
  /** Reads a URL's GGUF header (EngineApi.inspect) for the "Inspect before downloading" panel. */
  inspect?: (url: string) => Promise<ModelInspection>;
}) {
  const { session, url } = props;
  return (
    <section className="card" aria-labelledby="model-h">
      <h2 id="model-h">Model</h2>
      <div className="presets">
        {PRESET_CHOICES.map((c) => (
          <button
            key={c.url}
            type="button"
            className={`preset${url === c.url ? ' selected' : ''}`}
            aria-pressed={url === c.url}
            onClick={() => props.onPreset(c.url)}
          >
            <span>{c.label}</span>
            <small>≈ {formatBytes(c.approxBytes)}</small>
          </button>
        ))}
      </div>
      {props.pendingDownload && session.busy !== 'loading' && (
        <div className="row">
          <button
            type="button"
            className="primary"
            onClick={() => props.onLoadUrl(props.pendingDownload!.url)}
          >
            Download ≈ {formatBytes(props.pendingDownload.approxBytes)}
          </button>
          <span className="hint">once; then it is cached on this device and works offline.</span>
        </div>
      )}
      <form
        className="row"
        onSubmit={(e) => {
          e.preventDefault();
          if (url.trim()) props.onLoadUrl(url.trim());
        }}
      >
        <label className="grow">
          <span className="label">Model URL</span>
          <input
            type="url"
            aria-label="Model URL"
            placeholder="https://huggingface.co/…/resolve/main/model.gguf"
            value={url}
            onFocus={props.onUrlFocus}
            onChange={(e) => props.onUrlChange(e.target.value)}
          />
        </label>
        <button type="submit" className="primary" disabled={!url.trim()}>
          Load model
        </button>
      </form>
      {props.inspect && <InspectPanel url={url} inspect={props.inspect} />}
      <div className="row file-row">
        <label className="file">
          <span>Open GGUF file</span>
          <input
            type="file"
            aria-label="Open GGUF file"
            accept=".gguf"
            onChange={(e) => {
              props.onFile(e.target.files?.[0]);
              e.target.value = '';
            }}
          />
        </label>
        <span className="hint">
          …or drop a .gguf file anywhere on the page. Local files are read in place, not cached.
        </span>
      </div>

      {session.busy === 'loading' && session.progress && (
        <LoadingView
          name={session.lastSource && sourceName(session.lastSource)}
          progress={session.progress}
          onStop={props.onStop}
        />
      )}

      {session.model && <ModelLine model={session.model} />}
      {session.model?.id && session.remoteChange && (
        <RemoteChangeNote
          change={session.remoteChange}
          onRefresh={() => session.model?.id && props.onLoadUrl(session.model.id, true)}
        />
      )}
      {props.persisted === false && props.anyCached && (
        <p className="hint">
          The browser has not granted persistent storage: it may evict cached models when disk space runs low.
        </p>
      )}
    </section>
  );
}

function ModelLine({ model }: { model: ModelInfo }) {
  return (
    <div className="model-status" role="status">
      <strong>{modelName(model)}</strong>
      <span>
        {formatBytes(model.sizeBytes)} · {model.config.nLayers} layers · dim {model.config.dim} · context{' '}
        {model.maxSeqLen}
      </span>
      <span className="tag">
        {model.fromCache
          ? 'Loaded from cache'
          : model.id === DEMO_PRESET.url
            ? 'Bundled demo, kept for offline use'
            : model.cached
              ? 'Downloaded and cached'
              : 'Local file'}
      </span>
      <span>loaded in {formatMs(model.loadMs)}</span>
    </div>
  );
}

function RemoteChangeNote({ change, onRefresh }: { change: RemoteChange; onRefresh: () => void }) {
  return (
    <p className="hint" role="note">
      The file at this model's address is not the one in the cache: {change.reason}.{' '}
      <button type="button" onClick={onRefresh}>
        Download again
      </button>
    </p>
  );
}
