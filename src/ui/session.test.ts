import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../worker/api';
import { INITIAL_SESSION, type SessionAction, type SessionState, sessionReducer } from './session';

const model = (name: string) => ({ name }) as ModelInfo;
const spec = (url: string) => ({ kind: 'url', url }) as const;
const run = (actions: SessionAction[], from: SessionState = INITIAL_SESSION) =>
  actions.reduce(sessionReducer, from);

describe('model session reducer', () => {
  it('runs a load: progress, then the model', () => {
    const s = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-progress', seq: 1, progress: { phase: 'download', loadedBytes: 5, totalBytes: 10 } },
    ]);
    expect(s.busy).toBe('loading');
    expect(s.progress?.loadedBytes).toBe(5);
    const done = sessionReducer(s, { type: 'load-done', seq: 1, model: model('a') });
    expect(done).toMatchObject({ busy: 'idle', progress: undefined, model: { name: 'a' } });
  });

  it("drops an older load's progress, result and error once a newer load started", () => {
    const s = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-start', seq: 2, spec: spec('b') },
      { type: 'load-progress', seq: 1, progress: { phase: 'download', loadedBytes: 9, totalBytes: 10 } },
      { type: 'load-failed', seq: 1, error: { code: 'interrupted', message: 'Loading stopped.' } },
      { type: 'load-done', seq: 1, model: model('a') },
      { type: 'remote-change', seq: 1, change: { reason: 'x', cachedSize: 1 } },
    ]);
    expect(s).toMatchObject({ busy: 'loading', loadSeq: 2, error: undefined });
    expect(s.model).toBeUndefined();
    expect(s.lastSource).toEqual(spec('b'));
    expect(s.progress?.loadedBytes).toBe(0);
    expect(s.remoteChange).toBeUndefined();
    // A late replay of the older start changes nothing either.
    expect(sessionReducer(s, { type: 'load-start', seq: 1, spec: spec('a') })).toBe(s);
  });

  it('a failed load shows its error and ends busy', () => {
    const s = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-failed', seq: 1, error: { code: 'network', message: 'offline' } },
    ]);
    expect(s).toMatchObject({ busy: 'idle', error: { code: 'network' } });
    expect(s.failedLoad).toEqual({ spec: spec('a'), stillUsing: undefined });
  });

  it('a load keeps the loaded model until it is done; when it fails, the model is still in use', () => {
    const loaded = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-done', seq: 1, model: model('a') },
    ]);
    const loading = sessionReducer(loaded, { type: 'load-start', seq: 2, spec: spec('b') });
    expect(loading).toMatchObject({ busy: 'loading', model: { name: 'a' } });
    const failed = sessionReducer(loading, {
      type: 'load-failed',
      seq: 2,
      error: { code: 'network', message: 'no file at this URL (404)' },
    });
    expect(failed).toMatchObject({ busy: 'idle', model: { name: 'a' }, error: { code: 'network' } });
    expect(failed.failedLoad).toEqual({ spec: spec('b'), stillUsing: model('a') });
    // The next generation (on model a) clears the note with the error.
    const gen = sessionReducer(failed, { type: 'generate-start' });
    expect(gen).toMatchObject({ busy: 'generating', error: undefined, failedLoad: undefined });
    const replaced = run(
      [
        { type: 'load-start', seq: 3, spec: spec('c') },
        { type: 'load-done', seq: 3, model: model('c') },
      ],
      failed,
    );
    expect(replaced).toMatchObject({ model: { name: 'c' }, error: undefined, failedLoad: undefined });
  });

  it('a generation needs an idle session with a model, and its end makes it idle again', () => {
    expect(sessionReducer(INITIAL_SESSION, { type: 'generate-start' }).busy).toBe('idle');
    const ready = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-done', seq: 1, model: model('a') },
      { type: 'error', error: { code: 'bad-argument', message: 'old' } },
    ]);
    const gen = sessionReducer(ready, { type: 'generate-start' });
    expect(gen).toMatchObject({ busy: 'generating', error: undefined });
    const failed = sessionReducer(gen, {
      type: 'generate-end',
      loadSeq: 1,
      error: { code: 'context-overflow', message: 'too long' },
    });
    expect(failed).toMatchObject({ busy: 'idle', error: { code: 'context-overflow' } });
  });

  it("a generation stopped by a newer load leaves the load's busy state and error line alone", () => {
    const s = run([
      { type: 'load-start', seq: 1, spec: spec('a') },
      { type: 'load-done', seq: 1, model: model('a') },
      { type: 'generate-start' },
      { type: 'load-start', seq: 2, spec: spec('b') },
      { type: 'generate-end', loadSeq: 1, error: { code: 'interrupted', message: 'stopped' } },
    ]);
    expect(s).toMatchObject({ busy: 'loading', loadSeq: 2, error: undefined });
  });
});
