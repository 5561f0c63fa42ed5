/** Timings and token counts of the last generation. */
import type { ModelInfo } from '../../worker/api';
import type { RunStats } from '../chat-client';
import { formatMs, formatRate } from '../format';

export function StatsView({ stats: s, model }: { stats: RunStats; model?: ModelInfo }) {
  // The sampler seed is shown so that a run can be repeated with "Fixed seed".
  const seed = s.seed;
  const reused = s.reusedTokens;
  return (
    <dl className="stats" aria-label="Stats">
      {model && (
        <>
          <dt>Load</dt>
          <dd>{formatMs(model.loadMs)}</dd>
        </>
      )}
      <dt>First token</dt>
      <dd>{formatMs(s.timeToFirstTokenMs)}</dd>
      <dt>Prefill</dt>
      <dd>
        {formatRate(s.prefillTokensPerSecond)} tok/s ({s.promptTokens} tokens
        {reused !== undefined && `, ${reused} reused`})
      </dd>
      <dt>Decode</dt>
      <dd>
        {formatRate(s.decodeTokensPerSecond)} tok/s ({s.generatedTokens} tokens)
      </dd>
      {seed !== undefined && (
        <>
          <dt>Seed</dt>
          <dd>{seed}</dd>
        </>
      )}
    </dl>
  );
}
