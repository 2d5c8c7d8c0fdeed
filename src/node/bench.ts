// `npm run bench`: the kernel microbenchmark suite (src/bench/) headless on Dawn. Prints the table; --out FILE
// writes the JSON report; --json prints it instead of the table. On SwiftShader every figure is a CPU timing:
// only the ratios to the ceiling measured in the same run mean anything.
//   npm run bench -- [--tiny | --quick | --full] [--no-model] [--out FILE] [--json]
import { writeFileSync } from 'node:fs';
import './shaders-node.ts';
import { getNodeGpu } from './dawn.ts';
import { runBench } from '../bench/suite.ts';
import { formatReport } from '../bench/report.ts';
import type { Preset } from '../bench/shapes.ts';

const USAGE = 'usage: npm run bench -- [--tiny | --quick | --full] [--no-model] [--out FILE] [--json]';

function parse(argv: string[]): { preset: Preset; model: boolean; out?: string; json: boolean } {
  const o: { preset: Preset; model: boolean; out?: string; json: boolean } = { preset: 'default', model: true, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--tiny' || a === '--quick' || a === '--full') o.preset = a.slice(2) as Preset;
    else if (a === '--no-model') o.model = false;
    else if (a === '--json') o.json = true;
    else if (a === '--out' && argv[i + 1] && !argv[i + 1].startsWith('--')) o.out = argv[++i];
    else throw new Error(`${a === '--out' ? '--out needs a file name' : `unknown argument ${a}`}\n${USAGE}`);
  }
  return o;
}

async function main(): Promise<void> {
  let opts;
  try {
    opts = parse(process.argv.slice(2));
  } catch (e) {
    console.error((e as Error).message);
    process.exit(2);
  }
  const ctx = await getNodeGpu();
  const report = await runBench(ctx, {
    preset: opts.preset,
    model: opts.model,
    onProgress: (p) => { if (process.stderr.isTTY || process.env.CI) process.stderr.write(`[${p.done}/${p.total}] ${p.label}\n`); },
  });
  if (opts.out) writeFileSync(opts.out, JSON.stringify(report, null, 2) + '\n');
  console.log(opts.json ? JSON.stringify(report, null, 2) : formatReport(report));
}

await main();
