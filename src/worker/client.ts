/**
 * The UI's handle on the engine: a comlink proxy of EngineApi running in engine-worker.ts.
 * Errors come back as EngineError (code + message) through `asEngineError`.
 */
import * as Comlink from 'comlink';
import { EngineError } from '../engine/errors';
import type { EngineApi } from './api';
import EngineWorker from './engine-worker.ts?worker';
import { createOpenAiApi, type OpenAiApi, type OpenAiEngine } from './openai';

export type RemoteEngine = Comlink.Remote<EngineApi>;

export function startEngineWorker(opts: { chunkSize?: number } = {}): {
  engine: RemoteEngine;
  worker: Worker;
} {
  // Settings travel in the worker's name (read back as `self.name`): they are needed before any call.
  const worker = new EngineWorker({ name: JSON.stringify({ chunkSize: opts.chunkSize }) });
  return { engine: Comlink.wrap<EngineApi>(worker), worker };
}

/**
 * The OpenAI-style API (`chat.completions.create`, `completions.create`) on the worker's engine;
 * token callbacks cross the worker boundary as Comlink proxies. `model` names responses' `model`.
 */
export function openAiClient(engine: RemoteEngine, model?: string | (() => string)): OpenAiApi {
  // Comlink's Remote<EngineApi> has the same methods once callbacks are proxied (done here).
  return createOpenAiApi(engine as unknown as OpenAiEngine, { proxy: (fn) => Comlink.proxy(fn), model });
}

export function asEngineError(e: unknown): EngineError {
  return EngineError.fromSerialized(e);
}

export { Comlink };
