/**
 * Where tests and scripts find data outside src/. The demo model ships with the app
 * (public/models/); the TinyStories text lives in ../shared beside the checkout (as in CI, which
 * clones the project next to a copy of shared/).
 */
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const SHARED_DIR = process.env.LLAMA3_WEBGPU_SHARED_DIR ?? resolve(REPO_ROOT, '../shared');
export const DEMO_MODEL_PATH = resolve(REPO_ROOT, 'public/models/tinystories-llama3-q4_0.gguf');
export const TINYSTORIES_DIR = resolve(SHARED_DIR, 'data/tinystories');
export const TINYSTORIES_VALID = resolve(TINYSTORIES_DIR, 'tinystories-v1-valid.txt');
export const TINYSTORIES_TRAIN = resolve(TINYSTORIES_DIR, 'tinystories-v1-train.txt');
export const FIXTURES_DIR = resolve(REPO_ROOT, 'fixtures');
