#!/usr/bin/env node
// Launcher: the CLI is TypeScript run through tsx's loader, so the package needs no build step.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/node/cli.ts');
await runCli(process.argv.slice(2));
