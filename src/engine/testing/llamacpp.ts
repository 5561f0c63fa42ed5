/**
 * llama.cpp as the outside oracle (Node-only test helper, through node-llama-cpp's CPU build).
 *
 * node-llama-cpp 3.21.1 exposes no raw logits, only the sampler's probabilities: with temperature 0
 * it reports softmax(logits) (T = 1) for the whole vocabulary. We return the top two as
 * log-probabilities: ln p = logit − logsumexp, so their difference is exactly the logit gap
 * l1 − l2, which is what the near-tie rule needs.
 *
 * The near-tie rule (docs/testing.md): llama.cpp's CPU path quantizes activations to 8 bits inside
 * quantized mat-vecs, so its logits differ from an exact f32 reference by ~0.1–0.5%. Where its top
 * two candidates are that close, either token is a correct greedy choice, and after a different
 * choice the continuations legitimately diverge. So greedy outputs are compared token by token up
 * to (and including) the first step whose llama.cpp logit gap is below NEAR_TIE_LOGIT_GAP, and no
 * further.
 */
import { getLlama, type Llama, type LlamaModel } from 'node-llama-cpp';

/**
 * A step is a near-tie when llama.cpp's top-2 logits differ by less than this (natural-log units):
 * p2 > p1 · e^−0.05 ≈ 0.951 · p1, i.e. the two probabilities are within ~5%. The tiny fixtures'
 * logits are a few units in size, so 0.5% logit noise is ≤ ~0.03; 0.05 covers it with margin.
 */
export const NEAR_TIE_LOGIT_GAP = 0.05;

export interface LlamaCppGreedy {
  /** Greedy continuation (llama.cpp's argmax each step; stops early only at nothing: no EOS stop). */
  tokens: number[];
  /** Per step: [ln p1, ln p2] of llama.cpp's two most likely next tokens (before picking tokens[i]). */
  top2: [number, number][];
}

let llamaPromise: Promise<Llama> | undefined;
/** One CPU llama.cpp per process; never builds or downloads anything. */
export function cpuLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  return llamaPromise;
}

const models = new Map<string, Promise<LlamaModel>>();
/** A loaded model, cached per path for the process (tests tokenize and generate with the same one). */
export async function llamaCppModel(modelPath: string): Promise<LlamaModel> {
  let m = models.get(modelPath);
  if (!m) {
    m = cpuLlama().then((llama) => llama.loadModel({ modelPath }));
    models.set(modelPath, m);
  }
  return m;
}

/** Token ids of `text` by llama.cpp's own tokenizer (no BOS added, special-token text not parsed). */
export async function llamaCppTokenize(modelPath: string, text: string): Promise<number[]> {
  const model = await llamaCppModel(modelPath);
  return Array.from(model.tokenize(text, false), Number);
}

/**
 * llama.cpp's greedy continuation of `promptTokens` (BOS included by the caller), `nTokens` long,
 * with the top-2 log-probabilities at each step. EOS does not stop it: the comparison runs on ids.
 */
export async function llamaCppGreedy(
  modelPath: string,
  promptTokens: number[],
  nTokens: number,
): Promise<LlamaCppGreedy> {
  const model = await llamaCppModel(modelPath);
  const ctx = await model.createContext({
    contextSize: Math.max(64, promptTokens.length + nTokens + 8),
    batchSize: Math.max(32, promptTokens.length),
    threads: 1,
    sequences: 1,
  });
  try {
    const seq = ctx.getSequence();
    const tokens: number[] = [];
    const top2: [number, number][] = [];
    let input = promptTokens;
    for (let i = 0; i < nTokens; i++) {
      const last = input.length - 1;
      const res = await seq.controlledEvaluate(
        input.map((t, j) =>
          j === last
            ? ([t, { generateNext: { probabilities: true, options: { temperature: 0 } } }] as const)
            : t,
        ) as Parameters<typeof seq.controlledEvaluate>[0],
      );
      const probs = res[last]?.next.probabilities;
      if (!probs || probs.size < 2) throw new Error(`llama.cpp returned no probabilities at step ${i}`);
      // The map is sorted by probability, highest first.
      const it = probs.entries();
      const [t1, p1] = it.next().value as [number, number];
      const [, p2] = it.next().value as [number, number];
      tokens.push(t1);
      top2.push([Math.log(p1), Math.log(p2)]);
      input = [t1];
    }
    return { tokens, top2 };
  } finally {
    await ctx.dispose();
  }
}

export interface GreedyComparison {
  /** True when the first `compared` tokens are equal and `compared` ≥ minTokens. */
  ok: boolean;
  /** Positions compared: up to and including the first near-tie step, or all. */
  compared: number;
  /** First position where the tokens differ (within the compared range), or -1. */
  firstMismatch: number;
  /** Position of the first near-tie step (llama.cpp logit gap < NEAR_TIE_LOGIT_GAP), or -1. */
  firstNearTie: number;
  /** Human-readable summary for assertion messages. */
  message: string;
}

/**
 * Compares our greedy ids with llama.cpp's under the near-tie rule: positions 0..k are compared,
 * where k is the first step whose llama.cpp top-2 logit gap (ln p1 − ln p2) is below
 * NEAR_TIE_LOGIT_GAP (at step k either token is a valid greedy choice, so a mismatch AT k is
 * tolerated and later positions are not compared), or all positions when there is no near-tie.
 * Passes only when every compared position before k matches and at least `minTokens` positions were
 * compared; a file that hits a near-tie earlier is a bad fixture (re-seed it).
 */
export function compareGreedy(ours: number[], theirs: LlamaCppGreedy, minTokens: number): GreedyComparison {
  const n = Math.min(ours.length, theirs.tokens.length);
  let firstNearTie = -1;
  for (let i = 0; i < theirs.top2.length; i++) {
    const [a, b] = theirs.top2[i];
    if (a - b < NEAR_TIE_LOGIT_GAP) {
      firstNearTie = i;
      break;
    }
  }
  const compared = firstNearTie >= 0 ? Math.min(n, firstNearTie + 1) : n;
  let firstMismatch = -1;
  for (let i = 0; i < compared; i++) {
    if (ours[i] !== theirs.tokens[i]) {
      firstMismatch = i;
      break;
    }
  }
  // A mismatch exactly at the near-tie step is allowed: both tokens are within the tie margin.
  const mismatchCounts = firstMismatch >= 0 && firstMismatch !== firstNearTie;
  // Positions that count as agreed: all compared ones, or those before the near-tie if it differs there.
  const agreed = firstMismatch === firstNearTie && firstMismatch >= 0 ? firstMismatch : compared;
  const ok = !mismatchCounts && agreed >= minTokens;
  const gap = (i: number) => (theirs.top2[i][0] - theirs.top2[i][1]).toFixed(4);
  let message: string;
  if (mismatchCounts) {
    message =
      `token ${firstMismatch} differs: ours ${ours[firstMismatch]}, llama.cpp ${theirs.tokens[firstMismatch]} ` +
      `(llama.cpp logit gap there ${gap(firstMismatch)} ≥ ${NEAR_TIE_LOGIT_GAP}, not a near-tie)`;
  } else if (agreed < minTokens) {
    message =
      `only ${agreed} tokens comparable (< ${minTokens}): near-tie at step ${firstNearTie} ` +
      `(gap ${firstNearTie >= 0 ? gap(firstNearTie) : '-'}) or too few tokens generated; re-seed the fixture`;
  } else {
    message = `${agreed} tokens agree${firstNearTie >= 0 ? ` (near-tie at step ${firstNearTie})` : ''}`;
  }
  return { ok, compared: agreed, firstMismatch, firstNearTie, message };
}
