/**
 * "Download this model?" before a large download: the file size, the GPU memory it needs (from its
 * header, read by Range requests: nothing is downloaded yet) against what the adapter tells, and a
 * warning when it will likely not fit. A modal <dialog>: the page behind is inert, focus starts on
 * "Download" and Tab stays inside, Escape cancels, and focus returns where it was.
 */
import { type KeyboardEvent, useEffect, useRef, useState } from 'react';
import type { BufferLimits, ModelInspection } from '../../worker/api';
import { asEngineError } from '../../worker/client';
import { gpuFit, limitsInWords } from '../download-check';
import { formatBytes } from '../format';

export function DownloadDialog(props: {
  name: string;
  url: string;
  /** Bytes still to download. */
  bytes: number;
  limits?: BufferLimits;
  inspect: (url: string) => Promise<ModelInspection>;
  onDownload: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [inspection, setInspection] = useState<ModelInspection>();
  const [inspectError, setInspectError] = useState<string>();
  const { url, inspect, onCancel } = props;

  useEffect(() => {
    const dialog = ref.current;
    const before = document.activeElement as HTMLElement | null;
    dialog?.showModal();
    return () => {
      dialog?.close();
      before?.focus?.();
    };
  }, []);

  useEffect(() => {
    let live = true;
    inspect(url).then(
      (i) => live && setInspection(i),
      (e) => live && setInspectError(asEngineError(e).message),
    );
    return () => {
      live = false;
    };
  }, [url, inspect]);

  // Tab and Shift+Tab cycle through the dialog's own controls.
  const trapTab = (e: KeyboardEvent) => {
    if (e.key !== 'Tab' || !ref.current) return;
    const items = [
      ...ref.current.querySelectorAll<HTMLElement>('button:not([disabled]), [href], [tabindex="0"]'),
    ];
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  };

  const deviceMemory = (navigator as Navigator & { deviceMemory?: number }).deviceMemory;
  const fit = inspection && gpuFit(inspection, deviceMemory);
  return (
    <dialog
      ref={ref}
      className="download-dialog"
      aria-labelledby="download-h"
      aria-describedby="download-size"
      onKeyDown={trapTab}
      onCancel={(e) => {
        // Escape: close through React state, not the browser's own close.
        e.preventDefault();
        onCancel();
      }}
    >
      <h2 id="download-h">Download {props.name}?</h2>
      <p id="download-size">
        <strong>{formatBytes(props.bytes)}</strong> to download. The file is kept on this device and works
        offline afterwards.
      </p>
      <dl className="download-facts">
        <dt>GPU memory</dt>
        <dd>
          {fit?.estimate ??
            (inspectError
              ? `unknown (${inspectError})`
              : inspection
                ? 'unknown (the header has no usable shapes)'
                : 'estimating from the file header…')}
        </dd>
        {props.limits && (
          <>
            <dt>This GPU allows</dt>
            <dd>{limitsInWords(props.limits)}</dd>
          </>
        )}
      </dl>
      {fit?.warning && (
        <p className="banner error" role="alert">
          {fit.warning}
        </p>
      )}
      <div className="row">
        {/* biome-ignore lint/a11y/noAutofocus: a modal dialog puts focus on its main action */}
        <button type="button" className="primary" autoFocus onClick={props.onDownload}>
          Download {formatBytes(props.bytes)}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </dialog>
  );
}
