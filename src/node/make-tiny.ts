// npm run make-tiny -- --recipe propc --out DIR [--seed N] [--hf] [--shards N]
// npm run make-tiny -- --all --out DIR            (every recipe into DIR/<recipe>)

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeTinyCheckpoint, TINY_RECIPES, type TinyRecipe } from '../format/tiny.ts';

const USAGE = `usage: make-tiny --recipe <${TINY_RECIPES.join('|')}> --out DIR [--seed N] [--hf] [--shards N]
       make-tiny --all --out DIR [--seed N] [--hf]`;

async function writeRecipe(recipe: TinyRecipe, dir: string, seed: number, hf: boolean, shards?: number): Promise<void> {
  const files = makeTinyCheckpoint(recipe, { seed, hf, shards });
  await mkdir(dir, { recursive: true });
  let bytes = 0;
  for (const [name, data] of files) {
    await writeFile(path.join(dir, name), data);
    bytes += data.byteLength;
  }
  console.log(`${recipe}: ${files.size} files, ${(bytes / 1048576).toFixed(2)} MiB → ${dir}`);
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      recipe: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' },
      all: { type: 'boolean' }, hf: { type: 'boolean' }, shards: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) { console.log(USAGE); return 0; }
  const seed = values.seed === undefined ? 0 : Number(values.seed);
  const shards = values.shards === undefined ? undefined : Number(values.shards);
  if (!values.out || (!values.all && !values.recipe) || !Number.isInteger(seed) || (shards !== undefined && !(shards >= 1))) {
    console.error(USAGE);
    return 2;
  }
  if (values.all) {
    for (const r of TINY_RECIPES) await writeRecipe(r, path.join(values.out, r), seed, !!values.hf, shards);
    return 0;
  }
  if (!(TINY_RECIPES as readonly string[]).includes(values.recipe!)) {
    console.error(`unknown recipe "${values.recipe}"\n${USAGE}`);
    return 2;
  }
  await writeRecipe(values.recipe as TinyRecipe, values.out, seed, !!values.hf, shards);
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exitCode = 1;
});
