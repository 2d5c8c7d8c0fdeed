import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// The demo pages live in demo/; public/ holds static assets (the bundled tiny model comes in a later issue).
export default defineConfig({
  root: 'demo',
  publicDir: resolve(__dirname, 'public'),
  server: { fs: { allow: [resolve(__dirname)] } },
  build: {
    outDir: resolve(__dirname, 'dist/demo'),
    emptyOutDir: true,
    rollupOptions: { input: { index: resolve(__dirname, 'demo/index.html') } },
  },
});
