#!/usr/bin/env node
// Launcher. In the npm package it runs the compiled CLI (dist/node/cli.js, from `npm run build`); in a checkout of
// the repository, where src/ is present and tsx is installed, it runs the TypeScript sources, so that the tests
// always exercise the code as it is now and never a stale build.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

// glibc's fastbins make a share of decode steps 3-5x slower in Node: while a GPU promise is pending the `webgpu`
// binding polls, the finalizers of its per-turn objects free ~10^5 small blocks, and the next large malloc (Dawn's
// first command block of a pass) consolidates them all (measured at 64 layers, see src/bench/model.ts). The
// tunable is read only at process start, so the commands that time or run many steps restart once with it.
const TUNABLE = 'glibc.malloc.mxfast=0';
const stepping = ['bench', 'generate'].includes(process.argv[2]);
if (process.platform === 'linux' && stepping && !(process.env.GLIBC_TUNABLES ?? '').includes('mxfast')) {
  const GLIBC_TUNABLES = [process.env.GLIBC_TUNABLES, TUNABLE].filter(Boolean).join(':');
  const r = spawnSync(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit', env: { ...process.env, GLIBC_TUNABLES },
  });
  if (r.error) throw r.error;
  process.exit(r.status ?? 1);
}

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
