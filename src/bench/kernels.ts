// One kernel row: set up a case of src/bench/shapes.ts (random weights in the stored format, enough copies that
// the working set exceeds the cache), record each copy's dispatches once into a StepPlan, time replays of the
// plans inside one compute pass (src/bench/timing.ts), and compare one run with the CPU reference of the same
// name (src/model/reference-ops.ts); large linears are checked on a subsample of output rows.

import { readF32, uploadBytes, type GpuContext } from '../gpu/context.ts';
import {
  createGpuLinear, destroyGpuLinear, linear, linearTuning, withLinearTuning, type GpuLinear, type LinearFormat,
} from '../gpu/linear.ts';
import { attention, gatedDelta, rmsNorm } from '../gpu/ops.ts';
import { createStepBuffer, destroyPlan, recordPlan, replayPlan, writeStep, type Recorder, type StepPlan } from '../gpu/plan.ts';
import { dequantizeAffine } from '../format/quant.ts';
import * as ref from '../model/reference-ops.ts';
import { bf16ToF32, randomBf16, randomBytes, randomFloats, relativeMaxError, sampleIndices } from './data.ts';
import type { KernelRow } from './report.ts';
import type { KernelCase } from './shapes.ts';
import { timeKernel, type TimingOptions } from './timing.ts';

export interface RowOptions extends Omit<TimingOptions, 'copies' | 'maxIterations'> {
  /** Bytes the rotating copies should add up to at least (default 80 MiB: above a 64 MB system cache). */
  workingSetBytes?: number;
  /** At most this many copies (small kernels would otherwise need thousands). */
  maxCopies?: number;
  /** Output rows of a linear compared with the reference (default 48). */
  checkRows?: number;
}

/** A case made ready to time: one plan per copy, a check against the reference, and what to free. */
interface Prepared {
  row: Pick<KernelRow, 'kernel' | 'shape' | 'bits' | 'groupSize' | 'dims'>;
  bytes: number;
  flops?: number;
  plans: StepPlan[];
  /** Runs once and returns the relative max error and the number of outputs compared. */
  check(): Promise<{ maxErr: number; checked: number }>;
  destroy(): void;
}

const DEFAULT_WORKING_SET = 80 << 20;

function copiesFor(bytes: number, opts: RowOptions): number {
  const want = Math.ceil((opts.workingSetBytes ?? DEFAULT_WORKING_SET) / Math.max(1, bytes));
  return Math.max(1, Math.min(opts.maxCopies ?? 64, want));
}

/** Submits one replay of `plan` (the check run). */
function runOnce(ctx: GpuContext, plan: StepPlan): void {
  const enc = ctx.device.createCommandEncoder({ label: 'bench check' });
  const pass = enc.beginComputePass();
  replayPlan(pass, plan);
  pass.end();
  ctx.device.queue.submit([enc.finish()]);
}

/** A short name of the format for error messages and labels. */
export function caseLabel(c: KernelCase): string {
  switch (c.kind) {
    case 'matvec': {
      const f = c.format === 'bf16' ? 'bf16' : `${c.format.bits}-bit g${c.format.groupSize}`;
      return `${linearKernelName(c)} ${f} ${c.shape.model} ${c.shape.modules} M${c.M} K${c.shape.K} N${c.shape.N}`;
    }
    case 'gatedDelta': return `gatedDelta ${c.model} Hv${c.Hv}`;
    case 'attention': return `attention ${c.model} ctx${c.context}`;
    case 'rmsNorm': return `rmsNorm ${c.model} rows${c.rows} n${c.n}`;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// linear: the matvec for M = 1; for M > 1 the multi-token matvec or the GEMM, forced by the case

function linearKernelName(c: Extract<KernelCase, { kind: 'matvec' }>): string {
  return c.M === 1 ? 'matvec' : c.prefill ?? 'gemm';
}

function prepareLinear(ctx: GpuContext, c: Extract<KernelCase, { kind: 'matvec' }>, opts: RowOptions): Prepared {
  const { K, N } = c.shape;
  const M = c.M;
  const format: LinearFormat = c.format === 'bf16'
    ? { kind: 'float', dtype: 'bf16' }
    : { kind: 'affine', bits: c.format.bits, groupSize: c.format.groupSize, scaleDtype: 'bf16' };
  const name = `${c.shape.modules} ${K}x${N}`;
  let data: { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array };
  if (format.kind === 'affine') {
    const groups = (N * K) / format.groupSize;
    // Codes are any bit pattern; scales ±[2^-8, 2^-7) and biases ±[2^-7, 2^-6) keep |w| ≲ 2.
    data = {
      weight: randomBytes((N * K * format.bits) / 8, 11),
      scales: randomBf16(groups, 12, 119),
      biases: randomBf16(groups, 13, 120),
    };
  } else {
    data = { weight: randomBf16(N * K, 14, 120, 8) };
  }
  const spec = { name, rows: N, cols: K, format };
  const first = createGpuLinear(ctx, spec, data);
  const copies = copiesFor(first.bytes, opts);
  const lins: GpuLinear[] = [first];
  const x = randomFloats(M * K, 15);
  const xb = uploadBytes(ctx, x, 'bench x');
  const yb = ctx.storage(M * N * 4, 'bench y');
  const step = createStepBuffer(ctx);
  const plans: StepPlan[] = [];
  try {
    for (let i = 1; i < copies; i++) lins.push(createGpuLinear(ctx, spec, data));
    // The case names the kernel: the crossover moves with the tuning, the row should not.
    const tuning = { ...linearTuning(ctx), matvecMaxM: M > 1 && c.prefill !== 'matvec-mt' ? M - 1 : M };
    for (const lin of lins) {
      plans.push(withLinearTuning(ctx, tuning, () => recordPlan(ctx, step, name, (rec: Recorder) => linear(rec, lin, xb, yb, M))));
    }
  } catch (e) {
    for (const lin of lins) destroyGpuLinear(lin);
    throw e;
  }
  return {
    row: {
      kernel: linearKernelName(c),
      shape: `M${M} K${K} N${N}`,
      bits: format.kind === 'affine' ? format.bits : null,
      groupSize: format.kind === 'affine' ? format.groupSize : null,
      dims: `${c.shape.model} ${c.shape.modules}`,
    },
    bytes: first.bytes,
    flops: 2 * M * N * K,
    plans,
    async check() {
      runOnce(ctx, plans[0]);
      const y = await readF32(ctx, yb, M * N);
      const rows = sampleIndices(N, opts.checkRows ?? 48);
      // The reference weights of the sampled rows: unpacked and dequantised on the CPU from the same bytes.
      const w = new Float32Array(rows.length * K);
      rows.forEach((r, j) => {
        if (format.kind === 'affine') {
          const rowBytes = (K * format.bits) / 8;
          const sb = (K / format.groupSize) * 2;
          const words = new Uint32Array(data.weight.slice(r * rowBytes, (r + 1) * rowBytes).buffer);
          w.set(dequantizeAffine(words, data.scales!.subarray(r * sb, (r + 1) * sb), data.biases!.subarray(r * sb, (r + 1) * sb),
            1, K, format.bits, format.groupSize, 'bf16'), j * K);
        } else {
          w.set(bf16ToF32(data.weight.slice(r * K * 2, (r + 1) * K * 2)), j * K);
        }
      });
      const want = ref.linear(x, w, M, rows.length, K);
      const got = new Float32Array(M * rows.length);
      for (let m = 0; m < M; m++) rows.forEach((r, j) => { got[m * rows.length + j] = y[m * N + r]; });
      return { maxErr: relativeMaxError(got, want), checked: got.length };
    },
    destroy() {
      for (const p of plans) destroyPlan(p);
      for (const lin of lins) destroyGpuLinear(lin);
      for (const b of [xb, yb, step]) b.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// gated delta rule, one decode step: the fp32 state is read and written once

function prepareGatedDelta(ctx: GpuContext, c: Extract<KernelCase, { kind: 'gatedDelta' }>, opts: RowOptions): Prepared {
  const dims = { Hk: c.Hk, Hv: c.Hv, Dk: c.Dk, Dv: c.Dv };
  const convDim = 2 * c.Hk * c.Dk + c.Hv * c.Dv;
  const stateFloats = c.Hv * c.Dk * c.Dv;
  const bytes = 2 * stateFloats * 4;
  const copies = copiesFor(bytes, opts);
  // As in the kernel tests: mostly mild decay (a ≈ −3 ± 3, A = e^(−1.5 ± 1)) so the carried state matters.
  const u = randomFloats(convDim, 21, 3);
  const a = randomFloats(c.Hv, 22, 3).map((v) => v - 3);
  const b = randomFloats(c.Hv, 23, 3);
  const aLog = randomFloats(c.Hv, 24, 1).map((v) => v - 1.5);
  const dtBias = randomFloats(c.Hv, 25, 1);
  const s0 = randomFloats(stateFloats, 26, 1);
  const [ub, ab, bb, lb, db] = [u, a, b, aLog, dtBias].map((v) => uploadBytes(ctx, v));
  const out = ctx.storage(c.Hv * c.Dv * 4, 'gdn out');
  const states = Array.from({ length: copies }, () => uploadBytes(ctx, s0, 'gdn state'));
  const step = createStepBuffer(ctx);
  const plans = states.map((st) => recordPlan(ctx, step, 'gatedDelta', (rec) => gatedDelta(rec, ub, ab, bb, lb, db, st, out, 1, dims)));
  return {
    row: { kernel: 'gatedDelta', shape: `T1 Hk${c.Hk} Hv${c.Hv} Dk${c.Dk} Dv${c.Dv}`, bits: null, groupSize: null, dims: `${c.model} linear_attn` },
    bytes,
    plans,
    async check() {
      ctx.device.queue.writeBuffer(states[0], 0, s0 as Float32Array<ArrayBuffer>);
      runOnce(ctx, plans[0]);
      const gotOut = await readF32(ctx, out, c.Hv * c.Dv);
      const gotState = await readF32(ctx, states[0], stateFloats);
      const sRef = Float32Array.from(s0);
      const want = ref.gatedDelta(u, a, b, aLog, dtBias, sRef, 1, dims);
      return {
        maxErr: Math.max(relativeMaxError(gotOut, want), relativeMaxError(gotState, sRef)),
        checked: gotOut.length + gotState.length,
      };
    },
    destroy() {
      for (const p of plans) destroyPlan(p);
      for (const buf of [ub, ab, bb, lb, db, out, step, ...states]) buf.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// attention, one decode query over `context` cached keys (f32 K and V caches)

function prepareAttention(ctx: GpuContext, c: Extract<KernelCase, { kind: 'attention' }>, opts: RowOptions): Prepared {
  const { H, Hkv, D, context } = c;
  const cacheFloats = Hkv * context * D;
  const bytes = 2 * cacheFloats * 4;
  const copies = copiesFor(bytes, opts);
  const q = randomFloats(H * D, 31);
  const k = randomFloats(cacheFloats, 32);
  const v = randomFloats(cacheFloats, 33);
  const qb = uploadBytes(ctx, q);
  const out = ctx.storage(H * D * 4, 'attention out');
  const caches = Array.from({ length: copies }, () => ({ k: uploadBytes(ctx, k, 'k cache'), v: uploadBytes(ctx, v, 'v cache') }));
  const step = createStepBuffer(ctx);
  // The query sits at the last position, so it attends to all `context` keys.
  writeStep(ctx, step, { position: context - 1 });
  const plans = caches.map((kv) => recordPlan(ctx, step, 'attention', (rec) => attention(rec, qb, kv.k, kv.v, out, 1, H, Hkv, D, context)));
  return {
    row: { kernel: 'attention', shape: `ctx${context} H${H} Hkv${Hkv} D${D}`, bits: null, groupSize: null, dims: `${c.model} self_attn decode` },
    bytes,
    plans,
    async check() {
      runOnce(ctx, plans[0]);
      const got = await readF32(ctx, out, H * D);
      const want = ref.attention(q, k, v, 1, H, Hkv, D, context - 1, context);
      return { maxErr: relativeMaxError(got, want), checked: got.length };
    },
    destroy() {
      for (const p of plans) destroyPlan(p);
      for (const kv of caches) { kv.k.destroy(); kv.v.destroy(); }
      for (const buf of [qb, out, step]) buf.destroy();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// RMS norm (decode: one row; prefill: many)

function prepareRmsNorm(ctx: GpuContext, c: Extract<KernelCase, { kind: 'rmsNorm' }>, opts: RowOptions): Prepared {
  const { rows, n } = c;
  const bytes = (2 * rows * n + n) * 4;
  const copies = copiesFor(bytes, opts);
  const x = randomFloats(rows * n, 41, 3);
  const gain = randomFloats(n, 42, 0.5).map((g) => g + 1);
  const gb = uploadBytes(ctx, gain);
  const ys = ctx.storage(rows * n * 4, 'norm out');
  const xs = Array.from({ length: copies }, () => uploadBytes(ctx, x, 'norm in'));
  const step = createStepBuffer(ctx);
  const plans = xs.map((xb) => recordPlan(ctx, step, 'rmsNorm', (rec) => rmsNorm(rec, xb, gb, ys, rows, n, 1e-6)));
  return {
    row: { kernel: 'rmsNorm', shape: `rows${rows} n${n}`, bits: null, groupSize: null, dims: `${c.model} input_layernorm` },
    bytes,
    plans,
    async check() {
      runOnce(ctx, plans[0]);
      const got = await readF32(ctx, ys, rows * n);
      return { maxErr: relativeMaxError(got, ref.rmsNorm(x, gain, rows, n, 1e-6)), checked: got.length };
    },
    destroy() {
      for (const p of plans) destroyPlan(p);
      for (const buf of [gb, ys, step, ...xs]) buf.destroy();
    },
  };
}

function prepare(ctx: GpuContext, c: KernelCase, opts: RowOptions): Prepared {
  switch (c.kind) {
    case 'matvec': return prepareLinear(ctx, c, opts);
    case 'gatedDelta': return prepareGatedDelta(ctx, c, opts);
    case 'attention': return prepareAttention(ctx, c, opts);
    case 'rmsNorm': return prepareRmsNorm(ctx, c, opts);
  }
}

/** Measures one case; `ceilingGBps` turns its GB/s into % of the ceiling. */
export async function runKernelRow(ctx: GpuContext, c: KernelCase, ceilingGBps: number, opts: RowOptions): Promise<KernelRow> {
  ctx.device.pushErrorScope('out-of-memory');
  ctx.device.pushErrorScope('validation');
  let p: Prepared | undefined;
  let result: KernelRow | undefined;
  let thrown: unknown;
  try {
    p = prepare(ctx, c, opts);
    const prepared = p;
    const copies = prepared.plans.length;
    const { maxErr, checked } = await prepared.check();
    const timing = await timeKernel(ctx, (pass, first, n) => {
      for (let i = first; i < first + n; i++) replayPlan(pass, prepared.plans[i % copies]);
    }, { ...opts, copies, maxIterations: Math.max(copies, 4096) });
    const gbps = prepared.bytes / (timing.medianMs * 1e6);
    result = {
      ...prepared.row,
      medianMs: timing.medianMs,
      gbps,
      pctCeiling: (100 * gbps) / ceilingGBps,
      maxErr,
      bytes: prepared.bytes,
      copies,
      checked,
      timing: timing.method,
      ...(prepared.flops !== undefined && c.kind === 'matvec' && c.M > 1 ? { gflops: prepared.flops / (timing.medianMs * 1e6) } : {}),
    };
  } catch (e) {
    thrown = e;
  } finally {
    p?.destroy();
  }
  const validation = await ctx.device.popErrorScope();
  const oom = await ctx.device.popErrorScope();
  if (thrown) throw thrown;
  const err = validation ?? oom;
  if (err) throw new Error(`${caseLabel(c)}: GPU error: ${err.message}`);
  return result!;
}
