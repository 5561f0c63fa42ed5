/**
 * llama.cpp as the outside oracle (Node-only test helper, through node-llama-cpp's CPU build).
 *
 * node-llama-cpp 3.21.1 exposes no raw logits, only the sampler's probabilities: with temperature 0
 * it reports softmax(logits) (T = 1) over the whole vocabulary, sorted. Log-probabilities differ from
 * the logits by one constant (logsumexp), so differences of ln p are exact logit differences:
 *   gap   = ln p1 − ln p2        = l1 − l2          (top-1 minus top-2 logit)
 *   range = ln p1 − ln p_median  = l1 − median(l)   (how far the winner stands above the vocabulary)
 *
 * THE NEAR-TIE RULE (docs/testing.md). Step i is a near-tie when
 *     gap_i < NEAR_TIE_FRACTION · range_i        (NEAR_TIE_FRACTION = 0.04)
 * llama.cpp's CPU path quantizes activations to 8 bits inside q4_0/q8_0/q6_K products; measured on
 * our fixtures (scripts in docs/testing.md), its top-2 logit gap differs from the exact f32
 * reference's by up to 1.9% of the range on q4_0/q8_0 files (~0.6% typical) and by < 0.1% on
 * f32/f16/bf16 files. Where the top two are closer than 4% of the range (2× the worst seen) either
 * token is a correct greedy choice, and the continuations may then legitimately
 * diverge. Logits have no natural zero (softmax ignores shifts), so the scale is the range above the
 * median, not |l1|.
 * `compareGreedy` compares ids position by position up to and including the first near-tie step (a
 * mismatch exactly there is allowed) and requires at least `minTokens` agreeing positions.
 */
import { getLlama, type Llama, LlamaLogLevel, type LlamaModel } from 'node-llama-cpp';

/** A step is a near-tie when llama.cpp's top-2 logit gap is below this fraction of its range. */
export const NEAR_TIE_FRACTION = 0.04;

export interface LlamaCppGreedy {
  /** Greedy continuation (llama.cpp's argmax each step; stops early only at nothing: no EOS stop). */
  tokens: number[];
  /** Per step: [ln p1, ln p2] of llama.cpp's two most likely next tokens (before picking tokens[i]). */
  top2: [number, number][];
  /** Per step: ln p1 − ln p_median = l1 − median(logits), the scale of the near-tie rule. */
  range: number[];
}

let llamaPromise: Promise<Llama> | undefined;
/** One CPU llama.cpp per process; never builds or downloads anything. */
export function cpuLlama(): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
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
    const range: number[] = [];
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
      // The median over the whole vocabulary; if it underflowed to 0 (a range beyond ~100), the
      // smallest positive probability stands in: that underestimates the range, which only makes
      // the rule stricter (fewer steps excused).
      const medianIndex = probs.size >> 1; // the map holds the whole vocabulary
      let k = 2;
      let pMedian = p2;
      for (const [, p] of it) {
        if (p > 0) pMedian = p;
        if (k++ >= medianIndex) break;
      }
      tokens.push(t1);
      top2.push([Math.log(p1), Math.log(p2)]);
      range.push(Math.log(p1) - Math.log(pMedian));
      input = [t1];
    }
    return { tokens, top2, range };
  } finally {
    await ctx.dispose();
  }
}

export interface GreedyComparison {
  /** True when the first `compared` tokens are equal and `compared` ≥ minTokens. */
  ok: boolean;
  /** Positions where both runs agree before they first differ (all of them when they never do). */
  compared: number;
  /** First position where the tokens differ (at a near-tie: allowed), or -1. */
  firstMismatch: number;
  /** Position of the first near-tie step (gap < NEAR_TIE_FRACTION · range), or -1. */
  firstNearTie: number;
  /** Human-readable summary for assertion messages. */
  message: string;
}

/** True when step i of llama.cpp's run is a near-tie (see the rule at the top of this file). */
export function isNearTie(theirs: LlamaCppGreedy, i: number): boolean {
  const [a, b] = theirs.top2[i];
  return a - b < NEAR_TIE_FRACTION * theirs.range[i];
}

/**
 * Compares our greedy ids with llama.cpp's under the near-tie rule. Equal tokens keep both contexts
 * equal, so the comparison runs to the first position where the ids differ, through any near-tie
 * where both picked the same token. There the runs may part only at a near-tie (either token is a
 * valid greedy choice, and after it the contexts differ, so nothing later is compared); a difference
 * at a clear step is a mismatch. Passes when there is no mismatch and at least `minTokens` positions
 * agree; runs that part at a near-tie earlier than that make a bad fixture (another prompt or seed).
 */
export function compareGreedy(ours: number[], theirs: LlamaCppGreedy, minTokens: number): GreedyComparison {
  const n = Math.min(ours.length, theirs.tokens.length);
  let agreed = 0;
  while (agreed < n && ours[agreed] === theirs.tokens[agreed]) agreed++;
  const firstMismatch = agreed < n ? agreed : -1;
  const partedAtNearTie = firstMismatch >= 0 && isNearTie(theirs, firstMismatch);
  const mismatchCounts = firstMismatch >= 0 && !partedAtNearTie;
  let firstNearTie = -1;
  for (let i = 0; i < n && firstNearTie < 0; i++) if (isNearTie(theirs, i)) firstNearTie = i;
  const ok = !mismatchCounts && agreed >= minTokens;
  const gap = (i: number) =>
    `${(theirs.top2[i][0] - theirs.top2[i][1]).toFixed(4)} of range ${theirs.range[i].toFixed(2)}`;
  let message: string;
  if (mismatchCounts) {
    message =
      `token ${firstMismatch} differs: ours ${ours[firstMismatch]}, llama.cpp ${theirs.tokens[firstMismatch]} ` +
      `(llama.cpp logit gap there ${gap(firstMismatch)}: not a near-tie)`;
  } else if (agreed < minTokens) {
    message =
      `only ${agreed} tokens comparable (< ${minTokens}): ` +
      (partedAtNearTie
        ? `the runs parted at a near-tie at step ${firstMismatch} (gap ${gap(firstMismatch)}); re-seed the fixture`
        : 'too few tokens generated');
  } else {
    const ties = theirs.top2.slice(0, agreed).filter((_, i) => isNearTie(theirs, i)).length;
    message =
      `${agreed} tokens agree` +
      (ties > 0 ? ` (through ${ties} near-tie${ties > 1 ? 's' : ''})` : '') +
      (partedAtNearTie ? `, then parted at a near-tie at step ${firstMismatch}` : '');
  }
  return { ok, compared: agreed, firstMismatch, firstNearTie, message };
}

export interface ForcedComparison {
  ok: boolean;
  /** Steps checked (not near-ties). */
  checked: number;
  /** Steps skipped as near-ties. */
  nearTies: number;
  /** Steps (not near-ties) where our argmax differs from llama.cpp's token. */
  mismatches: number[];
  message: string;
}

/**
 * Teacher-forced comparison: `oursArgmax[i]` is our argmax after feeding the prompt and llama.cpp's
 * own tokens 0..i−1, so both models see the same context at every step and one near-tie does not end
 * the comparison. Every step that is not a near-tie must agree, and at least `minTokens` steps must
 * be checked.
 */
export function compareForced(
  oursArgmax: number[],
  theirs: LlamaCppGreedy,
  minTokens: number,
): ForcedComparison {
  const n = Math.min(oursArgmax.length, theirs.tokens.length);
  let checked = 0;
  let nearTies = 0;
  const mismatches: number[] = [];
  for (let i = 0; i < n; i++) {
    if (isNearTie(theirs, i)) {
      nearTies++;
      continue;
    }
    checked++;
    if (oursArgmax[i] !== theirs.tokens[i]) mismatches.push(i);
  }
  const ok = mismatches.length === 0 && checked >= minTokens;
  const gap = (i: number) =>
    `${(theirs.top2[i][0] - theirs.top2[i][1]).toFixed(4)} of range ${theirs.range[i].toFixed(2)}`;
  const message =
    mismatches.length > 0
      ? `steps ${mismatches.join(', ')} differ (first: ours ${oursArgmax[mismatches[0]]}, llama.cpp ` +
        `${theirs.tokens[mismatches[0]]}, llama.cpp gap ${gap(mismatches[0])}: not a near-tie)`
      : checked < minTokens
        ? `only ${checked} steps checked (< ${minTokens}); ${nearTies} near-ties: generate more tokens or re-seed`
        : `${checked} steps agree, ${nearTies} near-ties skipped`;
  return { ok, checked, nearTies, mismatches, message };
}
