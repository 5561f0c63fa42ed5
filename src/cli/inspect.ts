/**
 * `inspect --model-path FILE|URL`: what a GGUF file is and whether this version runs it, from the
 * header alone (docs/cli.md). The facts come from the engine's `inspectModel`, which the page's
 * panel uses too; this file only parses the flags and prints.
 */
import { EngineError } from '../engine/errors';
import { type ModelInspection, inspectModel } from '../engine/inspect';
import { safeText } from '../engine/safe-text';
import { formatBytes } from '../node/download';
import { int, parse, UsageError } from './args';
import { openModelSource } from './source';

export interface InspectCommand {
  command: 'inspect';
  modelPath: string;
  maxSeqLen?: number;
  batchSize?: number;
  json: boolean;
  verbose: boolean;
}

export function parseInspectCommand(rest: string[]): InspectCommand | { command: 'help' } {
  const { values: v } = parse(rest, {
    'model-path': { type: 'string' },
    'max-seq-len': { type: 'string' },
    'batch-size': { type: 'string' },
    json: { type: 'boolean' },
    verbose: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (v.help) return { command: 'help' };
  const modelPath = v['model-path'] as string | undefined;
  if (!modelPath) throw new UsageError('inspect needs --model-path FILE|URL');
  return {
    command: 'inspect',
    modelPath,
    maxSeqLen: int('max-seq-len', v['max-seq-len'] as string | undefined, 2),
    batchSize: int('batch-size', v['batch-size'] as string | undefined, 1, 64),
    json: Boolean(v.json),
    verbose: Boolean(v.verbose),
  };
}

export async function runInspect(
  cmd: InspectCommand,
  io: { stdout: { write(s: string): unknown } },
): Promise<number> {
  const opened = await openModelSource(cmd.modelPath);
  let info: ModelInspection;
  try {
    info = await inspectModel(opened.source, { maxSeqLen: cmd.maxSeqLen, maxBatch: cmd.batchSize });
  } finally {
    await opened.close();
  }
  if (cmd.maxSeqLen !== undefined && !info.gpu) {
    throw new EngineError(
      'unsupported-model',
      `--max-seq-len needs the model's hyper-parameters, and this file's are unusable: ${info.problems[0]}`,
    );
  }
  io.stdout.write(cmd.json ? `${JSON.stringify(info)}\n` : inspectionText(info));
  return 0;
}

const millions = (n: number) =>
  n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${n}`;

/** The human-readable report: one fact per line, names from the file escaped. */
export function inspectionText(i: ModelInspection): string {
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
  const w = Math.max(...lines.map(([k]) => k.length)) + 2;
  return lines.map(([k, v]) => `${k.padEnd(w)}${v}\n`).join('');
}
