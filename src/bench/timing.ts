// GPU time of a kernel: many iterations encoded into one compute pass, the pass timed with timestamp queries
// (timestampWrites at the pass's start and end) where the device has them, else by the wall clock from submit
// until the queue reports the work done. One pass per sample keeps per-dispatch CPU cost out of the figure; the
// median over samples keeps a stray hiccup (another process, a clock change) out of it.

import type { GpuContext } from '../gpu/context.ts';

export type TimingMethod = 'timestamp' | 'wall';

export interface Timing {
  /** Median over the samples of the milliseconds per iteration. */
  medianMs: number;
  /** Milliseconds per iteration of every sample. */
  samplesMs: number[];
  iterations: number;
  method: TimingMethod;
}

export interface TimingOptions {
  /** Timed passes (the median is taken over them). */
  samples: number;
  /** Iterations per pass are chosen so one pass lasts about this long. */
  targetMs: number;
  /** The number of rotating copies: a pass sweeps them all where that is affordable. */
  copies: number;
  /** Cap on iterations per pass. */
  maxIterations: number;
  /** Use timestamp queries when the device has them (default true). */
  timestamps?: boolean;
}

/** Encodes `n` iterations into `pass`; iteration i should use copy i mod copies. */
export type PassBody = (pass: GPUComputePassEncoder, first: number, n: number) => void;

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Wall-clock milliseconds of one submitted pass of `n` iterations, until the queue has finished it. */
async function wallPass(ctx: GpuContext, body: PassBody, n: number, first = 0): Promise<number> {
  const enc = ctx.device.createCommandEncoder({ label: 'bench' });
  const pass = enc.beginComputePass({ label: 'bench' });
  body(pass, first, n);
  pass.end();
  const cmd = enc.finish();
  const t0 = performance.now();
  ctx.device.queue.submit([cmd]);
  await ctx.device.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

/** Nanoseconds between each pair of timestamps (start, end) of `pairs` passes, or null if any pair is unusable. */
async function readTimestampPairs(ctx: GpuContext, set: GPUQuerySet, pairs: number): Promise<number[] | null> {
  const bytes = pairs * 16;
  const resolve = ctx.device.createBuffer({ size: bytes, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const read = ctx.device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const enc = ctx.device.createCommandEncoder();
  enc.resolveQuerySet(set, 0, pairs * 2, resolve, 0);
  enc.copyBufferToBuffer(resolve, 0, read, 0, bytes);
  ctx.device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(read.getMappedRange().slice(0));
  read.unmap();
  read.destroy();
  resolve.destroy();
  const out: number[] = [];
  for (let i = 0; i < pairs; i++) {
    const d = Number(t[2 * i + 1] - t[2 * i]);
    // A driver without real timestamps writes zeros; a reordered clock gives end < start.
    if (!(d > 0) || t[2 * i] === 0n) return null;
    out.push(d);
  }
  return out;
}

/**
 * Times `body` as described at the top of this file. A first pass of one iteration warms up and estimates the
 * cost; where a sweep over all copies is affordable (about 4 × targetMs) another pass touches every copy once and
 * passes sweep whole numbers of times, else (slow kernels, CPU adapters) a pass runs just enough iterations for
 * targetMs, each sample starting at the next copy. Then `samples` passes are timed.
 */
export async function timeKernel(ctx: GpuContext, body: PassBody, opts: TimingOptions): Promise<Timing> {
  const { copies } = opts;
  let perIteration = await wallPass(ctx, body, 1);
  const sweepable = perIteration * copies <= Math.max(4 * opts.targetMs, 50);
  if (sweepable && copies > 1) perIteration = (await wallPass(ctx, body, copies)) / copies;
  const wanted = Math.ceil(opts.targetMs / Math.max(perIteration, 1e-4));
  // A whole number of sweeps over the copies, so every copy is read equally often.
  const iterations = sweepable
    ? Math.max(copies, Math.min(opts.maxIterations, Math.ceil(wanted / copies) * copies))
    : Math.max(1, Math.min(copies, wanted));
  // A kernel that takes far longer than a pass should gets fewer samples (SwiftShader's GEMMs: seconds each).
  const samples = perIteration > 25 * opts.targetMs ? Math.min(3, opts.samples) : opts.samples;
  const first = (sample: number) => (sweepable ? 0 : (sample * iterations) % copies);

  if ((opts.timestamps ?? true) && ctx.features.timestampQuery) {
    const set = ctx.device.createQuerySet({ type: 'timestamp', count: 2 * samples });
    for (let s = 0; s < samples; s++) {
      const enc = ctx.device.createCommandEncoder({ label: 'bench' });
      const pass = enc.beginComputePass({
        label: 'bench', timestampWrites: { querySet: set, beginningOfPassWriteIndex: 2 * s, endOfPassWriteIndex: 2 * s + 1 },
      });
      body(pass, first(s), iterations);
      pass.end();
      ctx.device.queue.submit([enc.finish()]);
      await ctx.device.queue.onSubmittedWorkDone();
    }
    const ns = await readTimestampPairs(ctx, set, samples);
    set.destroy();
    if (ns) {
      const samplesMs = ns.map((d) => d / 1e6 / iterations);
      return { medianMs: median(samplesMs), samplesMs, iterations, method: 'timestamp' };
    }
  }
  const samplesMs: number[] = [];
  for (let s = 0; s < samples; s++) samplesMs.push((await wallPass(ctx, body, iterations, first(s))) / iterations);
  return { medianMs: median(samplesMs), samplesMs, iterations, method: 'wall' };
}
