/**
 * `node --import tsx scripts/bench/memory-table.ts`: docs/bench.md's GPU memory table, from the
 * headers of the real Llama 3 8B and 3.2 3B/1B shapes (q4_0 body, q6_K head or tied embedding, as
 * the q4_0 files are) through memory.ts's estimate: what the WebGPU backend allocates, by part, at
 * a few contexts and at the default it picks (no adapter limits given: the budget heuristic alone).
 * The last column is issue 9's memory goal: everything but the KV cache ≤ 1.05 × the file's tensor bytes.
 * The estimate equals the buffers a load creates (src/engine/gpu/cost.test.ts checks it part by
 * part); `npm run bench` prints both for a real load.
 */
import { estimateGpuMemory } from '../../src/engine/memory';
import { presetHeader } from './random-model';

const GB = 1e9;
const f = (n: number) => (n / GB).toFixed(2);
const shapes: [string, string, number][] = [
  ['8B', '8b', 8192],
  ['3B (3.2)', '3b', 131072],
  ['1B (3.2)', '1b', 131072],
];
console.log(
  '| shape (own context) | batch | context | weights | KV cache (f16) | activations | scratch | total GB | (total − KV) ÷ file tensor bytes |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const [label, name, ctx] of shapes) {
  const { file, config } = presetHeader(name, { contextLength: ctx });
  const fileBytes = file.tensors.reduce((a, t) => a + t.byteLength, 0);
  for (const maxBatch of [1, 4]) {
    const contexts: (number | undefined)[] = [4096, undefined];
    if (ctx > 8192) contexts.splice(1, 0, 8192);
    for (const maxSeqLen of contexts) {
      const e = estimateGpuMemory(file, config, { maxBatch, maxSeqLen });
      const c = maxSeqLen === undefined ? `**${e.maxSeqLen}** (default)` : `${e.maxSeqLen}`;
      console.log(
        `| ${label} (${ctx}) | ${maxBatch} | ${c} | ${f(e.weights)} | ${f(e.kvCache)} | ${f(e.activations)} | ${f(e.scratch)} | **${f(e.total)}** | ${((e.total - e.kvCache) / fileBytes).toFixed(3)} |`,
      );
    }
  }
}
