/**
 * Command-line parsing for the CLI: flags → a checked command object. Anything wrong with the
 * flags or their values is a UsageError (main prints the usage text and exits 2).
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { META_DEFAULTS } from '../engine/generation';
import { quoteText } from '../engine/safe-text';

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export interface GenerateCommand {
  command: 'generate';
  modelPath?: string;
  /** Empty (and no promptIds) = Meta's four example prompts. */
  prompts: string[];
  /** --prompt-ids: token ids fed exactly as given (no BOS added). */
  promptIds: number[][];
  /** --messages: a JSON file with a conversation; the reply to it is generated. */
  messagesPath?: string;
  batchSize: number;
  maxTokens: number;
  temperature: number;
  topP: number;
  topK: number;
  seed: number;
  /** Undefined = the default (gpu when the GPU backend is built, else cpu). */
  device?: 'cpu' | 'gpu';
  /** Undefined = the backend's default. */
  quantizationEncoding?: 'q4_0' | 'float32';
  maxSeqLen?: number;
  tokenizerPath?: string;
  customOpsPath?: string;
  /** --f16: prefill attention in packed f16 (GPU with shader-f16). */
  f16: boolean;
  chat: boolean;
  json: boolean;
  verbose: boolean;
}

export interface TokenizeCommand {
  command: 'tokenize';
  modelPath?: string;
  tokenizerPath?: string;
  text: string;
  json: boolean;
  verbose: boolean;
}

export type Command = GenerateCommand | TokenizeCommand | { command: 'help' };

export const USAGE = `Usage: llama3-webgpu <command> [flags]

Commands:
  generate    complete prompts with a Llama 3 GGUF model (text streams to stdout)
  tokenize    print the token ids of a text (no BOS)
  inspect     describe a GGUF file from its header: shapes, tensor types, memory, whether it runs

generate flags:
  --model-path FILE|URL        GGUF file or http(s) URL (default: download Meta-Llama-3-8B
                               q4_0 into ~/.cache/llama3-webgpu/ on first use)
  --prompt TEXT                a prompt; repeat for several (default: Meta's 4 examples)
  --prompt-ids ID,ID,...       a prompt as token ids, fed exactly (no BOS added); repeatable
  --messages FILE              a conversation as JSON, [{"role": "system"|"user"|"assistant",
                               "content": "..."}, ...]: renders it with the model's chat
                               template and writes the assistant's reply
  --batch-size N               prompts per batch (default ${META_DEFAULTS.maxBatchSize}); more prompts run in
                               successive batches
  --max-tokens N               new tokens per prompt (default ${META_DEFAULTS.maxTokens})
  --temperature T              0 = greedy (default ${META_DEFAULTS.temperature})
  --top-p P                    nucleus mass in (0, 1] (default ${META_DEFAULTS.topP})
  --top-k K                    keep the K most likely tokens, 0 = off (default ${META_DEFAULTS.topK})
  --seed S                     sampler seed (default ${META_DEFAULTS.seed})
  --device cpu|gpu             gpu = WebGPU through Dawn; cpu = the f32 reference (default gpu)
  --quantization-encoding q4_0|float32
                               q4_0: matrices as q4_0 blocks (f16/f32 ones are quantized
                               at load); float32: the file's values in f32 (default: cpu
                               keeps the file's values, gpu its own choice)
  --max-seq-len N              positions per sequence (default min(context, 2048))
  --tokenizer-path FILE        a Hugging Face tokenizer.json instead of the GGUF's tokenizer
                               (tokenizer_config.json beside it supplies the chat template)
  --custom-ops-path DIR        replace built-in GPU kernels with DIR/<kernel>.wgsl
  --f16                        prefill attention in packed f16 (needs a GPU with shader-f16;
                               default off: f32)
  --chat                       wrap each prompt in the chat template as a user message
  --json                       print one JSON object (tokens, text, stats) as the last line
  --verbose                    more detail on stderr; stack traces on errors

tokenize flags:
  --model-path FILE|URL | --tokenizer-path FILE   where the vocabulary comes from
  --text TEXT                  the text to tokenize (special-token text stays ordinary text)
  --json                       print {"tokens": [...]}
  --verbose

inspect flags:
  --model-path FILE|URL        GGUF file or http(s) URL (only the header is read: Range requests)
  --max-seq-len N              positions for the GPU memory estimate (default: the model's context)
  --batch-size N               sequences for the GPU memory estimate (default 1)
  --json                       print one JSON object instead of text
  --verbose

Exit codes: 0 success, 1 runtime error, 2 bad flags or values, 130 interrupted.
`;

/** An integer written plainly in decimal: no sign but '-', no spaces, no hex, exponent or '_'. */
const DECIMAL_INTEGER = /^-?\d+$/;
/** A number written plainly in decimal: '0.6', '.5', '1.', '-2'; no hex, exponent, spaces, 'Infinity'. */
const DECIMAL_NUMBER = /^-?(\d+\.?\d*|\.\d+)$/;

/** A flag's value for a message: the user's own text, but it may be long or carry escapes. */
const shown = (v: string) => quoteText(v, 40);

export function int(
  flag: string,
  v: string | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (v === undefined) return undefined;
  const n = DECIMAL_INTEGER.test(v) ? Number(v) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new UsageError(`--${flag} must be a decimal integer from ${min} to ${max}, got ${shown(v)}`);
  }
  return n;
}

function num(
  flag: string,
  v: string | undefined,
  ok: (n: number) => boolean,
  range: string,
): number | undefined {
  if (v === undefined) return undefined;
  // Number() also takes '0x10', ' 1', '' (as 0), '1e3' and 'Infinity': only plain decimals count.
  const n = DECIMAL_NUMBER.test(v) ? Number(v) : Number.NaN;
  if (!Number.isFinite(n) || !ok(n)) {
    throw new UsageError(`--${flag} must be a decimal number ${range}, got ${shown(v)}`);
  }
  return n;
}

function oneOf<T extends string>(flag: string, v: string | undefined, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (!allowed.includes(v as T))
    throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got ${shown(v)}`);
  return v as T;
}

type Values = Record<string, string | boolean | string[] | undefined>;

export function parse(args: string[], options: ParseArgsConfig['options']): { values: Values } {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }) as { values: Values };
  } catch (e) {
    // node:util's messages name the flag ("Unknown option '--x'"); keep them, drop the error code.
    throw new UsageError((e as Error).message);
  }
}

export function parseCommand(argv: string[]): Command {
  const [command, ...rest] = argv;
  if (command === undefined) throw new UsageError('no command given');
  if (command === '--help' || command === '-h' || command === 'help') return { command: 'help' };
  const common = {
    'model-path': { type: 'string' },
    'tokenizer-path': { type: 'string' },
    json: { type: 'boolean' },
    verbose: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  } as const;

  if (command === 'generate') {
    const { values: v } = parse(rest, {
      ...common,
      prompt: { type: 'string', multiple: true },
      'prompt-ids': { type: 'string', multiple: true },
      messages: { type: 'string' },
      'batch-size': { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      seed: { type: 'string' },
      device: { type: 'string' },
      'quantization-encoding': { type: 'string' },
      'max-seq-len': { type: 'string' },
      'custom-ops-path': { type: 'string' },
      f16: { type: 'boolean' },
      chat: { type: 'boolean' },
    });
    if (v.help) return { command: 'help' };
    const s = (k: string) => v[k] as string | undefined;
    for (const k of ['model-path', 'tokenizer-path', 'custom-ops-path', 'messages']) {
      if (s(k) === '') throw new UsageError(`--${k} needs a value`);
    }
    const prompts = (v.prompt as string[] | undefined) ?? [];
    const promptIds = ((v['prompt-ids'] as string[] | undefined) ?? []).map((list) => {
      const ids = /^\s*\d+(\s*,\s*\d+)*\s*$/.test(list) ? list.split(',').map((x) => Number(x.trim())) : [];
      if (ids.length === 0 || !ids.every(Number.isSafeInteger)) {
        throw new UsageError(
          `--prompt-ids must be comma-separated token ids like 128000,9906; got ${shown(list)}`,
        );
      }
      return ids;
    });
    const given = [
      prompts.length > 0 && '--prompt',
      promptIds.length > 0 && '--prompt-ids',
      s('messages') !== undefined && '--messages',
    ].filter(Boolean);
    if (given.length > 1) throw new UsageError(`give one of ${given.join(', ')}, not several`);
    if (v.chat && s('messages') !== undefined) {
      throw new UsageError('--messages is a chat already (rendered with the chat template); drop --chat');
    }
    return {
      command: 'generate',
      modelPath: s('model-path'),
      prompts,
      promptIds,
      messagesPath: s('messages'),
      batchSize: int('batch-size', s('batch-size'), 1, 64) ?? META_DEFAULTS.maxBatchSize,
      maxTokens: int('max-tokens', s('max-tokens'), 1) ?? META_DEFAULTS.maxTokens,
      temperature:
        num('temperature', s('temperature'), (n) => n >= 0, '≥ 0 (0 = greedy)') ?? META_DEFAULTS.temperature,
      topP: num('top-p', s('top-p'), (n) => n > 0 && n <= 1, 'in (0, 1]') ?? META_DEFAULTS.topP,
      topK: int('top-k', s('top-k'), 0) ?? META_DEFAULTS.topK,
      seed: int('seed', s('seed'), Number.MIN_SAFE_INTEGER) ?? META_DEFAULTS.seed,
      device: oneOf('device', s('device'), ['cpu', 'gpu'] as const),
      quantizationEncoding: oneOf('quantization-encoding', s('quantization-encoding'), [
        'q4_0',
        'float32',
      ] as const),
      maxSeqLen: int('max-seq-len', s('max-seq-len'), 2),
      tokenizerPath: s('tokenizer-path'),
      customOpsPath: s('custom-ops-path'),
      f16: Boolean(v.f16),
      chat: Boolean(v.chat),
      json: Boolean(v.json),
      verbose: Boolean(v.verbose),
    };
  }

  if (command === 'tokenize') {
    const { values: v } = parse(rest, { ...common, text: { type: 'string' } });
    if (v.help) return { command: 'help' };
    const modelPath = v['model-path'] as string | undefined;
    const tokenizerPath = v['tokenizer-path'] as string | undefined;
    if (!modelPath && !tokenizerPath) throw new UsageError('tokenize needs --model-path or --tokenizer-path');
    if (modelPath && tokenizerPath) throw new UsageError('give --model-path or --tokenizer-path, not both');
    if (v.text === undefined) throw new UsageError('tokenize needs --text');
    return {
      command: 'tokenize',
      modelPath,
      tokenizerPath,
      text: v.text as string,
      json: Boolean(v.json),
      verbose: Boolean(v.verbose),
    };
  }
  throw new UsageError(`unknown command ${shown(command)}`);
}
