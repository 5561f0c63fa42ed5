import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';
import { CSP_HEADER, contentSecurityPolicy } from './src/csp.js';
import { serviceWorker } from './src/sw/vite-plugin.js';

export default defineConfig({
  // serviceWorker(): writes dist/sw.js (the offline app shell) after `vite build`; never in dev.
  // contentSecurityPolicy(): the CSP <meta> in the built index.html; never in dev (src/csp.ts).
  plugins: [react(), serviceWorker(), contentSecurityPolicy()],
  worker: { format: 'es' },
  server: { port: 5173, strictPort: false },
  // The same policy as a header, plus what a meta tag cannot say (frame-ancestors).
  preview: { headers: { 'Content-Security-Policy': CSP_HEADER } },
  build: { target: 'es2022' },
});
