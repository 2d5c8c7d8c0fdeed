// Registers every shaders/*.wgsl for Node (CLI, tests).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { registerShaders } from '../gpu/shaders.ts';

const dir = fileURLToPath(new URL('../../shaders/', import.meta.url));
registerShaders(
  Object.fromEntries(
    readdirSync(dir)
      .filter((f) => f.endsWith('.wgsl'))
      .map((f) => [f.slice(0, -5), readFileSync(dir + f, 'utf8')]),
  ),
);
