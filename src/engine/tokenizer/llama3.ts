/**
 * The Llama 3 tokenizer: byte-level BPE over a 128,256-token vocabulary (128,000 BPE tokens and 256
 * special ones), built from GGUF metadata or from a Hugging Face tokenizer.json.
 *
 * encode: split out special tokens (see below) → Llama 3 regex pre-tokenizer → per piece: UTF-8
 * bytes as GPT-2 alphabet characters → the whole piece if it is a vocabulary entry (tokenizer.json
 * `ignore_merges: true`; llama.cpp does the same for llama-bpe) → otherwise merges by rank.
 *
 * Special-token policy: control tokens (GGUF token_type 3; HF added tokens with `special: true`)
 * are matched in the text only with `{ allowSpecial: true }` (llama.cpp's `parse_special`);
 * otherwise "<|eot_id|>" typed by a user is ordinary text. User-defined tokens (type 4; HF added
 * tokens with `special: false`) are always matched, as llama.cpp and HF do. Llama 3 has none.
 *
 * Scope, candidly: only the Llama 3 pre-tokenizer is implemented; other gpt2-BPE vocabularies
 * (Qwen, DeepSeek, GPT-2 itself) use other regexes and are refused rather than tokenized wrongly.
 * Added-token flags lstrip/rstrip/single_word/normalized are not implemented (all false in Llama 3).
 */
import { EngineError } from '../errors';
import type { GgufValue } from '../gguf/types';
import { MAX_QUOTED_CHARS, quoteText, safeText, showValue } from '../safe-text';
import { bpeMerge, type MergeRules, PairTable } from './bpe';
import { BYTE_TO_CHAR, CHAR_TO_BYTE, toByteLevel } from './bytes';
import { LLAMA3_PATTERN, llama3Regex } from './pretokenize';
import { SpecialTokenMatcher } from './special-tokens';
import { StringTable } from './string-table';

/** llama.cpp token types (`llama_token_type`). */
export const TokenType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** GGUF `tokenizer.ggml.pre` values that name the Llama 3 pre-tokenizer. */
export const LLAMA3_PRE_NAMES: readonly string[] = ['llama-bpe', 'llama3', 'llama-v3'];

export interface EncodeOptions {
  /** Prepend <|begin_of_text|>. Default false. */
  bos?: boolean;
  /** Match control-token text (e.g. "<|eot_id|>") in the input as the token. Default false. */
  allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop control tokens (BOS, <|eot_id|>, ...) instead of writing their text. Default false. */
  skipSpecial?: boolean;
}

export interface StreamDecoder {
  /** Text completed by this token (possibly ''; a character split across tokens waits for its end). */
  push(id: number): string;
  /** What is left, with U+FFFD for an unfinished character. */
  flush(): string;
}

/** What both loaders hand to the constructor. */
interface VocabSpec {
  tokens: string[];
  types: Int32Array;
  /** "a b" strings or [a, b] pairs, checked while they are indexed. */
  merges: readonly unknown[];
  bosId: number | undefined;
  eosId: number | undefined;
  eotId: number | undefined;
  eomId: number | undefined;
  chatTemplate: string | undefined;
  chatTemplateSource: string | undefined;
  origin: string;
}

/** Piece cache bounds: entries (cleared when full) and the longest piece worth keeping. */
const CACHE_LIMIT = 1 << 16;
const CACHE_MAX_PIECE = 64;

function bad(message: string): EngineError {
  return new EngineError('bad-tokenizer', message);
}

export class Llama3Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly eotId: number | undefined;
  readonly stopIds: ReadonlySet<number>;
  readonly chatTemplate: string | undefined;
  /** Where chatTemplate came from, for messages ("GGUF key tokenizer.chat_template"). */
  readonly chatTemplateSource: string | undefined;

  private readonly tokens: string[];
  private readonly types: Int32Array;
  private readonly vocab: StringTable;
  private readonly rules: MergeRules;
  /** Token id of each byte's alphabet character. */
  private readonly byteIds: Int32Array;
  /** Pre-token piece → ids. Natural text repeats its words, so most pieces hit. */
  private readonly cache = new Map<string, number[]>();
  /** Decoded bytes per token id, filled lazily. */
  private readonly bytesOf: (Uint8Array | undefined)[];
  /** Matchers for special-token text, built once: user-defined only, and user-defined + control. */
  private readonly plainSpecials: SpecialTokenMatcher | undefined;
  private readonly allSpecials: SpecialTokenMatcher | undefined;
  /** The pre-tokenizer regex (global; encode resets its lastIndex). */
  private readonly splitter = llama3Regex();

  private constructor(spec: VocabSpec) {
    const { tokens, types, merges, origin } = spec;
    this.tokens = tokens;
    this.types = types;
    this.vocabSize = tokens.length;
    this.vocab = new StringTable(tokens);

    this.byteIds = new Int32Array(256);
    for (let b = 0; b < 256; b++) {
      const id = this.vocab.get(BYTE_TO_CHAR[b]);
      if (id < 0) {
        throw bad(
          `${origin}: the vocabulary has no token for byte 0x${b.toString(16).padStart(2, '0')} ` +
            `("${BYTE_TO_CHAR[b]}"), so it is not a byte-level BPE vocabulary. Use a Llama 3 model's tokenizer.`,
        );
      }
      this.byteIds[b] = id;
    }

    const pairs = new PairTable(merges.length);
    const result = new Int32Array(merges.length);
    const vocab = this.vocab;
    for (let r = 0; r < merges.length; r++) {
      const m = merges[r];
      let ia: number;
      let ib: number;
      let im: number;
      if (typeof m === 'string') {
        // Looked up in place (no substrings): this loop runs 280k times at every load.
        const sp = m.indexOf(' ');
        if (sp <= 0 || sp >= m.length - 1 || m.indexOf(' ', sp + 1) >= 0) throw badMerge(m, r, origin);
        ia = vocab.getRange(m, 0, sp);
        ib = vocab.getRange(m, sp + 1, m.length);
        im = vocab.getRange(m, 0, m.length, sp);
      } else if (isPair(m)) {
        ia = vocab.get(m[0]);
        ib = vocab.get(m[1]);
        im = vocab.get(m[0] + m[1]);
      } else {
        throw badMerge(m, r, origin);
      }
      if (ia < 0 || ib < 0 || im < 0) {
        const [a, b] = typeof m === 'string' ? m.split(' ') : (m as [string, string]);
        const missing = ia < 0 ? a : ib < 0 ? b : a + b;
        throw bad(
          `${origin}: merge #${r} ${quoteText(`${a} ${b}`)} uses ${quoteText(missing)}, which is not in the vocabulary. ` +
            'The merges do not belong to these tokens: re-export the tokenizer.',
        );
      }
      result[r] = im;
      pairs.set(ia, ib, r);
    }
    this.rules = { pairs, result };

    const id = (what: string, v: number | undefined): number | undefined => {
      if (v === undefined) return undefined;
      if (!Number.isInteger(v) || v < 0 || v >= tokens.length) {
        throw bad(`${origin}: ${what} id ${v} is outside the vocabulary (0..${tokens.length - 1}).`);
      }
      return v;
    };
    const byText = (text: string) => {
      const i = this.vocab.get(text);
      return i < 0 ? undefined : i;
    };
    const bos = id('BOS', spec.bosId ?? byText('<|begin_of_text|>'));
    const eos = id('EOS', spec.eosId ?? byText('<|end_of_text|>'));
    if (bos === undefined || eos === undefined) {
      throw bad(
        `${origin}: no ${bos === undefined ? 'BOS' : 'EOS'} token id and no Llama 3 token to infer it from.`,
      );
    }
    this.bosId = bos;
    this.eosId = eos;
    this.eotId = id('EOT', spec.eotId ?? byText('<|eot_id|>'));
    const eom = id('EOM', spec.eomId ?? byText('<|eom_id|>'));
    // <|end_of_text|> stops too: instruct files set eos = <|eot_id|>, yet the model may still emit it.
    const stops = [eos, this.eotId, eom, byText('<|end_of_text|>')];
    this.stopIds = new Set(stops.filter((s): s is number => s !== undefined));
    this.chatTemplate = spec.chatTemplate;
    this.chatTemplateSource = spec.chatTemplate === undefined ? undefined : spec.chatTemplateSource;

    this.bytesOf = new Array(tokens.length);
    const userDefined: string[] = [];
    const control: string[] = [];
    for (let i = 0; i < tokens.length; i++) {
      const t = types[i];
      if (tokens[i].length === 0) continue;
      if (t === TokenType.USER_DEFINED) userDefined.push(tokens[i]);
      else if (t === TokenType.CONTROL || t === TokenType.UNKNOWN) control.push(tokens[i]);
    }
    const idOf = (text: string) => this.vocab.get(text);
    this.plainSpecials = userDefined.length > 0 ? new SpecialTokenMatcher(userDefined, idOf) : undefined;
    this.allSpecials =
      userDefined.length + control.length > 0
        ? new SpecialTokenMatcher(userDefined.concat(control), idOf)
        : undefined;
  }

  /** From GGUF metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`). */
  static fromGguf(metadata: Map<string, GgufValue>): Llama3Tokenizer {
    const origin = 'GGUF tokenizer';
    const model = metadata.get('tokenizer.ggml.model');
    if (model !== 'gpt2') {
      const hint = model === 'llama' ? ' (SentencePiece, used by Llama 1/2)' : '';
      throw bad(
        `${origin}: tokenizer.ggml.model is ${showValue(model ?? null)}${hint}; this engine runs Llama 3, ` +
          'whose GGUF files say "gpt2" (byte-level BPE). Load a Llama 3 model.',
      );
    }
    const pre = metadata.get('tokenizer.ggml.pre');
    // Absent `pre` (or "default"): files converted before llama.cpp added the field (spring 2024).
    // A gpt2 vocabulary in such a file is almost always Llama 3, so we use its regex (llama.cpp
    // falls back to GPT-2's regex there and warns that output will be degraded).
    if (pre !== undefined && pre !== 'default' && !LLAMA3_PRE_NAMES.includes(pre as string)) {
      throw bad(
        `${origin}: tokenizer.ggml.pre is ${showValue(pre)}, a pre-tokenizer this engine does not ` +
          `implement (it knows ${LLAMA3_PRE_NAMES.join(', ')}). Load a Llama 3 model.`,
      );
    }
    const tokens = metadata.get('tokenizer.ggml.tokens');
    if (!Array.isArray(tokens) || tokens.length === 0 || tokens.some((t) => typeof t !== 'string')) {
      throw bad(`${origin}: tokenizer.ggml.tokens is missing or not an array of strings.`);
    }
    const rawTypes = metadata.get('tokenizer.ggml.token_type');
    if (!Array.isArray(rawTypes) || rawTypes.length !== tokens.length) {
      throw bad(
        `${origin}: tokenizer.ggml.token_type is missing or has ${Array.isArray(rawTypes) ? rawTypes.length : 0} ` +
          `entries for ${tokens.length} tokens.`,
      );
    }
    const types = new Int32Array(rawTypes.length);
    for (let i = 0; i < rawTypes.length; i++) {
      const t = rawTypes[i];
      if (typeof t !== 'number' || !Number.isInteger(t)) {
        throw bad(`${origin}: tokenizer.ggml.token_type[${i}] is ${showValue(t)}, not an integer.`);
      }
      types[i] = t;
    }
    const rawMerges = metadata.get('tokenizer.ggml.merges');
    if (!Array.isArray(rawMerges) || rawMerges.length === 0) {
      throw bad(`${origin}: tokenizer.ggml.merges is missing; a BPE vocabulary needs its merge list.`);
    }
    const merges = rawMerges;
    const num = (key: string): number | undefined => {
      const v = metadata.get(key);
      if (v === undefined) return undefined;
      if (typeof v === 'number') return v;
      if (typeof v === 'bigint') return Number(v);
      throw bad(`${origin}: ${key} is ${showValue(v)}, not an integer.`);
    };
    const template = metadata.get('tokenizer.chat_template');
    return new Llama3Tokenizer({
      tokens: tokens as string[],
      types,
      merges,
      bosId: num('tokenizer.ggml.bos_token_id'),
      eosId: num('tokenizer.ggml.eos_token_id'),
      eotId: num('tokenizer.ggml.eot_token_id'),
      eomId: num('tokenizer.ggml.eom_token_id'),
      chatTemplate: typeof template === 'string' ? template : undefined,
      chatTemplateSource: 'GGUF key tokenizer.chat_template',
      origin,
    });
  }

  /**
   * From a Hugging Face tokenizer.json (text or parsed) and, optionally, its tokenizer_config.json
   * (chat template, bos/eos token names).
   */
  static fromHfJson(tokenizerJson: string | object, tokenizerConfigJson?: string | object): Llama3Tokenizer {
    const origin = 'tokenizer.json';
    const json = parseJson(tokenizerJson, origin);
    const config =
      tokenizerConfigJson === undefined ? {} : parseJson(tokenizerConfigJson, 'tokenizer_config.json');
    const model = json.model as Record<string, unknown> | undefined;
    if (model?.type !== 'BPE') {
      throw bad(
        `${origin}: model.type is ${showValue(model?.type ?? null)}; Llama 3 is "BPE". Use a Llama 3 tokenizer.json.`,
      );
    }
    checkHfPipeline(json, origin);
    const vocab = model.vocab as Record<string, number> | undefined;
    if (!vocab || typeof vocab !== 'object' || Array.isArray(vocab)) {
      throw bad(`${origin}: model.vocab is missing or not an object of token → id.`);
    }
    const added = Array.isArray(json.added_tokens) ? (json.added_tokens as Record<string, unknown>[]) : [];
    let size = 0;
    for (const v of Object.values(vocab)) size = Math.max(size, v + 1);
    for (const a of added) size = Math.max(size, (a.id as number) + 1);
    if (!Number.isInteger(size) || size <= 0 || size > 1 << 24) {
      throw bad(`${origin}: token ids are not small non-negative integers (largest + 1 = ${size}).`);
    }
    const tokens: string[] = new Array(size);
    const types = new Int32Array(size).fill(TokenType.NORMAL);
    for (const [t, i] of Object.entries(vocab)) {
      if (!Number.isInteger(i) || i < 0)
        throw bad(`${origin}: model.vocab[${quoteText(t)}] = ${showValue(i)} is not a token id.`);
      tokens[i] = t;
    }
    for (const a of added) {
      const i = a.id as number;
      if (!Number.isInteger(i) || i < 0 || typeof a.content !== 'string') {
        throw bad(`${origin}: added token ${showValue(a)} has no integer id or string content.`);
      }
      tokens[i] = a.content;
      types[i] = a.special ? TokenType.CONTROL : TokenType.USER_DEFINED;
    }
    for (let i = 0; i < size; i++) {
      if (tokens[i] === undefined) throw bad(`${origin}: no token has id ${i} (ids must be 0..${size - 1}).`);
    }
    if (!Array.isArray(model.merges) || model.merges.length === 0) {
      throw bad(`${origin}: model.merges is missing; a BPE vocabulary needs its merge list.`);
    }
    const merges = model.merges as unknown[];
    const name = (v: unknown): string | undefined =>
      typeof v === 'string'
        ? v
        : v && typeof v === 'object'
          ? ((v as { content?: string }).content ?? undefined)
          : undefined;
    const idOf = (v: unknown): number | undefined => {
      const n = name(v);
      if (n === undefined) return undefined;
      const i = tokens.indexOf(n);
      if (i < 0) throw bad(`tokenizer_config.json: token ${quoteText(n)} is not in the vocabulary.`);
      return i;
    };
    return new Llama3Tokenizer({
      tokens,
      types,
      merges,
      bosId: idOf(config.bos_token),
      eosId: idOf(config.eos_token),
      eotId: undefined,
      eomId: undefined,
      chatTemplate: pickTemplate(config.chat_template),
      chatTemplateSource: 'tokenizer_config.json chat_template',
      origin,
    });
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const out: number[] = [];
    if (opts.bos) out.push(this.bosId);
    const specials = opts.allowSpecial ? this.allSpecials : this.plainSpecials;
    if (!specials) {
      this.encodeOrdinary(text, out);
      return out;
    }
    // Leftmost match, longest at that position: what the alternation RegExp this replaced did.
    let last = 0;
    for (let pos = 0; pos < text.length; ) {
      const length = specials.longestAt(text, pos);
      if (length === 0) {
        pos++;
        continue;
      }
      if (pos > last) this.encodeOrdinary(text.slice(last, pos), out);
      out.push(specials.matchedId);
      pos += length;
      last = pos;
    }
    if (last < text.length) this.encodeOrdinary(text.slice(last), out);
    return out;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of ids) {
      const b = this.tokenBytes(id, opts.skipSpecial ?? false);
      parts.push(b);
      total += b.length;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return utf8Decoder().decode(all);
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.tokens[id];
  }

  streamDecoder(opts: DecodeOptions = {}): StreamDecoder {
    // TextDecoder in stream mode holds back an incomplete UTF-8 sequence until its last byte comes
    // (or `flush`), and replaces invalid bytes the same way a one-shot decode does.
    const dec = utf8Decoder();
    const skip = opts.skipSpecial ?? false;
    return {
      push: (id: number) => dec.decode(this.tokenBytes(id, skip), { stream: true }),
      flush: () => dec.decode(),
    };
  }

  private checkId(id: number) {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new EngineError(
        'bad-argument',
        `token id ${id} is outside the vocabulary (0..${this.vocabSize - 1}).`,
      );
    }
  }

  private static readonly EMPTY = new Uint8Array(0);

  /** The bytes a token stands for (control tokens: their text, or nothing with skipSpecial). */
  private tokenBytes(id: number, skipSpecial: boolean): Uint8Array {
    this.checkId(id);
    const t = this.types[id];
    if (skipSpecial && (t === TokenType.CONTROL || t === TokenType.UNKNOWN)) return Llama3Tokenizer.EMPTY;
    let b = this.bytesOf[id];
    if (b === undefined) {
      const text = this.tokens[id];
      if (t === TokenType.NORMAL || t === TokenType.BYTE || t === TokenType.UNUSED) {
        b = fromByteLevel(text);
      } else {
        // Special and user-defined tokens are stored as plain text, not in the byte alphabet.
        b = new TextEncoder().encode(text);
      }
      this.bytesOf[id] = b;
    }
    return b;
  }

  /** Text with no special tokens in it: pre-tokenize, then BPE each piece (cached). */
  private encodeOrdinary(text: string, out: number[]) {
    // The splitLlama3 loop, inlined: this is the hot path and a callback per piece costs ~15%.
    const re = this.splitter;
    re.lastIndex = 0;
    let last = 0;
    for (;;) {
      const m = re.exec(text);
      const start = m === null ? text.length : m.index;
      if (start > last) this.encodeCached(text.slice(last, start), out); // unmatched gap (never, in practice)
      if (m === null) break;
      this.encodeCached(m[0], out);
      last = start + m[0].length;
    }
  }

  private encodeCached(piece: string, out: number[]) {
    let ids = this.cache.get(piece);
    if (ids === undefined) {
      ids = this.encodePiece(piece);
      // Long pieces (whitespace runs, 500-letter "words") rarely repeat: not worth their memory.
      if (piece.length <= CACHE_MAX_PIECE) {
        if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
        this.cache.set(piece, ids);
      }
    }
    for (let i = 0; i < ids.length; i++) out.push(ids[i]);
  }

  private encodePiece(piece: string): number[] {
    const bl = toByteLevel(piece);
    // ignore_merges: a piece that is itself a vocabulary entry is that token, whatever the merges
    // would have built. This is what tokenizer.json asks for and what llama.cpp does for Llama 3.
    const whole = this.vocab.get(bl);
    if (whole >= 0 && this.types[whole] === TokenType.NORMAL) return [whole];
    const symbols = new Int32Array(bl.length);
    for (let i = 0; i < bl.length; i++) symbols[i] = this.byteIds[CHAR_TO_BYTE.get(bl.charCodeAt(i))!];
    return bpeMerge(symbols, this.rules);
  }
}

function utf8Decoder(): TextDecoder {
  // ignoreBOM: a leading U+FEFF is text the model produced, not a byte-order mark to strip.
  return new TextDecoder('utf-8', { ignoreBOM: true });
}

/** Bytes of a byte-level token string; a character outside the alphabet stands for its own UTF-8. */
function fromByteLevel(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const b = ch.length === 1 ? CHAR_TO_BYTE.get(ch.charCodeAt(0)) : undefined;
    if (b !== undefined) out.push(b);
    else for (const x of new TextEncoder().encode(ch)) out.push(x);
  }
  return Uint8Array.from(out);
}

/** A merge in tokenizer.json's newer form: ["a", "b"]. */
function isPair(m: unknown): m is [string, string] {
  return (
    Array.isArray(m) &&
    m.length === 2 &&
    typeof m[0] === 'string' &&
    typeof m[1] === 'string' &&
    !!m[0] &&
    !!m[1]
  );
}

function badMerge(m: unknown, i: number, origin: string): EngineError {
  return bad(
    `${origin}: merge #${i} is ${showValue(m)}; each merge must be two non-empty tokens, "left right" ` +
      '(or ["left", "right"]). The file is damaged or not a BPE tokenizer.',
  );
}

function parseJson(v: string | object, origin: string): Record<string, unknown> {
  if (typeof v !== 'string') return v as Record<string, unknown>;
  try {
    const parsed = JSON.parse(v);
    if (parsed && typeof parsed === 'object') return parsed;
  } catch (e) {
    throw new EngineError(
      'bad-tokenizer',
      `${origin} is not valid JSON (${safeText((e as Error).message, MAX_QUOTED_CHARS)}).`,
      {
        cause: e,
      },
    );
  }
  throw bad(`${origin} is not a JSON object.`);
}

/** Refuse tokenizer.json pipelines that would give other ids than Llama 3's. */
function checkHfPipeline(json: Record<string, unknown>, origin: string) {
  if (json.normalizer) {
    throw bad(
      `${origin}: has a normalizer (${showValue((json.normalizer as { type?: string }).type)}); Llama 3 has none.`,
    );
  }
  const pre = json.pre_tokenizer as Record<string, unknown> | null | undefined;
  const steps =
    pre?.type === 'Sequence' ? ((pre.pretokenizers as Record<string, unknown>[]) ?? []) : pre ? [pre] : [];
  const split = steps.find((s) => s.type === 'Split');
  const pattern = (split?.pattern as { Regex?: string } | undefined)?.Regex;
  const byteLevel = steps.find((s) => s.type === 'ByteLevel');
  if (pattern !== LLAMA3_PATTERN || !byteLevel || byteLevel.use_regex) {
    throw bad(
      `${origin}: the pre_tokenizer is not Llama 3's (a Split on the Llama 3 regex, then ByteLevel without ` +
        `its own regex); found ${showValue(pre, 300)}. Use a Llama 3 tokenizer.json.`,
    );
  }
  const model = json.model as Record<string, unknown>;
  if (model.ignore_merges === false) {
    throw bad(`${origin}: model.ignore_merges is false; Llama 3 tokenizers set it to true.`);
  }
}

/** chat_template is a string, or a list of { name, template } (the "default" one is used). */
function pickTemplate(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t as { name?: string; template?: string }[];
    return (named.find((x) => x.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}
