/**
 * Where tests and scripts find their data. Everything is inside the repository (a clone with nothing
 * beside it runs every test): the demo model ships with the app (public/models/), the TinyStories
 * excerpt with the tokenizer tests (src/engine/tokenizer/testdata/, licence note beside it).
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DEMO_MODEL_PATH = resolve(REPO_ROOT, 'public/models/tinystories-llama3-q4_0.gguf');
/** The first 250 stories of TinyStories' validation split (226 KB; see SOURCE.md beside it). */
export const TINYSTORIES_EXCERPT = resolve(
  REPO_ROOT,
  'src/engine/tokenizer/testdata/tinystories-v1-valid-excerpt.txt',
);
export const FIXTURES_DIR = resolve(REPO_ROOT, 'fixtures');
