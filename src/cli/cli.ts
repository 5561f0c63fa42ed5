/**
 * The Node command-line tool (`runCli`; src/cli/main.ts is the process entry): docs/cli.md.
 * It drives the same engine as the browser worker: LoadedModel over a file or URL source, on the
 * WebGPU backend through Dawn or on the CPU reference. Text goes to stdout as it is produced;
 * everything else (progress, info, errors) goes to stderr.
 */
import { readFile } from 'node:fs/promises';
import { type ChatMessage, parseChatMessages } from '../engine/chat';
import { EngineError } from '../engine/errors';
import { LoadedModel, type LoadProgress, type TokenEvent } from '../engine/engine';
import { readGguf } from '../engine/gguf';
import { escapeControls, safeText } from '../engine/safe-text';
import { Llama3Tokenizer } from '../engine/tokenizer';
import { readCustomOps } from '../node/custom-ops';
import { fileSelfCheckStore, selfCheckFile } from '../node/self-check-store';
import { formatBytes } from '../engine/format-bytes';
import { type DownloadProgress, ensureDefaultModel, formatDuration } from '../node/download';
import { nodeGpu } from '../node/gpu';
import { loadTokenizerFile } from '../node/tokenizer-file';
import { type GenerateCommand, parseCommand, type TokenizeCommand, USAGE, UsageError } from './args';
import { parseInspectCommand, runInspect } from './inspect';
import { openModelSource } from './source';

/** Meta's example_text_completion.py prompts (llama3 commit 14aab04), exactly. */
export const META_EXAMPLE_PROMPTS: readonly string[] = [
  'I believe the meaning of life is',
  'Simply put, the theory of relativity states that ',
  'A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ',
  'Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => menthe poivrée\n        plush girafe => girafe peluche\n        cheese =>',
];

export interface CliIo {
  stdout: { write(s: string): unknown };
  stderr: { write(s: string): unknown; isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** A status line: rewritten in place on a terminal, printed at most every few seconds otherwise. */
function statusLine(io: CliIo) {
  let last = 0;
  let shown = false;
  return {
    update(text: string, force = false) {
      const t = performance.now();
      if (io.stderr.isTTY) {
        if (!force && t - last < 100) return;
        io.stderr.write(`\r\x1b[2K${text}`);
        shown = true;
      } else if (force || t - last > 5000) {
        io.stderr.write(`${text}\n`);
      }
      last = t;
    },
    done() {
      if (shown) io.stderr.write('\n');
      shown = false;
    },
  };
}

function pct(a: number, b: number): string {
  return b > 0 ? `${Math.floor((100 * a) / b)}%` : '?';
}

/** Longest error message printed; longer ones (a dependency quoting a whole file) are cut. */
const MAX_ERROR_CHARS = 4000;

/**
 * "error: …" or "warning: …" for stderr. Messages may quote file content (a template, a name):
 * the engine escapes and cuts what it quotes, and this is the last line of defence for whatever
 * did not go through it (a dependency's error text). A message's own line breaks stay, indented,
 * so that no line of it can pass for a line of ours.
 */
function messageLine(kind: 'error' | 'warning', message: string): string {
  return `${kind}: ${safeText(message, MAX_ERROR_CHARS, '\n').replaceAll('\n', '\n  ')}\n`;
}

/**
 * Generated text and prompt labels as printed: control characters other than newline and tab are
 * shown as escapes (`\x1b`), always, not only on a terminal (docs/cli.md "Control characters").
 */
function printable(text: string): string {
  return escapeControls(text, '\n\t');
}

/**
 * One JSON line. JSON.stringify escapes C0 controls but leaves DEL, C1 and bidi controls raw;
 * as `\uXXXX` escapes they read back as the same string and cannot act on a terminal.
 */
function jsonLine(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/**
 * Streams the text of several prompts in prompt order while they are generated together: the
 * first unfinished prompt prints live, later ones are held until their turn.
 */
function textPrinter(io: CliIo, prompts: readonly string[]) {
  const labelled = prompts.length > 1;
  const held = prompts.map(() => '');
  const finished = prompts.map(() => false);
  let cur = 0;
  const open = (g: number) => {
    if (labelled) io.stdout.write(`${printable(prompts[g])}\n> `);
  };
  const close = () => {
    io.stdout.write(labelled ? '\n\n==================================\n\n' : '\n');
  };
  open(0);
  return {
    text(g: number, rawDelta: string) {
      const delta = printable(rawDelta);
      if (g === cur) io.stdout.write(delta);
      else held[g] += delta;
    },
    finish(g: number) {
      finished[g] = true;
      while (cur < prompts.length && finished[cur]) {
        close();
        cur++;
        if (cur < prompts.length) {
          open(cur);
          io.stdout.write(held[cur]);
          held[cur] = '';
        }
      }
    },
  };
}

/** The conversation in a --messages file, checked (EngineError bad-argument naming the file and message). */
async function readMessagesFile(path: string): Promise<ChatMessage[]> {
  const where = safeText(path, 200);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new EngineError(
      'bad-argument',
      code === 'ENOENT' ? `${where}: no such file` : `${where}: cannot read it (${code ?? e})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new EngineError('bad-argument', `${where} is not valid JSON (${(e as Error).message})`);
  }
  return parseChatMessages(json, where);
}

async function runGenerate(cmd: GenerateCommand, io: CliIo, signal: AbortSignal): Promise<number> {
  // Read before the model loads: a typo in the conversation should not cost a multi-GB load.
  const messages = cmd.messagesPath !== undefined ? await readMessagesFile(cmd.messagesPath) : undefined;
  const prompts: (string | number[])[] =
    cmd.promptIds.length > 0
      ? cmd.promptIds
      : cmd.prompts.length > 0
        ? cmd.prompts
        : [...META_EXAMPLE_PROMPTS];
  const device = cmd.device ?? 'gpu';
  const customKernels = cmd.customOpsPath ? await readCustomOps(cmd.customOpsPath) : undefined;
  if (customKernels && device !== 'gpu') throw new UsageError('--custom-ops-path needs --device gpu');
  const tokenizer = cmd.tokenizerPath ? await loadTokenizerFile(cmd.tokenizerPath) : undefined;
  const status = statusLine(io);

  let modelPath = cmd.modelPath;
  if (modelPath === undefined) {
    modelPath = await ensureDefaultModel({
      env: io.env,
      signal,
      onProgress: (p: DownloadProgress) =>
        status.update(
          `downloading the default model: ${formatBytes(p.loadedBytes)} / ${p.totalBytes ? formatBytes(p.totalBytes) : '?'} ` +
            `(${pct(p.loadedBytes, p.totalBytes)}), ${formatBytes(p.bytesPerSecond)}/s, ETA ${formatDuration(p.etaSeconds)}`,
          p.loadedBytes === p.totalBytes,
        ),
    });
    status.done();
  }

  const opened = await openModelSource(modelPath);
  try {
    const gpu = device === 'gpu' ? await nodeGpu() : undefined;
    io.stderr.write(`loading ${safeText(opened.source.name, 500)} on ${device}\n`);
    const model = await LoadedModel.load(opened.source, {
      device,
      gpu,
      quantizationEncoding: cmd.quantizationEncoding,
      tokenizer,
      customKernels,
      f16: cmd.f16,
      kernelSelfCheck: fileSelfCheckStore(selfCheckFile(io.env)),
      maxBatch: cmd.batchSize,
      maxSeqLen: cmd.maxSeqLen,
      signal,
      onProgress: (p: LoadProgress) => {
        if (p.phase === 'weights') {
          status.update(
            `loading weights: ${formatBytes(p.loadedBytes)} / ${formatBytes(p.totalBytes)} (${pct(p.loadedBytes, p.totalBytes)})`,
            p.loadedBytes === p.totalBytes,
          );
        }
      },
    });
    status.done();
    try {
      const c = model.config;
      io.stderr.write(
        `loaded ${safeText(c.name || opened.source.name, 200)} in ${model.loadMs.toFixed(0)} ms: ${c.nLayers} layers, dim ${c.dim}, ` +
          `${c.nHeads}/${c.nKvHeads} heads, vocab ${c.vocabSize}, context ${model.runner.maxSeqLen}\n`,
      );
      if (cmd.verbose && model.gpuContext) {
        const a = model.gpuContext.adapterInfo;
        io.stderr.write(
          `gpu: ${[a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ')}\n`,
        );
      }
      const labels = messages
        ? ['']
        : prompts.map((p) => (typeof p === 'string' ? p : model.tokenizer.decode(p)));
      const printer = textPrinter(io, labels);
      const common = {
        maxTokens: cmd.maxTokens,
        sampling: { temperature: cmd.temperature, topP: cmd.topP, topK: cmd.topK, seed: cmd.seed },
        signal,
        onToken: ({ seq, delta, finish }: TokenEvent) => {
          if (delta) printer.text(seq, delta);
          if (finish) printer.finish(seq);
        },
      };
      // A conversation is one prompt: the reply to it, in the same shape as a completion's result.
      const chat = messages ? await model.chat({ ...common, messages }) : undefined;
      const res = chat
        ? {
            promptTokens: [chat.promptTokens],
            tokens: [chat.tokens],
            text: [chat.text],
            finishReasons: [chat.finishReason],
            warnings: chat.warnings,
            stats: chat.stats,
          }
        : await model.complete({ ...common, prompts, mode: cmd.chat ? 'chat' : 'completion' });
      const s = res.stats;
      for (const w of res.warnings) io.stderr.write(messageLine('warning', w));
      io.stderr.write(
        `${s.promptTokens} prompt tokens, ${s.generatedTokens} generated in ${s.batches} batch(es) on ${s.device}: ` +
          `time to first token ${s.timeToFirstTokenMs.toFixed(0)} ms, prefill ${s.prefillTokensPerSecond.toFixed(1)} tok/s, ` +
          `decode ${s.decodeTokensPerSecond.toFixed(1)} tok/s\n`,
      );
      if (cmd.json) {
        io.stdout.write(
          `${jsonLine({
            prompt_tokens: res.promptTokens,
            tokens: res.tokens,
            text: res.text,
            finish_reasons: res.finishReasons,
            warnings: res.warnings,
            ...(chat ? { dropped_messages: chat.droppedMessages, context_tokens: chat.contextTokens } : {}),
            stats: {
              load_ms: s.loadMs,
              time_to_first_token_ms: s.timeToFirstTokenMs,
              prefill_ms: s.prefillMs,
              decode_ms: s.decodeMs,
              prefill_tokens_per_second: s.prefillTokensPerSecond,
              decode_tokens_per_second: s.decodeTokensPerSecond,
              prompt_tokens: s.promptTokens,
              generated_tokens: s.generatedTokens,
              seed: s.seed,
              batches: s.batches,
              batch_size: model.runner.maxBatch,
              device: s.device,
              quantization_encoding: cmd.quantizationEncoding ?? 'default',
              model: opened.source.name,
            },
          })}\n`,
        );
      }
      if (res.finishReasons.includes('interrupted')) {
        io.stderr.write('interrupted\n');
        return 130;
      }
      return 0;
    } finally {
      model.dispose();
    }
  } finally {
    await opened.close();
  }
}

async function runTokenize(cmd: TokenizeCommand, io: CliIo): Promise<number> {
  let tokenizer: Llama3Tokenizer;
  if (cmd.tokenizerPath) {
    tokenizer = await loadTokenizerFile(cmd.tokenizerPath);
  } else {
    // Only the header is read: the vocabulary lives in the metadata.
    const opened = await openModelSource(cmd.modelPath!);
    try {
      tokenizer = Llama3Tokenizer.fromGguf((await readGguf(opened.source)).metadata);
    } finally {
      await opened.close();
    }
  }
  const ids = tokenizer.encode(cmd.text, { bos: false, allowSpecial: false });
  io.stdout.write(cmd.json ? `${JSON.stringify({ tokens: ids })}\n` : `${ids.join(' ')}\n`);
  return 0;
}

/** Runs one CLI invocation; returns the exit code (0 ok, 1 runtime error, 2 usage, 130 interrupted). */
export async function runCli(argv: string[], io: CliIo, signal: AbortSignal = new AbortController().signal) {
  let verbose = argv.includes('--verbose');
  try {
    const cmd = argv[0] === 'inspect' ? parseInspectCommand(argv.slice(1)) : parseCommand(argv);
    if (cmd.command === 'help') {
      io.stdout.write(USAGE);
      return 0;
    }
    verbose = cmd.verbose;
    if (cmd.command === 'inspect') return await runInspect(cmd, io);
    return cmd.command === 'generate' ? await runGenerate(cmd, io, signal) : await runTokenize(cmd, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`error: ${e.message}\n\n${USAGE}`);
      return 2;
    }
    const err = e instanceof EngineError ? e : undefined;
    let message = e instanceof Error ? e.message : String(e);
    if (err?.code === 'no-webgpu' && /adapter/i.test(message)) {
      // The engine's text is written for browsers; in Node the usual cause is a machine without a
      // Vulkan driver, where Dawn can still use SwiftShader (software).
      message =
        'no WebGPU adapter found by Dawn. Without a GPU driver, set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json ' +
        '(SwiftShader, slow) or run with --device cpu';
    }
    io.stderr.write(messageLine('error', message));
    if (verbose && e instanceof Error && e.stack) {
      io.stderr.write(`${safeText(e.stack, 4 * MAX_ERROR_CHARS, '\n')}\n`);
    }
    return err?.code === 'interrupted' ? 130 : 1;
  }
}
