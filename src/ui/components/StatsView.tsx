/** Timings and token counts of the last generation. */
import type { GenerationStats } from '../../engine/generation';
import type { ModelInfo } from '../../worker/api';
import { formatMs, formatRate } from '../format';

export function StatsView({
  stats: s,
  model,
  seed,
}: {
  stats: GenerationStats & { reusedTokens?: number };
  model?: ModelInfo;
  /** The sampler seed the generation used (shown so a run can be repeated with "Fixed seed"). */
  seed?: number;
}) {
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
