/**
 * Test strings for tokenizer parity, generated deterministically (seeded PRNG) from fragments
 * chosen to hit every branch of the Llama 3 regex and the byte-level BPE: scripts, emoji sequences,
 * code, numbers, whitespace runs, contractions, long words, URLs, story text and Meta's prompts.
 * Only well-established Unicode code points are used, so JS, llama.cpp and HF agree on \p{L}/\p{N}.
 * No lone surrogates (not representable in UTF-8; they become U+FFFD everywhere).
 */

import { mulberry32 } from '../random';

/** Meta's four example_text_completion.py prompts, exactly (llama3 repository, commit 14aab04). */
export const META_PROMPTS: readonly string[] = [
  'I believe the meaning of life is',
  'Simply put, the theory of relativity states that ',
  'A brief message congratulating the team on the launch:\n\n        Hi everyone,\n\n        I just ',
  'Translate English to French:\n\n        sea otter => loutre de mer\n        peppermint => menthe poivrée\n        plush girafe => girafe peluche\n        cheese =>',
];

const FRAGMENTS: readonly string[] = [
  // Accented Latin, Greek, Cyrillic, combining marks, ligatures, full-width, math, number forms.
  'naïve café résumé façade',
  'Ünïcödé ÀÉÎÕÜ ß ẞ æ Ø å',
  'e\u0301 a\u0308 n\u0303 (combining)',
  'Ελληνικά κείμενα',
  'Русский текст, ЁЖИК!',
  'ﬁnance ﬂow',
  'ＡＢＣ１２３ full-width',
  '∑∫√∞≠≤ ±×÷',
  'x²³ H₂O ½ ¾ Ⅻ ⅷ',
  '١٢٣٤٥ ۱۲۳ १२३४ ๑๒๓',
  '℃ № ™ © ®',
  // Emoji: simple, skin tones, ZWJ families, flags, variation selectors, keycaps.
  '😀😃😄',
  '👍🏽👍🏿 👋🏻',
  '👨‍👩‍👧‍👦 family',
  '🧑🏿‍💻 coder',
  '🏳️‍🌈 🏴‍☠️',
  '🇫🇷🇯🇵🇺🇸',
  '❤️ ♥︎ ☺️',
  '1️⃣ #️⃣',
  '🤷‍♀️🤦🏼‍♂️',
  // CJK, Korean, RTL scripts, Indic.
  '你好，世界！',
  '日本語のテキストです。カタカナ',
  '한국어 문장입니다',
  'مرحبا بالعالم، كيف حالك؟',
  'שלום עולם',
  'नमस्ते दुनिया। क्षत्रिय',
  'ไทย ภาษา',
  // Code.
  'function add(a, b) {\n  return a + b;\n}\n',
  'const xs = [1, 2, 3].map((x) => x * 2); // double',
  'def f(x):\n\tif x > 0:\n\t\treturn x ** 2\n\treturn None\n',
  'class Foo:\n    def __init__(self):\n        self.items = {}\n',
  'if (a&&b||!c) { x += y >>= 2; }',
  '#include <stdio.h>\nint main(void){printf("%d\\n", 42);}',
  '<div class="x">&nbsp;</div>',
  '$ ls -la | grep "*.ts" > out.txt 2>&1',
  // Numbers.
  '1234567890123456789',
  '3.14159265358979',
  '1,000,000 and 1.000.000,00',
  '-42 +17 0x1F 0b1010 1e-10 6.02e23',
  '2024-05-13T10:20:30Z',
  '$1,234.56 €99 ¥1000',
  '42nd 3rd 1st',
  // Whitespace runs.
  '   ',
  '\t\t',
  '\r\n',
  'trailing spaces   ',
  '\n\n\n',
  ' \n ',
  'a  b   c    d',
  '\u00a0non\u00a0breaking\u00a0',
  '\u3000ideographic\u3000space',
  'line\u2028sep\u2029para',
  'nel\u0085here',
  '\ufeffbom start',
  '\t \t \n\r\n  \n',
  'x \n\n y',
  // Contractions (with case) and apostrophes.
  "it's don't I'm we've they'll she'd you're",
  "IT'S DON'T I'M WE'VE THEY'LL SHE'D YOU'RE",
  "We'LL It'S They'Re I'D",
  "'s 'T 'LL 're 've",
  "rock 'n' roll ''s",
  'it’s curly ’s',
  // URLs and identifiers.
  'https://example.com/path/to/page?q=hello%20world&x=1#frag',
  'mailto:someone@example.org',
  'snake_case_name camelCaseName SCREAMING_CASE kebab-case',
  // Special-token look-alikes (plain text unless allowSpecial).
  '<|begin_of_text|>',
  '<|eot_id|>',
  '<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>',
  '<|reserved_special_token_5|> <|eom_id|>',
  '<|not_a_token|> <| eot_id |>',
  // Whole-word vocabulary entries the merges cannot build (only ignore_merges yields them).
  'Việt Nam: nhiều việc hợp điều biệt nhiên ngoài nhanh hiểu biểu',
  'değiştir oluştur ulaş geliş yapılmış gelmektedir ektedir ıldı iyordu',
  ' характер практи культу використ даже розвит алась',
  ' ایران اطلاعات',
  '.:.:.:.:.:.:.:.:',
  // Punctuation.
  '!!! ??? ... --- ***',
  '"quoted" (parens) [brackets] {braces}',
  '¿Qué? ¡Hola! «guillemets» „Anführung"',
];

const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** Code point ranges stable since Unicode ≤ 6 (random characters are drawn from these). */
const RANGES: readonly [number, number][] = [
  [0x20, 0x7e],
  [0xa0, 0x24f],
  [0x370, 0x3ff],
  [0x400, 0x4ff],
  [0x5d0, 0x5ea],
  [0x621, 0x64a],
  [0x905, 0x939],
  [0x3041, 0x3096],
  [0x4e00, 0x9fa5],
  [0xac00, 0xd7a3],
  [0x1f600, 0x1f64f],
  [0x2000, 0x206f],
];

export { mulberry32 } from '../random';

/**
 * The parity corpus: every fragment alone, the prompts, long words, `storyLines` (TinyStories text),
 * then random mixes until `count` strings. Strings containing "<|" are kept: callers decide whether
 * special tokens are allowed.
 */
export function buildCorpus(storyLines: readonly string[], count = 600, seed = 1234): string[] {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
  const randomWord = (n: number) => Array.from({ length: n }, () => pick([...LETTERS])).join('');
  const randomChars = (n: number) => {
    let s = '';
    for (let i = 0; i < n; i++) {
      const [lo, hi] = pick(RANGES);
      s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
    }
    return s;
  };
  const out: string[] = [...FRAGMENTS, ...META_PROMPTS];
  out.push(
    'a'.repeat(500),
    randomWord(500),
    'ab'.repeat(250),
    'supercalifragilistic'.repeat(25),
    ' ' + randomWord(500),
    '9'.repeat(500),
    '!'.repeat(300),
    ' '.repeat(1000),
    '\n'.repeat(100),
    ' \t'.repeat(200),
    '😀'.repeat(100),
    'д'.repeat(400),
    '你'.repeat(300),
  );
  for (const line of storyLines) if (line.trim()) out.push(line);
  const seps = ['', ' ', '  ', '\n', '\n\n', '\t', '\r\n', ' \n'];
  while (out.length < count) {
    const parts: string[] = [];
    const k = 1 + Math.floor(rand() * 6);
    for (let i = 0; i < k; i++) {
      const r = rand();
      if (r < 0.45) parts.push(pick(FRAGMENTS));
      else if (r < 0.6) parts.push(randomChars(1 + Math.floor(rand() * 30)));
      else if (r < 0.75 && storyLines.length) parts.push(pick(storyLines));
      else if (r < 0.85) parts.push(randomWord(1 + Math.floor(rand() * 40)));
      else parts.push(String(Math.floor(rand() * 1e9) / (rand() < 0.5 ? 1 : 1000)));
    }
    let s = parts[0];
    for (let i = 1; i < parts.length; i++) s += pick(seps) + parts[i];
    out.push(s);
  }
  return out;
}
