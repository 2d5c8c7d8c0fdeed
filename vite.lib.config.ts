import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// Library build: dist/qwen-webgpu.js (createEngine + types) and dist/qwen-chat.js (registers <qwen-chat>), ES
// modules that bring their worker along as a separate file; servable by any static server.
export default defineConfig({
  publicDir: false,
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    outDir: resolve(import.meta.dirname, 'dist'),
    emptyOutDir: false,
    lib: {
      entry: { 'qwen-webgpu': resolve(import.meta.dirname, 'src/index.ts'), 'qwen-chat': resolve(import.meta.dirname, 'src/element/qwen-chat.ts') },
      formats: ['es'],
    },
  },
});
