// Shared by the browser tests: Debian Chromium with SwiftShader WebGPU, and what their static servers need.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless Chromium with WebGPU on SwiftShader; the networking flags keep it off this machine's closed network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--enable-unsafe-webgpu', '--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--use-webgpu-adapter=swiftshader'],
  });
}

export const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.jinja': 'text/plain',
};

/** The file under `root` that the request path `rel` names (index.html for a folder): 403 outside root, 404 missing. */
export function siteFile(root: string, rel: string): string | 403 | 404 {
  let file = normalize(join(root, rel));
  if (!file.startsWith(root)) return 403;
  if (existsSync(file) && statSync(file).isDirectory()) file = join(file, 'index.html');
  return existsSync(file) ? file : 404;
}

/** The byte range a `Range: bytes=a-b` header asks of a file of `size` bytes, or null for a whole-file request. */
export function requestedRange(range: string | undefined, size: number): { start: number; end: number } | null {
  const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
  if (!m) return null;
  return { start: Number(m[1]), end: m[2] ? Math.min(Number(m[2]), size - 1) : size - 1 };
}

/**
 * Builds what a browser or package test serves: `vite build` (dist/demo) for 'demo', `npm run build` (library, types,
 * CLI, demo) for 'all'. `npm test` runs the full build once before these files and sets QWEN_WEBGPU_TEST_BUILT, so
 * each file skips it; a file run on its own builds for itself.
 */
export function buildForTests(root: string, what: 'demo' | 'all'): void {
  if (process.env.QWEN_WEBGPU_TEST_BUILT === '1') return;
  if (what === 'demo') execFileSync('npx', ['vite', 'build', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
  else execFileSync('npm', ['run', 'build', '--silent', '--', '--logLevel', 'warn'], { cwd: root, stdio: 'inherit' });
}
