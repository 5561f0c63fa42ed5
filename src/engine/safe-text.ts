/**
 * Text from a model file (names, tokens, templates) or from a server is untrusted: printed raw, a
 * control character can move the cursor, clear the screen, retitle the terminal or forge lines, and
 * one value can be megabytes long. Every message or printed line that quotes such text goes
 * through these helpers: control characters become visible escapes and long values are cut.
 */

/**
 * What a terminal may act on: C0 (U+0000–U+001F, ESC among them), DEL, C1 (U+0080–U+009F; U+009B
 * is an 8-bit CSI), and the bidirectional overrides and isolates that reorder what a line shows.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/** Longest quoted value in a message, in UTF-16 code units (a little more with escapes). */
export const MAX_QUOTED_CHARS = 200;

function escapeOne(c: string): string {
  if (c === '\n') return '\\n';
  if (c === '\r') return '\\r';
  if (c === '\t') return '\\t';
  const code = c.charCodeAt(0);
  return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
}

/**
 * `s` with every control character shown as an escape (`\x1b`, `\n`, `\u202e`), except those in
 * `keep` (e.g. '\n\t' for text whose line breaks are meant). Nothing else changes.
 */
export function escapeControls(s: string, keep = ''): string {
  return s.replace(CONTROLS, (c) => (keep.includes(c) ? c : escapeOne(c)));
}

/** UTF-8 length of `s` from `from` on, without encoding it (lone surrogates count as U+FFFD). */
function utf8Length(s: string, from: number): number {
  let n = 0;
  for (let i = from; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

/** Where to cut `s` to keep at most `maxChars` UTF-16 code units, never inside a surrogate pair. */
function cutIndex(s: string, maxChars: number): number {
  if (s.length <= maxChars) return s.length;
  const last = s.charCodeAt(maxChars - 1);
  return maxChars > 0 && last >= 0xd800 && last <= 0xdbff ? maxChars - 1 : maxChars;
}

function moreBytes(s: string, cut: number): string {
  return cut < s.length ? `…(${utf8Length(s, cut)} more bytes)` : '';
}

/** `s` cut to at most `maxChars`, then "…(N more bytes)" (the UTF-8 bytes left out) when cut. */
export function truncateText(s: string, maxChars: number): string {
  const cut = cutIndex(s, maxChars);
  return s.slice(0, cut) + moreBytes(s, cut);
}

/**
 * A value from a file, ready for a message: cut to `maxChars`, control characters escaped, in
 * double quotes (inner quotes and backslashes escaped, so where it ends is unambiguous).
 */
export function quoteText(s: string, maxChars = MAX_QUOTED_CHARS): string {
  const cut = cutIndex(s, maxChars);
  const body = escapeControls(s.slice(0, cut).replace(/[\\"]/g, (c) => `\\${c}`));
  return `"${body}"${moreBytes(s, cut)}`;
}

/**
 * Text for one printed line or message that may carry file content: cut to `maxChars`, control
 * characters escaped (except those in `keep`).
 */
export function safeText(s: string, maxChars: number, keep = ''): string {
  return escapeControls(truncateText(s, maxChars), keep);
}

/**
 * Any value from a file, for a message: a string quoted (quoteText); a small array or object as
 * escaped, cut JSON; a long array by its length only (stringifying it could cost megabytes);
 * numbers, bigints, booleans, null and undefined as themselves.
 */
export function showValue(v: unknown, maxChars = MAX_QUOTED_CHARS): string {
  if (typeof v === 'string') return quoteText(v, maxChars);
  if (Array.isArray(v) && v.length > 50) return `an array of ${v.length} items`;
  if (v !== null && typeof v === 'object') {
    let json: string | undefined;
    try {
      json = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
    } catch {
      json = undefined;
    }
    return json === undefined ? 'an object' : safeText(json, maxChars);
  }
  return String(v);
}
