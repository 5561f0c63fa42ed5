/**
 * Test helper: a runner whose user presses Stop while the first step's first chunk runs. Both
 * runners start a step's first chunk inside the `step` call (the GPU submits it, the CPU reference
 * computes it before its first yield), so aborting right after the call returns is "Stop pressed
 * during chunk 1", deterministically: the step must end at the first chunk boundary.
 */
import type { ModelRunner } from '../generation';

export function stopDuringFirstChunk(runner: ModelRunner, stop: AbortController): ModelRunner {
  let steps = 0;
  return {
    config: runner.config,
    maxBatch: runner.maxBatch,
    maxSeqLen: runner.maxSeqLen,
    reset: (batch, sampling, first, keep) => runner.reset(batch, sampling, first, keep),
    step: (tokens, signal) => {
      const pending = runner.step(tokens, signal);
      if (steps++ === 0) stop.abort();
      return pending;
    },
    positions: (s) => runner.positions(s),
    dispose: () => {},
  };
}
