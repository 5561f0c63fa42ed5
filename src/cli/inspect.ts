/**
 * `inspect --model-path FILE|URL`: what a GGUF file is and whether this version runs it, from the
 * header alone (docs/cli.md). The facts come from the engine's `inspectModel`, which the page's
 * panel uses too; this file only parses the flags and prints.
 */
import { EngineError } from '../engine/errors';
import { inspectModel, type ModelInspection } from '../engine/inspect';
import { inspectionFacts } from '../engine/inspect-facts';
import { formatBytes } from '../engine/format-bytes';
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

/** The human-readable report: the engine's facts, one per line, labels padded to a column. */
export function inspectionText(i: ModelInspection): string {
  const lines = inspectionFacts(i, formatBytes);
  const w = Math.max(...lines.map(([k]) => k.length)) + 2;
  return lines.map(([k, v]) => `${k.padEnd(w)}${v}\n`).join('');
}
