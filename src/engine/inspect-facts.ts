/**
 * The inspection (inspect.ts) as labelled lines of text. Its own small module so the page can show
 * them without pulling the GGUF reader and the tokenizer into its bundle; the CLI uses it too.
 */
import type { ModelInspection } from './inspect';
import { safeText } from './safe-text';

const millions = (n: number) =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${n}`;

/**
 * The inspection as labelled lines of text, in the order people read them: the CLI prints them in
 * two columns, the page's panel as a list. A label is '' where a line continues the one above (the
 * tensor types, the reasons it does not run). Text from the file is escaped and cut (safeText).
 */
export function inspectionFacts(i: ModelInspection, formatBytes: (n: number) => string): [string, string][] {
  const lines: [string, string][] = [];
  const s = i.shapes;
  lines.push(['model', safeText(i.name || '(no general.name)', 200)]);
  lines.push([
    'file',
    `${safeText(i.source, 500)}: ${formatBytes(i.fileBytes)}, GGUF v${i.ggufVersion}, header ${formatBytes(i.headerBytes)}` +
      (i.fileType ? `, file type ${i.fileType}` : ''),
  ]);
  lines.push([
    'architecture',
    (safeText(i.architecture, 60) || '(none)') +
      (s
        ? `: ${s.nLayers} layers, dim ${s.dim}, ${s.nHeads} query / ${s.nKvHeads} KV heads of ${s.headDim}, ` +
          `FFN ${s.ffnDim}, vocabulary ${s.vocabSize}${s.tiedEmbeddings ? ', head tied to the embedding' : ''}`
        : ''),
  ]);
  lines.push(['parameters', `${millions(i.parameters)} in ${i.tensorCount} tensors`]);
  lines.push([
    'context',
    (i.contextLength !== undefined ? `${i.contextLength} positions` : 'unknown') +
      (s ? ` (RoPE θ ${s.ropeTheta}${s.ropeFreqs ? ', rope_freqs scaling' : ''})` : ''),
  ]);
  lines.push(['chat template', i.chatTemplate ? 'yes' : 'no']);
  const total = i.tensorTypes.reduce((a, t) => a + t.bytes, 0) || 1;
  for (const [k, t] of i.tensorTypes.entries()) {
    const share = `${((100 * t.bytes) / total).toFixed(1).padStart(5)}%`;
    lines.push([
      k === 0 ? 'tensor types' : '',
      `${t.type.padEnd(7)} ${formatBytes(t.bytes).padStart(9)} ${share}  ` +
        `${t.tensors} tensor${t.tensors === 1 ? '' : 's'}${t.supported ? '' : ' (not supported)'}`,
    ]);
  }
  if (i.gpu) {
    lines.push([
      'GPU memory',
      `${formatBytes(i.gpu.bytes)} at ${i.gpu.maxSeqLen} positions × ${i.gpu.maxBatch} sequence(s) ` +
        `(weights ${formatBytes(i.gpu.weightBytes)}, f16 KV cache, activations)`,
    ]);
  }
  lines.push(['runs here', i.runnable ? 'yes' : 'no']);
  for (const p of i.problems) lines.push(['', `- ${safeText(p, 1000)}`]);
  return lines;
}
