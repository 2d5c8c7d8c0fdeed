import { defineConfig, type Connect, type Plugin } from 'vite';
import { resolve } from 'node:path';

// `npm run demo` serves demo/ (chat page, embed example, kernel benchmarks) with public/ (the bundled tiny model) at the root.
// `npm run build` builds the library (vite.lib.config.ts) into dist/.
// The bench page is served cross-origin isolated (COOP + COEP), so ONNX Runtime Web's wasm EP, the peer row, can
// run multi-threaded (SharedArrayBuffer) like it would for a user who measures it fairly. The chat pages stay as
// they are: isolation would make every cross-origin model download need CORP or CORS headers.
export const ISOLATION_HEADERS = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
/**
 * The page itself and what it loads (a worker's script must carry COEP too, or an isolated page may not start it:
 * ORT's wasm threads are such workers), told apart by the Referer of the page's requests.
 */
export function isBenchRequest(path: string, referer: string | undefined): boolean {
  const bench = /\/bench(\.html)?(\?|$)/;
  return bench.test(path) || (referer !== undefined && bench.test(new URL(referer).pathname));
}

function isolateBenchPage(): Plugin {
  const middleware: Connect.NextHandleFunction = (req, res, next) => {
    if (isBenchRequest(req.url ?? '', req.headers.referer)) {
      for (const [k, v] of Object.entries(ISOLATION_HEADERS)) res.setHeader(k, v);
    }
    next();
  };
  return {
    name: 'isolate-bench-page',
    configureServer: (server) => { server.middlewares.use(middleware); },
    configurePreviewServer: (server) => { server.middlewares.use(middleware); },
  };
}

export default defineConfig({
  plugins: [isolateBenchPage()],
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
