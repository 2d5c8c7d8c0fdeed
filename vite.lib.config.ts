import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// Library build: dist/qwen-webgpu.js (createEngine + types) and dist/qwen-chat.js (registers <qwen-chat>), ES
// modules that bring their worker along as a separate file; servable by any static server.
export default defineConfig({
  // Every URL the build writes (the worker's, above all) is relative to the module that asks for it, so dist/ works
  // from any sub-path or CDN folder, not only from a site root.
  base: './',
  publicDir: false,
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    outDir: resolve(import.meta.dirname, 'dist'),
    // The library builds first and starts from an empty dist/ (stale hashed chunks would ship in the package).
    emptyOutDir: true,
    lib: {
      entry: { 'qwen-webgpu': resolve(import.meta.dirname, 'src/index.ts'), 'qwen-chat': resolve(import.meta.dirname, 'src/element/qwen-chat.ts') },
      formats: ['es'],
    },
  },
});
