#!/usr/bin/env node
// Launcher. In the npm package it runs the compiled CLI (dist/node/cli.js, from `npm run build`); in a checkout of
// the repository, where src/ is present and tsx is installed, it runs the TypeScript sources, so that the tests
// always exercise the code as it is now and never a stale build.
import { existsSync } from 'node:fs';

const source = new URL('../src/node/cli.ts', import.meta.url);
const compiled = new URL('../dist/node/cli.js', import.meta.url);

async function tsx() {
  try {
    return await import('tsx/esm/api');
  } catch {
    return undefined;
  }
}

let entry = compiled;
if (existsSync(source)) {
  const loader = await tsx();
  if (loader) { loader.register(); entry = source; }
}
if (!existsSync(entry)) {
  process.stderr.write('qwen-webgpu: the compiled CLI (dist/node/cli.js) is missing: run `npm run build` in the checkout\n');
  process.exit(1);
}
const { runCli } = await import(entry.href);
await runCli(process.argv.slice(2));
