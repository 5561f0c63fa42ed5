/**
 * The tokenizer built from real GGUF files through the project's reader: the TinyStories demo model
 * (real Llama 3 vocabulary) and a vocab-only file written by writeGguf.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { llama3VocabKvs } from '../../../scripts/fixtures/llama3-vocab';
import { readGguf } from '../gguf/reader';
import { writeGguf } from '../gguf/writer';
import { MemorySource } from '../source';
import { Llama3Tokenizer } from './index';
import { DEMO_MODEL_PATH, TINYSTORIES_EXCERPT } from '../../node/paths';

const DEMO = DEMO_MODEL_PATH;

describe('Llama3Tokenizer.fromGguf on real files', () => {
  it('tokenizes like Llama 3 with the demo model’s vocabulary', async () => {
    const file = await readGguf(new MemorySource(readFileSync(DEMO), 'demo'));
    const tok = Llama3Tokenizer.fromGguf(file.metadata);
    expect(tok.vocabSize).toBe(128256);
    expect(tok.encode('Once upon a time')).toEqual([12805, 5304, 264, 892]);
    expect(tok.encode('Once upon a time', { bos: true })).toEqual([128000, 12805, 5304, 264, 892]);
    expect([tok.bosId, tok.eosId]).toEqual([128000, 128001]);
    expect(tok.stopIds.has(128001)).toBe(true);
    // MODEL.md's greedy continuation, decoded: the ids from llama.cpp read back as the story.
    const greedy = [11, 1070, 574, 264, 2697, 3828, 7086, 48390, 13];
    expect(tok.decode(greedy)).toBe(', there was a little girl named Lily.');
  });

  it('a vocab-only GGUF read back through readGguf gives the same tokenizer as its KVs', async () => {
    const kvs = llama3VocabKvs({ chatTemplate: true });
    const file = await readGguf(new MemorySource(writeGguf(kvs, []), 'vocab.gguf'));
    const fromFile = Llama3Tokenizer.fromGguf(file.metadata);
    const fromKvs = Llama3Tokenizer.fromGguf(new Map(kvs.map((kv) => [kv.key, kv.value])));
    const text = readFileSync(TINYSTORIES_EXCERPT, 'utf8').slice(0, 20000);
    expect(fromFile.encode(text)).toEqual(fromKvs.encode(text));
    expect(fromFile.chatTemplate).toBe(fromKvs.chatTemplate);
    expect(fromFile.encode('<|eot_id|>', { allowSpecial: true })).toEqual([128009]);
  });
});
