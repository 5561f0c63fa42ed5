/**
 * The model session's state as a reducer: the load sequence (probe → download → weights), its
 * progress, the loaded model, the error line, and a Generate that waits for a load.
 *
 * Every load gets a number (`seq`); a newer load stops the older one in the worker, so the older
 * one's progress, result or error arriving later is stale and the reducer drops it. A generation
 * records the load number it started under: if a load started meanwhile (it stopped the
 * generation), the generation's error is not shown and its end does not touch the busy state,
 * which the load owns from then on.
 *
 * The worker keeps the loaded model until a new one is ready, so the model stays through a load; a
 * load that fails or is stopped leaves it loaded, and the error line says which model is still in use.
 */
import type { EngineErrorCode, LoadProgress, ModelInfo, ModelSourceSpec, RemoteChange } from '../worker/api';

export type Busy = 'idle' | 'loading' | 'generating';

export interface UiError {
  code: EngineErrorCode;
  message: string;
}

export interface SessionState {
  busy: Busy;
  /** Number of the newest load (0: none yet). */
  loadSeq: number;
  /** The load number the running generation started under. */
  generationLoadSeq?: number;
  progress?: LoadProgress;
  /** What the newest load loads (kept after it ends, for "Reload the model"). */
  lastSource?: ModelSourceSpec;
  model?: ModelInfo;
  /** The file at the cached model's URL changed since it was cached (a HEAD after the load). */
  remoteChange?: RemoteChange;
  error?: UiError;
  /** The error is a failed or stopped load's: what it was loading, and the model still in use. */
  failedLoad?: { spec: ModelSourceSpec; stillUsing?: ModelInfo };
  /** Generate was pressed while the model loads: it starts when the load is done. */
  queued: boolean;
}

export const INITIAL_SESSION: SessionState = { busy: 'idle', loadSeq: 0, queued: false };

export type SessionAction =
  | { type: 'load-start'; seq: number; spec: ModelSourceSpec }
  | { type: 'load-progress'; seq: number; progress: LoadProgress }
  | { type: 'load-done'; seq: number; model: ModelInfo }
  | { type: 'load-failed'; seq: number; error: UiError }
  | { type: 'remote-change'; seq: number; change?: RemoteChange }
  | { type: 'queued'; queued: boolean }
  | { type: 'generate-start' }
  | { type: 'generate-end'; loadSeq: number; error?: UiError }
  | { type: 'error'; error?: UiError };

/** Actions that belong to one load: dropped once a newer load has started. */
const isStale = (state: SessionState, action: SessionAction) =>
  action.type !== 'load-start' && 'seq' in action && action.seq !== state.loadSeq;

export function sessionReducer(state: SessionState, action: SessionAction): SessionState {
  if (isStale(state, action)) return state;
  switch (action.type) {
    case 'load-start':
      if (action.seq <= state.loadSeq) return state; // an older load's start, replayed late
      return {
        ...state,
        busy: 'loading',
        loadSeq: action.seq,
        lastSource: action.spec,
        // The current model stays loaded (and in view) until the new one replaces it.
        remoteChange: undefined,
        error: undefined,
        failedLoad: undefined,
        progress: { phase: 'probe', loadedBytes: 0, totalBytes: 0 },
      };
    case 'load-progress':
      return state.busy === 'loading' ? { ...state, progress: action.progress } : state;
    case 'load-done':
      return { ...state, busy: 'idle', progress: undefined, model: action.model };
    case 'load-failed':
      return {
        ...state,
        busy: 'idle',
        progress: undefined,
        error: action.error,
        failedLoad: state.lastSource && { spec: state.lastSource, stillUsing: state.model },
      };
    case 'remote-change':
      return { ...state, remoteChange: action.change };
    case 'queued':
      return { ...state, queued: action.queued };
    case 'generate-start':
      if (state.busy !== 'idle' || !state.model) return state;
      return {
        ...state,
        busy: 'generating',
        error: undefined,
        failedLoad: undefined,
        generationLoadSeq: state.loadSeq,
      };
    case 'generate-end': {
      // A load started during the generation stopped it and owns the busy state and error line.
      if (action.loadSeq !== state.loadSeq) return state;
      return {
        ...state,
        busy: state.busy === 'generating' ? 'idle' : state.busy,
        generationLoadSeq: undefined,
        error: action.error ?? state.error,
        failedLoad: action.error ? undefined : state.failedLoad,
      };
    }
    case 'error':
      return { ...state, error: action.error, failedLoad: undefined };
  }
}
