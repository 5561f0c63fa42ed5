/**
 * The model session for the page: loads through the worker, with progress and errors in the
 * reducer of session.ts, and a `whenLoaded` that a Generate pressed during a load waits on.
 */
import { useCallback, useReducer, useRef, useState } from 'react';
import type { CachedModelInfo, LoadProgress, ModelInfo, ModelSourceSpec, StorageInfo } from '../worker/api';
import { asEngineError, Comlink, type RemoteEngine } from '../worker/client';
import { INITIAL_SESSION, sessionReducer, type UiError } from './session';

export function toUiError(e: unknown): UiError {
  const err = asEngineError(e);
  return { code: err.code, message: err.message };
}

export function useModelSession(engine: RemoteEngine, onLoadEnd?: () => void) {
  const [state, dispatch] = useReducer(sessionReducer, INITIAL_SESSION);
  const loadSeq = useRef(0);
  /** The newest load: a Generate pressed while it runs waits for it. */
  const pendingLoad = useRef<Promise<ModelInfo | undefined>>(undefined);
  const onLoadEndRef = useRef(onLoadEnd);
  onLoadEndRef.current = onLoadEnd;

  const load = useCallback(
    (spec: ModelSourceSpec): Promise<ModelInfo | undefined> => {
      const seq = ++loadSeq.current;
      dispatch({ type: 'load-start', seq, spec });
      const run = async () => {
        try {
          const model = await engine.load(
            spec,
            Comlink.proxy((progress: LoadProgress) => dispatch({ type: 'load-progress', seq, progress })),
          );
          dispatch({ type: 'load-done', seq, model });
          if (model.fromCache && model.id) {
            // Offline or slow, the check answers nothing: it never delays or fails the load.
            engine.checkForUpdate(model.id).then(
              (change) => dispatch({ type: 'remote-change', seq, change }),
              () => {},
            );
          }
          // A newer load replaced this one in the worker: its model is gone.
          return seq === loadSeq.current ? model : undefined;
        } catch (e) {
          dispatch({ type: 'load-failed', seq, error: toUiError(e) });
          return undefined;
        } finally {
          onLoadEndRef.current?.();
        }
      };
      const p = run();
      pendingLoad.current = p;
      return p;
    },
    [engine],
  );

  /** Resolves true once the newest load has a model; false when it fails or is stopped. */
  const whenLoaded = useCallback(async (): Promise<boolean> => {
    for (;;) {
      const p = pendingLoad.current;
      if (!p) return false;
      const info = await p;
      if (p !== pendingLoad.current) continue; // a newer load replaced it: wait for that one
      return info !== undefined;
    }
  }, []);

  /**
   * Runs one generation: busy while it runs, its error on the error line unless a load started
   * meanwhile (that load stopped it). Resolves undefined when it failed or could not start.
   */
  const runGeneration = useCallback(async <T>(task: () => Promise<T>): Promise<T | undefined> => {
    const atStart = loadSeq.current;
    dispatch({ type: 'generate-start' });
    try {
      const r = await task();
      dispatch({ type: 'generate-end', loadSeq: atStart });
      return r;
    } catch (e) {
      dispatch({ type: 'generate-end', loadSeq: atStart, error: toUiError(e) });
      return undefined;
    }
  }, []);

  return {
    state,
    dispatch,
    load,
    whenLoaded,
    runGeneration,
    /** Loads started so far (0: none; the page's first-visit choice yields to any). */
    loadCount: () => loadSeq.current,
  };
}

/** The cache list and storage use, refreshed after loads and deletes. */
export function useModelCache(engine: RemoteEngine) {
  const [cached, setCached] = useState<CachedModelInfo[]>([]);
  const [storage, setStorage] = useState<StorageInfo>();
  const refresh = useCallback(async () => {
    try {
      setCached(await engine.listCached());
      setStorage(await engine.storageUse());
    } catch {
      // the cache list is informative only
    }
  }, [engine]);
  return { cached, storage, refresh };
}
