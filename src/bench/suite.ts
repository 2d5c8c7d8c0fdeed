// The benchmark suite, platform neutral: given a GpuContext it measures the ceiling, the kernel rows of a preset
// and the whole model, and returns the report of src/bench/report.ts. The Node command (src/node/bench.ts, the
// CLI's `bench`) and the page (demo/bench.ts) both call runBench; only how the context is made differs.

import { autotuneLinear, type TuningStore } from '../gpu/autotune.ts';
import { setLinearTuning } from '../gpu/linear.ts';
import type { GpuContext } from '../gpu/context.ts';
import { measureCeiling, type CeilingResult } from './ceiling.ts';
import { caseLabel, runKernelRow, type RowOptions } from './kernels.ts';
import { runModelBench, type ModelBenchOptions } from './model.ts';
import type { BenchReport, KernelRow, PeerReport } from './report.ts';
import { kernelCases, type KernelCase, type Preset } from './shapes.ts';

export interface BenchProgress {
  /** What is running now ("ceiling", a row's label, "model: decode"). */
  label: string;
  done: number;
  total: number;
  /** The row just finished, if any. */
  row?: KernelRow;
}

export interface BenchOptions {
  preset?: Preset;
  /** Kernel rows to run instead of the preset's. */
  cases?: KernelCase[];
  /** Run the whole-model part (default true). */
  model?: boolean;
  /**
   * A peer's rows, run after ours (the page passes ONNX Runtime Web's, src/bench/peer-ort.ts; Node has none).
   * `progress` relabels the peer step ("peer: ORT webgpu ...").
   */
  peer?: (ctx: GpuContext, ceilingGBps: number, progress: (label: string) => Promise<void>) => Promise<PeerReport>;
  /** Awaited between steps, so a page can repaint. */
  onProgress?: (p: BenchProgress) => void | Promise<void>;
  /** A ceiling measured earlier on this device (the page reuses it to run one kernel alone). */
  ceiling?: CeilingResult;
  /** Receives the ceiling once measured (or as given). */
  onCeiling?: (c: CeilingResult) => void;
  /** Overrides of the per-preset timing and model settings. */
  timing?: Partial<Pick<RowOptions, 'samples' | 'targetMs' | 'workingSetBytes'>>;
  modelOptions?: Partial<ModelBenchOptions>;
  /** Where the tuning is kept (default: the platform's store). */
  tuningStore?: TuningStore;
}

/** A CPU adapter (SwiftShader, WARP, llvmpipe): the model part runs at reduced width there. */
export function isCpuAdapter(ctx: GpuContext): boolean {
  const info = (ctx.device as { adapterInfo?: GPUAdapterInfo & { isFallbackAdapter?: boolean } }).adapterInfo;
  if (info?.isFallbackAdapter) return true;
  const text = `${info?.vendor ?? ''} ${info?.architecture ?? ''} ${info?.description ?? ''}`.toLowerCase();
  return /swiftshader|llvmpipe|lavapipe|warp|software/.test(text);
}

export function adapterName(ctx: GpuContext): string {
  const info = (ctx.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
  return [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') || 'unknown adapter';
}

/** Timing per preset: samples per row, how long one timed pass should last, the rotating working set. */
function presetTiming(preset: Preset): Pick<RowOptions, 'samples' | 'targetMs' | 'workingSetBytes'> {
  switch (preset) {
    case 'tiny': return { samples: 2, targetMs: 1, workingSetBytes: 1 << 20 };
    case 'quick': return { samples: 3, targetMs: 10, workingSetBytes: 80 << 20 };
    case 'default': return { samples: 5, targetMs: 20, workingSetBytes: 80 << 20 };
    case 'full': return { samples: 7, targetMs: 50, workingSetBytes: 80 << 20 };
  }
}

export async function runBench(ctx: GpuContext, opts: BenchOptions = {}): Promise<BenchReport> {
  const t0 = performance.now();
  const preset = opts.preset ?? 'default';
  const cases = opts.cases ?? kernelCases(preset, { cpuAdapter: isCpuAdapter(ctx) });
  const timing = { ...presetTiming(preset), ...opts.timing };
  const withModel = opts.model ?? true;
  const total = 1 + cases.length + (opts.peer ? 1 : 0) + (withModel ? 1 : 0);
  let done = 0;
  const report = async (label: string, row?: KernelRow) => { await opts.onProgress?.({ label, done, total, row }); };

  await report('ceiling: stream read and copy');
  const ceiling = opts.ceiling ?? await measureCeiling(ctx, {
    ...timing, workingSetBytes: Math.max(timing.workingSetBytes ?? 0, preset === 'tiny' ? 4 << 20 : 96 << 20),
  });
  opts.onCeiling?.(ceiling);
  done++;
  // The rows and the model run with this adapter's tuning, as an engine would.
  await report('tuning the linear kernels for this adapter');
  const tuning = await autotuneLinear(ctx, opts.tuningStore);
  setLinearTuning(ctx, tuning.tuning);
  const rows: KernelRow[] = [];
  for (const c of cases) {
    await report(caseLabel(c));
    const row = await runKernelRow(ctx, c, ceiling.readGBps, timing);
    rows.push(row);
    done++;
    await report(caseLabel(c), row);
  }
  let peer: PeerReport | null = null;
  if (opts.peer) {
    await report('peer');
    peer = await opts.peer(ctx, ceiling.readGBps, (label) => report(label));
    done++;
  }
  let model = null;
  if (withModel) {
    model = await runModelBench(ctx, ceiling.readGBps, {
      preset, cpuAdapter: isCpuAdapter(ctx), ...opts.modelOptions,
      onProgress: (label) => report(`model: ${label}`),
    });
    done++;
  }
  await report('done');
  const features = [...ctx.device.features].map(String).sort();
  return {
    adapter: adapterName(ctx),
    ceilingGBps: ceiling.readGBps,
    rows,
    peer,
    model,
    copyGBps: ceiling.copyGBps,
    tuning,
    meta: {
      preset,
      timing: ceiling.read.method,
      cpuAdapter: isCpuAdapter(ctx),
      features,
      ceilingWorkingSetBytes: ceiling.workingSetBytes,
      ceilingVerified: ceiling.verified,
      ceilingWordsPerInvocation: ceiling.readWordsPerInvocation,
      date: new Date().toISOString(),
      seconds: (performance.now() - t0) / 1000,
    },
  };
}
