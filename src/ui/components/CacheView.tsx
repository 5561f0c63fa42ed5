/** The cached models: load, resume or delete each; how much storage they use. */
import type { CachedModelInfo, StorageInfo } from '../../worker/api';
import { formatBytes } from '../format';
import type { Busy } from '../session';

export function CacheView(props: {
  cached: CachedModelInfo[];
  storage?: StorageInfo;
  persisted?: boolean;
  busy: Busy;
  /** Id of the model loaded now (marked in the list). */
  loadedId?: string;
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
            <li key={c.id} aria-current={c.id === props.loadedId ? 'true' : undefined}>
              <span className="name" title={c.url}>
                {c.name}
                {c.id === props.loadedId && <span className="tag">loaded</span>}
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
                onClick={() => {
                  // Deleting a big model is a big re-download: ask first.
                  if (
                    c.sizeBytes < 100e6 ||
                    confirm(`Delete ${c.name} (${formatBytes(c.sizeBytes)}) from this device?`)
                  )
                    props.onDelete(c);
                }}
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
