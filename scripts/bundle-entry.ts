/**
 * Entry of the one-file bundle (dist-node/llama3.mjs, built by scripts/bundle.ts):
 *   node llama3.mjs bench [bench options]     → scripts/bench.ts
 *   node llama3.mjs <cli command> [options]   → the CLI (src/cli/main.ts)
 */
if (process.argv[2] === 'bench') {
  process.argv.splice(2, 1);
  await import('./bench');
} else {
  await import('../src/cli/main');
}

export {};
