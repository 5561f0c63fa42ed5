/**
 * llama.cpp's prefill and decode speed on the same file, for `npm run bench -- --compare llama.cpp`,
 * through node-llama-cpp with prebuilt binaries only (`build: 'never'`: nothing is compiled or
 * downloaded). Backend (`auto`): its Vulkan build (`@node-llama-cpp/linux-x64-vulkan`) when that
 * loads and finds a Vulkan GPU, else its CPU build (`@node-llama-cpp/linux-x64`), else the Vulkan
 * build computing on the CPU; `backend` says which ran.
 *
 * Timing: llama.cpp's own counters (llama_perf_context, what llama-bench reports), read from the
 * `llama_perf_context_print` lines of `printTimings()`; they cover the decode calls up to their
 * results being ready and nothing of node-llama-cpp around them. Wall time around the same calls is
 * returned too, and is what `prefillTokPerS`/`decodeTokPerS` fall back to if those lines are absent.
 *
 * node-llama-cpp is imported dynamically so the one-file bundle loads without it unless asked to
 * compare (the bundle keeps it external: docs/bench.md says what to carry to a GPU machine).
 */
import type { Llama, Token } from 'node-llama-cpp';

export type LlamaCppBackendChoice = 'auto' | 'vulkan' | 'cpu';

export interface LlamaCppResult {
  prefillTokPerS: number;
  decodeTokPerS: number;
  /** 'vulkan (<device names>)', 'cpu' (the CPU build) or 'cpu (Vulkan build: <why no GPU>)'. */
  backend: string;
  /** Where the two rates above come from. */
  timing: 'llama.cpp perf counters' | 'wall clock';
  prefillMs: number;
  decodeMs: number;
  wallPrefillTokPerS: number;
  wallDecodeTokPerS: number;
}

/** Parsed `llama_perf_context_print` lines: prompt eval (batches) and eval (single-token runs). */
export function parsePerfLines(text: string): {
  promptMs: number;
  promptTokens: number;
  evalMs: number;
  evalRuns: number;
} | null {
  const prompt = /prompt eval time\s*=\s*([\d.]+)\s*ms\s*\/\s*(\d+)\s*tokens/.exec(text);
  const evalRuns = /print:\s+eval time\s*=\s*([\d.]+)\s*ms\s*\/\s*(\d+)\s*runs/.exec(text);
  if (!prompt || !evalRuns) return null;
  return {
    promptMs: Number(prompt[1]),
    promptTokens: Number(prompt[2]),
    evalMs: Number(evalRuns[1]),
    evalRuns: Number(evalRuns[2]),
  };
}

async function openLlama(
  choice: LlamaCppBackendChoice,
  logger: (message: string) => void,
): Promise<{ llama: Llama; backend: string }> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  const options = {
    build: 'never' as const,
    logLevel: LlamaLogLevel.info,
    logger: (_level: unknown, message: string) => logger(message),
    progressLogs: false,
  };
  let vulkan: Llama | undefined;
  let vulkanProblem = '';
  if (choice !== 'cpu') {
    try {
      vulkan = await getLlama({ ...options, gpu: 'vulkan' });
      const names = await vulkan.getGpuDeviceNames();
      if (vulkan.gpu === 'vulkan' && names.length > 0) {
        return { llama: vulkan, backend: `vulkan (${names.join(', ')})` };
      }
      vulkanProblem = 'the Vulkan build found no Vulkan GPU';
    } catch (e) {
      vulkanProblem = `the Vulkan build did not load: ${(e as Error).message}`;
    }
    if (choice === 'vulkan' && !vulkan) throw new Error(`--llamacpp-backend vulkan: ${vulkanProblem}`);
  }
  // Without a Vulkan GPU the Vulkan build computes on the CPU (only a software or CPU Vulkan
  // device, or none): the CPU build when it is installed, else that.
  const onCpu = `cpu (Vulkan build: ${vulkanProblem})`;
  if (choice === 'vulkan' && vulkan) return { llama: vulkan, backend: onCpu };
  try {
    const llama = await getLlama({ ...options, gpu: false });
    await vulkan?.dispose();
    return { llama, backend: 'cpu' };
  } catch (e) {
    if (vulkan) return { llama: vulkan, backend: onCpu };
    throw new Error(
      `llama.cpp (node-llama-cpp) could not be loaded${vulkanProblem ? ` (${vulkanProblem})` : ''}: ${(e as Error).message}. ` +
        'Install devDependencies (npm ci) or carry node-llama-cpp as docs/bench.md says.',
    );
  }
}

/**
 * Prefill `prompt` as one batch, then `decode` greedy single-token steps, after an 8-token warm-up
 * (as the bench does for our engine). The counts llama.cpp reports are checked against these.
 */
export async function benchLlamaCpp(
  modelPath: string,
  prompt: number[],
  decode: number,
  choice: LlamaCppBackendChoice = 'auto',
): Promise<LlamaCppResult> {
  let logText = '';
  const { llama, backend } = await openLlama(choice, (m) => {
    if (m.includes('llama_perf_context_print')) logText += `${m}\n`;
  });
  try {
    const model = await llama.loadModel({
      modelPath,
      gpuLayers: backend.startsWith('vulkan') ? 'max' : 0,
    });
    const ctx = await model.createContext({
      contextSize: prompt.length + decode + 16,
      batchSize: Math.max(prompt.length, 8),
      sequences: 1,
      performanceTracking: true,
    });
    const seq = ctx.getSequence();
    const greedy = { temperature: 0 };
    const tokens = prompt as Token[]; // node-llama-cpp's Token is a branded number

    // printTimings prints and resets the counters; its lines reach the logger asynchronously.
    const printedTimings = async () => {
      await ctx.printTimings();
      for (let i = 0; i < 100 && !parsePerfLines(logText); i++) await new Promise((r) => setTimeout(r, 20));
      const text = logText;
      logText = '';
      return text;
    };
    // Warm-up; its counts are printed and dropped.
    for await (const _ of seq.evaluate(tokens.slice(0, Math.min(8, tokens.length)), greedy)) break;
    await seq.clearHistory();
    await printedTimings();

    // The prompt is one decode call; then each yielded token is decoded to yield the next, so
    // decode + 1 tokens take exactly `decode` single-token decode calls.
    let generated = 0;
    const t0 = performance.now();
    let t1 = t0;
    for await (const _ of seq.evaluate(tokens, greedy)) {
      if (generated++ === 0) t1 = performance.now();
      if (generated > decode) break;
    }
    const t2 = performance.now();
    const perf = parsePerfLines(await printedTimings());
    await ctx.dispose();
    await model.dispose();

    const wallPrefillMs = t1 - t0;
    const wallDecodeMs = t2 - t1;
    const rate = (n: number, ms: number) => +((n / ms) * 1000).toFixed(2);
    const perfOk = perf !== null && perf.promptTokens === prompt.length && perf.evalRuns === decode;
    const prefillMs = perfOk ? perf.promptMs : wallPrefillMs;
    const decodeMs = perfOk ? perf.evalMs : wallDecodeMs;
    return {
      prefillTokPerS: rate(prompt.length, prefillMs),
      decodeTokPerS: rate(decode, decodeMs),
      backend,
      timing: perfOk ? 'llama.cpp perf counters' : 'wall clock',
      prefillMs: +prefillMs.toFixed(2),
      decodeMs: +decodeMs.toFixed(2),
      wallPrefillTokPerS: rate(prompt.length, wallPrefillMs),
      wallDecodeTokPerS: rate(decode, wallDecodeMs),
    };
  } finally {
    await llama.dispose();
  }
}
