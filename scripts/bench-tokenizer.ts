/**
 * Tokenizer speed: load time, encode MB/s (cold = fresh piece cache, warm = repeated), decode MB/s.
 * Run: npm run bench:tokenizer [-- <text file> ...]
 * Default text: the TinyStories excerpt the tokenizer tests use (0.23 MB, shipped in
 * src/engine/tokenizer/testdata/), plus the parity-test corpus (mixed scripts, emoji, code,
 * 500-letter words: few cache hits). Pass bigger text files for steadier numbers.
 */
import { readFileSync } from 'node:fs';
import { buildCorpus } from '../src/engine/tokenizer/corpus.testutil';
import { Llama3Tokenizer } from '../src/engine/tokenizer/index';
import { llama3TokenizerJsonPath, llama3VocabKvs } from './fixtures/llama3-vocab';
import { TINYSTORIES_EXCERPT } from '../src/node/paths';

const files = process.argv.slice(2);
if (files.length === 0) files.push(TINYSTORIES_EXCERPT);

/** Runs f; returns its result, wall seconds and CPU seconds of this process (user + system). On a
 * shared machine the CPU time is the fairer number: wall time also counts waiting for a core. */
function time<T>(f: () => T): [T, number, number] {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const r = f();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return [r, wall, (c.user + c.system) / 1e6];
}

const rate = (mb: number, wall: number, cpu: number) =>
  `${(mb / wall).toFixed(1)} MB/s (${(mb / cpu).toFixed(1)} per CPU-s)`;

const jsonText = readFileSync(llama3TokenizerJsonPath(), 'utf8');
const [, hfLoad, hfLoadCpu] = time(() => Llama3Tokenizer.fromHfJson(jsonText));
const kvs = new Map(llama3VocabKvs().map((kv) => [kv.key, kv.value]));
const [, ggufLoad, ggufLoadCpu] = time(() => Llama3Tokenizer.fromGguf(kvs));
const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
console.log(
  `load: fromHfJson ${ms(hfLoad)} (CPU ${ms(hfLoadCpu)}, incl. JSON.parse), ` +
    `fromGguf ${ms(ggufLoad)} (CPU ${ms(ggufLoadCpu)})`,
);

const inputs = files.map((f) => ({ name: f.split('/').pop(), text: readFileSync(f, 'utf8') }));
inputs.push({ name: 'mixed corpus', text: buildCorpus([], 3000, 5).join('\n') });

for (const { name, text } of inputs) {
  const mb = Buffer.byteLength(text) / 1e6;
  // Cold: a new tokenizer, so every distinct piece goes through BPE once.
  const cold = Llama3Tokenizer.fromGguf(kvs);
  const [ids, coldS, coldCpu] = time(() => cold.encode(text));
  let warm: [number, number] = [Infinity, Infinity];
  for (let i = 0; i < 3; i++) {
    const [, w, c] = time(() => cold.encode(text));
    if (w < warm[0]) warm = [w, c];
  }
  const [decoded, decS, decCpu] = time(() => cold.decode(ids));
  if (decoded !== text) throw new Error(`round trip failed on ${name}`);
  const [, streamS] = time(() => {
    const d = cold.streamDecoder();
    let n = 0;
    for (const id of ids) n += d.push(id).length;
    return n + d.flush().length;
  });
  console.log(
    `${name}: ${mb.toFixed(2)} MB, ${ids.length} tokens (${(Buffer.byteLength(text) / ids.length).toFixed(2)} bytes/token)\n` +
      `  encode cold ${rate(mb, coldS, coldCpu)}, warm ${rate(mb, ...warm)}\n` +
      `  decode ${rate(mb, decS, decCpu)}; stream decode ${(ids.length / streamS / 1e6).toFixed(2)} M tokens/s`,
  );
}
