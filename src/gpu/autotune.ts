// A short measurement at load that picks the linear kernels' shape for this adapter (issue 7, scope 5): how a
// matvec row is reduced and over how many lanes, and the token count where the 64-token GEMM tile starts to pay.
// The defaults suit 32-wide SIMD GPUs; SwiftShader (4-wide subgroups, barriers that cost a fiber switch) wants
// something else entirely: there the multi-token matvec beats the GEMM at every M measured, by 4-40x.
// Results are kept per adapter in a TuningStore (IndexedDB in the browser, a file in Node) so only the first load
// on an adapter pays; a store that fails is ignored, never the load.

import { uploadBytes, type GpuContext } from './context.ts';
import {
  checkLinearTuning, createGpuLinear, destroyGpuLinear, linear, matvecShape, minSubgroupSize, withLinearTuning,
  DEFAULT_LINEAR_TUNING, type GpuLinear, type LinearTuning,
} from './linear.ts';
import { createStepBuffer, destroyPlan, recordPlan, replayPlan } from './plan.ts';
import { timeKernel } from '../bench/timing.ts';
import { randomBytes } from '../bench/data.ts';

/** Bump when a kernel change makes stored tunings stale. */
export const TUNING_VERSION = 1;

export interface TuningStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
}

export function memoryTuningStore(): TuningStore {
  const m = new Map<string, unknown>();
  return { get: async (k) => m.get(k), set: async (k, v) => void m.set(k, v) };
}

let defaultStore: TuningStore = memoryTuningStore();
/** The store loadEngine uses when none is passed: set by the platform (the worker: IndexedDB; Node: a file). */
export function setDefaultTuningStore(store: TuningStore): void {
  defaultStore = store;
}

/** One adapter (and kernel version): the key of a stored tuning. */
export function tuningKey(ctx: GpuContext): string {
  const info = (ctx.device as { adapterInfo?: Partial<GPUAdapterInfo> & { subgroupMinSize?: number; subgroupMaxSize?: number } })
    .adapterInfo ?? {};
  const id = [info.vendor, info.architecture, info.device, info.description].map((s) => s ?? '').join('|');
  return `qwen-webgpu-tuning v${TUNING_VERSION} ${id} sg${minSubgroupSize(ctx)}-${info.subgroupMaxSize ?? 0}`;
}

/** What was measured, in milliseconds per call (the bench and the note quote it). */
export interface TuningReport {
  tuning: LinearTuning;
  /** True when the tuning came from the store (nothing was measured this time). */
  cached: boolean;
  key: string;
  /** matvec M = 1 per reduction / lane cap tried, e.g. "subgroup 4": ms. */
  matvecMs?: Record<string, number>;
  /** The crossover measurement: multi-token matvec at M = 32 and the GEMM tile (its cost does not depend on M ≤ 64). */
  crossover?: { K: number; N: number; matvec32Ms: number; gemm64Ms: number };
  elapsedMs?: number;
}

function isTuning(v: unknown): v is LinearTuning {
  if (!v || typeof v !== 'object') return false;
  try {
    checkLinearTuning(v as LinearTuning);
    return true;
  } catch {
    return false;
  }
}

/** Random 4-bit g64 weights straight as packed words (their values do not matter to the timing). */
function randomLinear(ctx: GpuContext, rows: number, cols: number): GpuLinear {
  // bf16 0x3c00 ≈ 0.0078: small scales and biases keep the sums finite.
  const groups = (rows * cols) / 64;
  const sb = new Uint8Array(new Uint16Array(groups).fill(0x3c00).buffer);
  return createGpuLinear(ctx, { name: 'autotune', rows, cols, format: { kind: 'affine', bits: 4, groupSize: 64, scaleDtype: 'bf16' } },
    { weight: randomBytes((rows * cols) / 2, 0x9e3779b9), scales: sb, biases: sb });
}

/** Milliseconds per call of linear(M) under tuning `t` (a throwaway plan, replayed in one pass). */
async function timeLinear(ctx: GpuContext, lin: GpuLinear, x: GPUBuffer, y: GPUBuffer, M: number, t: LinearTuning, targetMs: number): Promise<number> {
  const step = createStepBuffer(ctx);
  const plan = withLinearTuning(ctx, t, () => recordPlan(ctx, step, 'autotune', (rec) => linear(rec, lin, x, y, M)));
  try {
    const timing = await timeKernel(ctx, (pass, _first, n) => { for (let i = 0; i < n; i++) replayPlan(pass, plan); },
      { samples: 3, targetMs, copies: 1, maxIterations: 200 });
    return timing.medianMs;
  } finally {
    destroyPlan(plan);
    step.destroy();
  }
}

/** Measures a tuning for ctx's adapter (about a second on SwiftShader, far less on a GPU). */
export async function measureLinearTuning(ctx: GpuContext): Promise<Omit<TuningReport, 'cached' | 'key'>> {
  const t0 = performance.now();
  const base: LinearTuning = { ...DEFAULT_LINEAR_TUNING };
  const bufs: GPUBuffer[] = [];
  const lins: GpuLinear[] = [];
  const setup = (K: number, N: number) => {
    const lin = randomLinear(ctx, N, K);
    const x = uploadBytes(ctx, new Float32Array(64 * K).fill(0.5));
    const y = ctx.storage(64 * N * 4);
    lins.push(lin);
    bufs.push(x, y);
    return { lin, x, y };
  };
  try {
    // 1. The matvec's reduction and lane cap, at M = 1 (decode), on a row of 1024 values (32 chunks).
    let { lin, x, y } = setup(1024, 1024);
    const candidates: LinearTuning[] = [];
    const seen = new Set<string>();
    for (const reduce of ['subgroup', 'workgroup'] as const) {
      if (reduce === 'subgroup' && minSubgroupSize(ctx) === 0) continue;
      for (const maxLanes of [4, 8, 16, 32]) {
        const t = { ...base, reduce, maxLanes };
        const shape = withLinearTuning(ctx, t, () => matvecShape(ctx, 1024 / 32));
        const id = `${shape.subgroups ? 'subgroup' : 'workgroup'} ${shape.tpr}`;
        if (seen.has(id)) continue;
        seen.add(id);
        candidates.push(t);
      }
    }
    const matvecMs: Record<string, number> = {};
    let best = base;
    let bestMs = Infinity;
    // Lane counts ascend within each reduction: once one is clearly slower than the best, wider ones are skipped
    // (each candidate is a pipeline compile, half a second on SwiftShader).
    for (const t of candidates) {
      const ms = await timeLinear(ctx, lin, x, y, 1, t, 5);
      matvecMs[`${t.reduce} ${t.maxLanes}`] = ms;
      const slower = ms > 1.25 * bestMs && t.reduce === best.reduce;
      if (ms < bestMs) [best, bestMs] = [t, ms];
      if (slower) {
        const i = candidates.indexOf(t);
        const rest = candidates.slice(i + 1).findIndex((c) => c.reduce !== t.reduce);
        if (rest < 0) break;
        candidates.splice(i + 1, rest);
      }
    }

    // 2. The crossover. For M ≤ 64 the GEMM costs one tile along M whatever M is, while the matvec costs one pass
    // over the weights per 8 tokens; so with a = matvec(32) / 4 and c = gemm(64) the GEMM pays from 8c / a tokens.
    // A small shape first; on a GPU where that is launch-bound, a larger one that fills the device.
    ({ lin, x, y } = setup(256, 768));
    let K = 256, N = 768;
    let gemm64Ms = await timeLinear(ctx, lin, x, y, 64, { ...best, matvecMaxM: 1 }, 5);
    let matvec32Ms = await timeLinear(ctx, lin, x, y, 32, { ...best, matvecMaxM: 64 }, 5);
    if (gemm64Ms < 0.5) {
      ({ lin, x, y } = setup((K = 2048), (N = 4096)));
      gemm64Ms = await timeLinear(ctx, lin, x, y, 64, { ...best, matvecMaxM: 1 }, 10);
      matvec32Ms = await timeLinear(ctx, lin, x, y, 32, { ...best, matvecMaxM: 64 }, 10);
    }
    const crossover = Math.floor((32 * gemm64Ms) / matvec32Ms);
    // Past 64 tokens the GEMM's cost per token stays that of M = 64: if the matvec still wins there it always does.
    const matvecMaxM = crossover >= 64 ? 1 << 16 : Math.max(4, crossover);
    return {
      tuning: { ...best, matvecMaxM },
      matvecMs,
      crossover: { K, N, matvec32Ms, gemm64Ms },
      elapsedMs: performance.now() - t0,
    };
  } finally {
    lins.forEach(destroyGpuLinear);
    bufs.forEach((b) => b.destroy());
  }
}

/**
 * The tuning for ctx's adapter, from the store or measured (then stored); the caller applies it (loadEngine records
 * with it, the bench sets it on ctx). A store that cannot be read or written is skipped: the tuning is measured
 * all the same.
 */
export async function autotuneLinear(
  ctx: GpuContext, store: TuningStore = defaultStore, onMeasure?: () => void,
): Promise<TuningReport> {
  const key = tuningKey(ctx);
  let stored: unknown;
  try {
    stored = await store.get(key);
  } catch {
    stored = undefined;
  }
  if (isTuning(stored)) {
    return { tuning: { ...stored }, cached: true, key };
  }
  onMeasure?.();
  const measured = await measureLinearTuning(ctx);
  try {
    await store.set(key, measured.tuning);
  } catch {
    // A full or unavailable store costs the next load another measurement, nothing more.
  }
  return { ...measured, cached: false, key };
}
