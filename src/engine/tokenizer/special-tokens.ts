/**
 * Finding special-token text ("<|eot_id|>", …) in a string, built once per tokenizer.
 *
 * It used to be one RegExp alternating every special token, longest first: fine for Llama 3's 256,
 * but a file with a million control tokens made a regex that tried each of them at every position
 * (24 s and 2 GB for one chat). Here the token texts are sorted once; at a position, the range of
 * tokens sharing the text's next characters is narrowed by binary search one character at a time,
 * so a position costs O(match length × log tokens), and positions whose character starts no token
 * cost one table read. Memory: the sorted list of (shared) strings and their ids.
 */
export class SpecialTokenMatcher {
  /** Token texts in UTF-16 code-unit order, no duplicates, none empty. */
  private readonly texts: string[];
  private readonly ids: Int32Array;
  /** 1 where a UTF-16 code unit starts some token. */
  private readonly starts = new Uint8Array(65536);
  /** Id of the last match found by `longestAt`. */
  matchedId = -1;

  /** `idOf(text)` gives the id a text encodes to (the first token with that text). */
  constructor(texts: readonly string[], idOf: (text: string) => number) {
    const unique = [...new Set(texts.filter((t) => t.length > 0))];
    unique.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.texts = unique;
    this.ids = Int32Array.from(unique, idOf);
    for (const t of unique) this.starts[t.charCodeAt(0)] = 1;
  }

  get size(): number {
    return this.texts.length;
  }

  /**
   * Length of the longest token whose text starts at `text[pos]` (its id in `matchedId`), or 0.
   * Like the `u`-flag RegExp it replaces, it never starts in the middle of a surrogate pair.
   */
  longestAt(text: string, pos: number): number {
    const first = text.charCodeAt(pos);
    if (this.starts[first] === 0) return 0;
    if (first >= 0xdc00 && first <= 0xdfff && pos > 0) {
      const before = text.charCodeAt(pos - 1);
      if (before >= 0xd800 && before <= 0xdbff) return 0;
    }
    const texts = this.texts;
    let lo = 0;
    let hi = texts.length;
    let best = 0;
    // Invariant: texts[lo, hi) are the tokens starting with text[pos, pos + k); a token equal to
    // that prefix sorts first among them.
    for (let k = 0; pos + k < text.length; k++) {
      const c = text.charCodeAt(pos + k);
      lo = lowerBound(texts, lo, hi, k, c);
      hi = lowerBound(texts, lo, hi, k, c + 1);
      if (lo >= hi) break;
      if (texts[lo].length === k + 1) {
        best = k + 1;
        this.matchedId = this.ids[lo];
      }
    }
    return best;
  }
}

/** First index in [lo, hi) whose code unit at `k` is ≥ c (a string of length k counts as -1). */
function lowerBound(texts: string[], lo: number, hi: number, k: number, c: number): number {
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const t = texts[mid];
    const code = k < t.length ? t.charCodeAt(k) : -1;
    if (code < c) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
