/**
 * Llama 3's pre-tokenizer: the regex that cuts text into pieces before BPE (BPE never merges across
 * a piece boundary). The pattern as Meta's tiktoken and the tokenizer.json `pre_tokenizer` write it:
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *
 * Translated for JavaScript by hand, not by string rewriting, because two pieces mean something
 * else in a JS RegExp:
 * - `(?i:...)` (a scoped flag) does not exist before ES2025 (Node 20 lacks it): the contractions are
 *   spelled out with both cases, e.g. `'[lL][lL]`. `ſ` (U+017F, which Unicode case folding maps to
 *   `s`) is included in `'s` because Oniguruma, tiktoken's regex crate and HF tokenizers fold it
 *   (llama.cpp compares lowercased code points and does not: an edge case we side with HF on).
 * - `\s` in JS includes U+FEFF and lacks U+0085 (NEL); Oniguruma, Rust and llama.cpp use Unicode
 *   White_Space. We spell that set out (WS below).
 */

/** The pattern as it appears in Llama 3's tokenizer.json (used to recognise a Llama 3 tokenizer). */
export const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** Unicode White_Space, as a character-class body. */
const WS = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const JS_PATTERN = [
  "'(?:[sSſ]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD])",
  '[^\\r\\n\\p{L}\\p{N}]?\\p{L}+',
  '\\p{N}{1,3}',
  ` ?[^${WS}\\p{L}\\p{N}]+[\\r\\n]*`,
  `[${WS}]*[\\r\\n]+`,
  `[${WS}]+(?![^${WS}])`,
  `[${WS}]+`,
].join('|');

/**
 * Calls `emit` with each piece of `text`, in order. Every character matches one alternative, but
 * anything left between matches is emitted as its own piece anyway (HF's "Isolated" split keeps gaps),
 * so the pieces always concatenate back to `text`.
 */
export function splitLlama3(text: string, emit: (piece: string) => void): void {
  const re = llama3Regex();
  let last = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m.index > last) emit(text.slice(last, m.index));
    emit(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) emit(text.slice(last));
}

/**
 * A new global RegExp for the pattern (callers own its `lastIndex`; V8 shares the compiled code).
 * Every alternative consumes at least one character, so an exec loop always advances.
 */
export function llama3Regex(): RegExp {
  return new RegExp(JS_PATTERN, 'gu');
}
