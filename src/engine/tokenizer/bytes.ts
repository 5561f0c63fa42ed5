/**
 * GPT-2's byte-level alphabet (`bytes_to_unicode` in openai/gpt-2 `encoder.py`): every byte gets a
 * printable character, so a BPE vocabulary of strings can hold arbitrary bytes. Printable Latin-1
 * bytes map to themselves; the other 68 (controls, space, 0x7F-0xA0, 0xAD) map to U+0100.. in order.
 * Llama 3's vocabulary uses the same alphabet: " the" is stored as "Ġthe" (Ġ = U+0120 = byte 0x20).
 */

/** BYTE_TO_CHAR[b] = the vocabulary character for byte b. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** The inverse: vocabulary character code → byte (only the 256 alphabet characters are present). */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = new Map(
  BYTE_TO_CHAR.map((ch, b) => [ch.charCodeAt(0), b]),
);

function buildByteToChar(): string[] {
  const printable = (b: number) =>
    (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = String.fromCharCode(printable(b) ? b : 256 + n++);
  }
  return out;
}

/**
 * The byte-level form of `text`: its UTF-8 bytes, each replaced by its alphabet character.
 * Hand-rolled UTF-8 (no TextEncoder) because this runs once per pre-token piece on the hot path.
 * A lone surrogate becomes U+FFFD (EF BF BD), as TextEncoder does.
 */
export function toByteLevel(text: string): string {
  let out = '';
  const n = text.length;
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c < 0x80) {
      out += BYTE_TO_CHAR[c];
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const lo = i + 1 < n ? text.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && lo >= 0xdc00 && lo <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    }
    if (c < 0x800) {
      out += BYTE_TO_CHAR[0xc0 | (c >> 6)] + BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    } else if (c < 0x10000) {
      out +=
        BYTE_TO_CHAR[0xe0 | (c >> 12)] +
        BYTE_TO_CHAR[0x80 | ((c >> 6) & 0x3f)] +
        BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    } else {
      out +=
        BYTE_TO_CHAR[0xf0 | (c >> 18)] +
        BYTE_TO_CHAR[0x80 | ((c >> 12) & 0x3f)] +
        BYTE_TO_CHAR[0x80 | ((c >> 6) & 0x3f)] +
        BYTE_TO_CHAR[0x80 | (c & 0x3f)];
    }
  }
  return out;
}
