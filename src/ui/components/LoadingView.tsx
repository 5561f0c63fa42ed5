/** A load in progress: what is loading, how far, how fast, and Cancel. */
import type { LoadProgress } from '../../worker/api';
import { formatBytes, formatDuration } from '../format';

export function LoadingView({
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
