// Lets Node load `import text from './x.wgsl?raw'` the way Vite does: the file's text as the
// default export. Used by the CLI and scripts (`node --import tsx --import ./scripts/raw-loader.mjs`).
import { register } from 'node:module';

register(new URL('./raw-loader-hooks.mjs', import.meta.url));
