import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { serviceWorker } from './src/sw/vite-plugin.js';

export default defineConfig({
  // serviceWorker(): writes dist/sw.js (the offline app shell) after `vite build`; never in dev.
  plugins: [react(), serviceWorker()],
  worker: { format: 'es' },
  server: { port: 5173, strictPort: false },
  build: { target: 'es2022' },
});
