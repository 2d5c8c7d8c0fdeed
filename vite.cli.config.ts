import { defineConfig } from 'vite';
import { resolve } from 'node:path';

// The CLI as compiled JavaScript for the npm package (dist/node/cli.js): Node 20, dependencies left as imports
// (`webgpu` is an optional peer), the WGSL texts bundled in (the package ships no shaders/ folder).
export default defineConfig({
  publicDir: false,
  resolve: {
    alias: [{ find: /^\.\/shaders-node\.ts$/, replacement: resolve(import.meta.dirname, 'src/gpu/shaders-vite.ts') }],
  },
  build: {
    target: 'node20',
    ssr: resolve(import.meta.dirname, 'src/node/cli.ts'),
    outDir: resolve(import.meta.dirname, 'dist/node'),
    emptyOutDir: true,
    rollupOptions: { output: { entryFileNames: 'cli.js' } },
  },
});
