/**
 * `node --import tsx scripts/bench/stop-latency.ts [--prompt N] [--stop-after-ms M]`: how long Stop
 * takes to act during a long prefill on the CPU reference (`--device cpu`), on the demo model. A
 * timer aborts `generate` M ms (default 200) after it starts on an N-token prompt (default 450);
 * prints when the timer actually fired (a prefill that never yields delays it to its end) and how
 * long `generate` took to return after it (docs/bench.md, "Prefill chunks").
 */
import { generate } from '../../src/engine/generation';
import { llamaConfigFromGguf } from '../../src/engine/gguf/config';
import { readGguf } from '../../src/engine/gguf/reader';
import { ReferenceModel } from '../../src/engine/reference/model';
import { NodeFileSource } from '../../src/node/file-source';
import { DEMO_MODEL_PATH } from '../../src/node/paths';

async function main() {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const promptLength = arg('--prompt', 450);
  const stopAfterMs = arg('--stop-after-ms', 200);
  const source = await NodeFileSource.open(DEMO_MODEL_PATH);
  const file = await readGguf(source);
  const config = llamaConfigFromGguf(file);
  const model = await ReferenceModel.load(source, file, config, { maxBatch: 1, maxSeqLen: promptLength + 8 });
  const prompt = Array.from({ length: promptLength }, (_, i) => 1000 + ((i * 7919) % 5000));
  const stop = new AbortController();
  const t0 = performance.now();
  let firedAt = 0;
  setTimeout(() => {
    firedAt = performance.now();
    stop.abort();
  }, stopAfterMs);
  const r = await generate(model, {
    prompts: [prompt],
    maxTokens: 4,
    sampling: { temperature: 0, topP: 1, topK: 0, seed: 1 },
    stopTokens: new Set(),
    signal: stop.signal,
  });
  const end = performance.now();
  console.log(
    JSON.stringify({
      promptTokens: promptLength,
      prefillChunk: model.prefillChunk,
      stopPressedAtMs: stopAfterMs,
      timerFiredAtMs: Math.round(firedAt - t0),
      returnedAfterStopMs: Math.round(end - firedAt),
      positionsWritten: model.positions(0),
      finishReason: r.finishReasons[0],
    }),
  );
  await source.close?.();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
