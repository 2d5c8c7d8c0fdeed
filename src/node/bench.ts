// The benchmark suite (src/bench/) on Dawn: `qwen-webgpu bench` and `npm run bench` (which runs that command).
// Progress goes to stderr, the table (or with --json the report) to stdout, and --out FILE gets the JSON report
// whatever stdout shows. On SwiftShader every figure is a CPU timing: only the ratios to the ceiling measured in
// the same run mean anything.
//   npm run bench -- [--quick | --full | --tiny] [--no-model] [--out FILE] [--json]
import { writeFile } from 'node:fs/promises';
import './shaders-node.ts';
import { getNodeGpu } from './dawn.ts';
import { formatReport, type BenchReport } from '../bench/report.ts';
import type { Preset } from '../bench/shapes.ts';
import { runBench, type BenchProgress } from '../bench/suite.ts';

export interface NodeBenchOptions {
  preset: Preset;
  json: boolean;
  out?: string;
  model: boolean;
  progress: boolean;
}

function progressLine(p: BenchProgress): string {
  const row = p.row ? `: ${p.row.medianMs.toPrecision(3)} ms, ${p.row.pctCeiling.toFixed(1)}% of the ceiling` : '';
  return `[${p.done}/${p.total}] ${p.label}${row}`;
}

/** Runs the suite and writes what the options ask for; returns the report. */
export async function runNodeBench(opts: NodeBenchOptions, stdout: (text: string) => Promise<void>): Promise<BenchReport> {
  const ctx = await getNodeGpu();
  const report = await runBench(ctx, {
    preset: opts.preset,
    model: opts.model,
    onProgress: opts.progress ? (p) => { process.stderr.write(progressLine(p) + '\n'); } : undefined,
  });
  const json = JSON.stringify(report, null, 1) + '\n';
  if (opts.out) await writeFile(opts.out, json);
  await stdout(opts.json ? json : formatReport(report) + '\n');
  return report;
}
