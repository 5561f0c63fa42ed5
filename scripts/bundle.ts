/**
 * `npm run bundle`: the CLI and the bench as ONE ES module, dist-node/llama3.mjs, for a GPU machine
 * that has Node and Dawn but no node_modules (see docs/bench.md). `webgpu` (Dawn's native addon)
 * and `node-llama-cpp` (llama.cpp's, imported only by `bench --compare llama.cpp`; packed by
 * scripts/pack-llamacpp.sh) stay external; WGSL files imported as `x.wgsl?raw` are inlined as text.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** `import src from './x.wgsl?raw'` → the file's text, as Vite does. */
const wgslRaw: Plugin = {
  name: 'wgsl-raw',
  setup(b) {
    b.onResolve({ filter: /\.wgsl\?raw$/ }, (args) => ({
      path: resolve(args.resolveDir, args.path.slice(0, -'?raw'.length)),
      namespace: 'wgsl-raw',
    }));
    b.onLoad({ filter: /.*/, namespace: 'wgsl-raw' }, async (args) => ({
      contents: await readFile(args.path, 'utf8'),
      loader: 'text',
    }));
  },
};

const outfile = join(root, 'dist-node', 'llama3.mjs');
const result = await build({
  entryPoints: [join(root, 'scripts', 'bundle-entry.ts')],
  outfile,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['webgpu', 'node-llama-cpp'],
  plugins: [wgslRaw],
  // CommonJS dependencies bundled into ESM may call require() for Node built-ins.
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  metafile: true,
  logLevel: 'warning',
});
const bytes = Object.values(result.metafile.outputs).reduce((a, o) => a + o.bytes, 0);
console.log(`${outfile}: ${(bytes / 1e6).toFixed(2)} MB`);
