import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// `npm run demo` serves demo/ (chat page, embed example, kernel benchmarks) with public/ (the bundled tiny model) at the root.
// `npm run build` builds the library (vite.lib.config.ts) into dist/.
export default defineConfig({
  root: 'demo',
  // Relative URLs in the built pages: dist/demo/ works from any sub-path.
  base: './',
  // 'mpa': a missing file is a 404, not index.html (the model loader probes optional files).
  appType: 'mpa',
  publicDir: resolve(import.meta.dirname, 'public'),
  server: { fs: { allow: [resolve(import.meta.dirname)] } },
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    outDir: resolve(import.meta.dirname, 'dist/demo'),
    emptyOutDir: true,
    rollupOptions: {
      input: {
        index: resolve(import.meta.dirname, 'demo/index.html'),
        embed: resolve(import.meta.dirname, 'demo/embed.html'),
        bench: resolve(import.meta.dirname, 'demo/bench.html'),
      },
    },
  },
});
