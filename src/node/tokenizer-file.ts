/**
 * `--tokenizer-path FILE`: a Hugging Face tokenizer.json; a tokenizer_config.json in the same
 * folder, when present, supplies the chat template and the BOS/EOS token names.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { EngineError } from '../engine/errors';
import { Llama3Tokenizer } from '../engine/tokenizer';

export async function loadTokenizerFile(path: string): Promise<Llama3Tokenizer> {
  let json: string;
  try {
    json = await readFile(path, 'utf8');
  } catch (e) {
    throw new EngineError('bad-argument', `cannot read the tokenizer ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  let config: string | undefined;
  try {
    config = await readFile(join(dirname(path), 'tokenizer_config.json'), 'utf8');
  } catch {
    config = undefined; // optional
  }
  return Llama3Tokenizer.fromHfJson(json, config);
}
