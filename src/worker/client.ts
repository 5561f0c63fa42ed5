/**
 * The UI's handle on the engine: a comlink proxy of EngineApi running in engine-worker.ts.
 * Errors come back as EngineError (code + message) through `asEngineError`.
 */
import * as Comlink from 'comlink';
import { EngineError } from '../engine/errors';
import type { EngineApi } from './api';
import EngineWorker from './engine-worker.ts?worker';

export type RemoteEngine = Comlink.Remote<EngineApi>;

export function startEngineWorker(opts: { chunkSize?: number } = {}): {
  engine: RemoteEngine;
  worker: Worker;
} {
  // Settings travel in the worker's name (read back as `self.name`): they are needed before any call.
  const worker = new EngineWorker({ name: JSON.stringify({ chunkSize: opts.chunkSize }) });
  return { engine: Comlink.wrap<EngineApi>(worker), worker };
}

export function asEngineError(e: unknown): EngineError {
  return EngineError.fromSerialized(e);
}

export { Comlink };
