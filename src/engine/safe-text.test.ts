import { describe, expect, it } from 'vitest';
import { escapeControls, quoteText, safeText, showValue, truncateText } from './safe-text';

/** Anything a terminal could act on: C0, DEL, C1, bidi overrides and isolates. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const TERMINAL_CONTROLS = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe('safe text', () => {
  it('shows every control character as an escape and leaves other text alone', () => {
    const hostile = '\x1b]0;pwned\x07\x1b[2J\r\nerror: forged\x7f\x9b31m\u202etxt.exe\u2066';
    const out = escapeControls(hostile);
    expect(out).not.toMatch(TERMINAL_CONTROLS);
    expect(out).toBe('\\x1b]0;pwned\\x07\\x1b[2J\\r\\nerror: forged\\x7f\\x9b31m\\u202etxt.exe\\u2066');
    expect(escapeControls('Ünïcödé 😀 中文 "q" \\')).toBe('Ünïcödé 😀 中文 "q" \\');
    expect(escapeControls('a\nb\tc\x1b', '\n\t')).toBe('a\nb\tc\\x1b');
  });

  it('cuts long text and says how many UTF-8 bytes were left out, never splitting a pair', () => {
    expect(truncateText('abc', 3)).toBe('abc');
    expect(truncateText('abcdef', 3)).toBe('abc…(3 more bytes)');
    expect(truncateText('ab😀é', 3)).toBe('ab…(6 more bytes)');
    const big = 'x'.repeat(10_000_000);
    expect(truncateText(big, 200)).toBe(`${'x'.repeat(200)}…(9999800 more bytes)`);
  });

  it('quotes a value unambiguously, escaped and cut', () => {
    expect(quoteText('plain')).toBe('"plain"');
    expect(quoteText('say "hi" \\ \x1b[31m')).toBe('"say \\"hi\\" \\\\ \\x1b[31m"');
    const q = quoteText(`\x1b[2J${'y'.repeat(5000)}`, 10);
    expect(q).toBe('"\\x1b[2Jyyyyyy"…(4994 more bytes)');
    expect(safeText(`${'\x1b'.repeat(300)}`, 5)).toBe(`${'\\x1b'.repeat(5)}…(295 more bytes)`);
  });

  it('shows any value from a file in bounded form', () => {
    expect(showValue('x\x1b')).toBe('"x\\x1b"');
    expect(showValue(3)).toBe('3');
    expect(showValue(2n ** 70n)).toBe('1180591620717411303424');
    expect(showValue(null)).toBe('null');
    expect(showValue(['Ġ'])).toBe('["Ġ"]');
    expect(showValue(new Array(1_000_000).fill('a'))).toBe('an array of 1000000 items');
    const obj = showValue({ id: 'x', content: `\x9b${'z'.repeat(1000)}` }, 40);
    expect(obj).not.toMatch(TERMINAL_CONTROLS);
    expect(obj).toMatch(/^\{"id":"x","content":"\\x9bz+…\(\d+ more bytes\)$/);
  });
});
