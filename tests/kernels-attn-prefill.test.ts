// The tiled prefill attention (src/gpu/attention-prefill.ts) against the float64 reference attention64 (+
// splitQGate64 / sigmoidGateMul64 for the output gate) of src/model/reference-ops.ts.
// Tolerance: max |gpu − ref| ≤ 1e-4 · max(1, max |ref|). Cache rows past p0 + T hold NaN, so any read past the
// causal limit poisons the result. Shapes cover one partial row block (T = 1, 5), block and tile boundaries
// (64, 130 tokens; 32 rows a block, 32 keys a tile), GQA groups 1, 3, 4 and 8 (blocks that split a token's
// heads), head dims 16 / 40 / 64 / 80 / 256 (a partial last dim chunk, lanes without a dim), p0 = 0 and p0 > 0,
// gate on and off; then one recorded plan replayed at two positions.
// QWEN_ATTN_BENCH=1 adds the timing row (tiled vs ops.attention, ratio only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ops from '../src/gpu/ops.ts';
import { attentionPrefill, attentionPrefillShape } from '../src/gpu/attention-prefill.ts';
import { createStepBuffer, destroyPlan, recordPlan, replayPlan, writeStep } from '../src/gpu/plan.ts';
import { attention64, sigmoidGateMul64, splitQGate64 } from '../src/model/reference-ops.ts';

import { check, ctx, exec, gpu, randomStream, read, rec, up } from './kernel-harness.ts';

const { rand, randn } = randomStream(2718);

/**
 * Caches [Hkv, maxCtx, D] with positions 0 .. kvLen−1 random and the rest NaN. Keys get a shared direction per
 * kv head and q a matching one (`peak`), so scores spread over several units and the online max really moves
 * between tiles, instead of the near-uniform softmax of small random dots.
 */
function cacheOf(Hkv: number, maxCtx: number, D: number, kvLen: number, peak: number): { k: Float32Array<ArrayBuffer>; v: Float32Array<ArrayBuffer>; dir: Float32Array } {
  const k = new Float32Array(Hkv * maxCtx * D).fill(NaN);
  const v = new Float32Array(Hkv * maxCtx * D).fill(NaN);
  const dir = randn(Hkv * D, 1);
  for (let g = 0; g < Hkv; g++) {
    for (let tau = 0; tau < kvLen; tau++) {
      const w = peak * (2 * rand() - 1);
      for (let d = 0; d < D; d++) {
        const o = (g * maxCtx + tau) * D + d;
        k[o] = 2 * rand() - 1 + w * dir[g * D + d];
        v[o] = 2 * (2 * rand() - 1);
      }
    }
  }
  return { k, v, dir };
}

/** q_proj's output [T, H, 2D]: per head D of q (leaning towards its kv head's key direction), then D of gate. */
function qGateOf(T: number, H: number, Hkv: number, D: number, dir: Float32Array, peak: number): Float32Array<ArrayBuffer> {
  const qg = randn(T * H * 2 * D, 1);
  const group = H / Hkv;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      for (let d = 0; d < D; d++) qg[(t * H + h) * 2 * D + d] += (peak / Math.sqrt(D)) * dir[g * D + d];
    }
  }
  // A few large gate values take sigmoid's two sides far out.
  qg[D] = 40;
  qg[D + 1] = -40;
  return qg;
}

test('attentionPrefill vs attention64 (p0 = 0 and > 0, GQA, head dims, gate)', async () => {
  await gpu();
  const cases: Array<{ T: number; p0: number; H: number; Hkv: number; D: number; gate: boolean }> = [
    { T: 1, p0: 0, H: 4, Hkv: 1, D: 64, gate: false },
    { T: 1, p0: 77, H: 8, Hkv: 2, D: 256, gate: true },
    { T: 5, p0: 0, H: 2, Hkv: 2, D: 16, gate: true },
    { T: 5, p0: 40, H: 8, Hkv: 1, D: 64, gate: false },
    { T: 64, p0: 0, H: 4, Hkv: 4, D: 64, gate: false },
    { T: 64, p0: 0, H: 8, Hkv: 2, D: 256, gate: true },
    { T: 64, p0: 33, H: 6, Hkv: 2, D: 40, gate: true },
    { T: 130, p0: 0, H: 4, Hkv: 1, D: 16, gate: false },
    { T: 130, p0: 0, H: 2, Hkv: 2, D: 256, gate: false },
    { T: 130, p0: 70, H: 8, Hkv: 2, D: 64, gate: true },
    { T: 130, p0: 100, H: 4, Hkv: 1, D: 256, gate: true },
    { T: 37, p0: 3, H: 3, Hkv: 3, D: 80, gate: false },
  ];
  for (const { T, p0, H, Hkv, D, gate } of cases) {
    const maxCtx = p0 + T + 9;
    const peak = 4;
    const c = cacheOf(Hkv, maxCtx, D, p0 + T, peak);
    const qg = qGateOf(T, H, Hkv, D, c.dir, peak);
    const split = splitQGate64(qg, T, H, D);
    const q = new Float32Array(split.q);
    const out = ctx.storage(T * H * D * 4);
    exec((enc) => attentionPrefill(rec(enc, p0), up(q), up(c.k), up(c.v), out, T, H, Hkv, D, maxCtx, gate ? { gate: up(qg) } : {}));
    const att = attention64(q, c.k, c.v, T, H, Hkv, D, p0, maxCtx);
    const want = gate ? sigmoidGateMul64(att, split.gate) : att;
    check(`attentionPrefill T=${T} p0=${p0} H=${H} Hkv=${Hkv} D=${D}${gate ? ' gated' : ''}`, await read(out, T * H * D), want);
  }
});

test('attentionPrefill: one recorded plan replayed at two positions', async () => {
  await gpu();
  const [T, H, Hkv, D, maxCtx] = [45, 8, 2, 64, 200];
  const step = createStepBuffer(ctx);
  const kCache = ctx.storage(Hkv * maxCtx * D * 4);
  const vCache = ctx.storage(Hkv * maxCtx * D * 4);
  const qBuf = ctx.storage(T * H * D * 4);
  const gBuf = ctx.storage(T * H * 2 * D * 4);
  const out = ctx.storage(T * H * D * 4);
  const plan = recordPlan(ctx, step, 'attention prefill', (r) => attentionPrefill(r, qBuf, kCache, vCache, out, T, H, Hkv, D, maxCtx, { gate: gBuf }));
  assert.equal(plan.dispatches.length, 1);
  for (const p0 of [120, 0, 31]) {
    // New contents each time, NaN past p0 + T: the replay must take both the key range and the mask from p0.
    const c = cacheOf(Hkv, maxCtx, D, p0 + T, 4);
    const qg = qGateOf(T, H, Hkv, D, c.dir, 4);
    const split = splitQGate64(qg, T, H, D);
    const q = new Float32Array(split.q);
    ctx.device.queue.writeBuffer(kCache, 0, c.k);
    ctx.device.queue.writeBuffer(vCache, 0, c.v);
    ctx.device.queue.writeBuffer(qBuf, 0, q);
    ctx.device.queue.writeBuffer(gBuf, 0, qg);
    writeStep(ctx, step, { position: p0 });
    exec((enc) => {
      const pass = enc.beginComputePass();
      replayPlan(pass, plan);
      pass.end();
    });
    const want = sigmoidGateMul64(attention64(q, c.k, c.v, T, H, Hkv, D, p0, maxCtx), split.gate);
    check(`attentionPrefill replay p0=${p0}`, await read(out, T * H * D), want);
  }
  destroyPlan(plan);
});

test('attentionPrefill: workgroup storage within the default 16 KiB for every head dim, errors', async () => {
  await gpu();
  for (let D = 1; D <= 256; D++) {
    const { sharedBytes, constants } = attentionPrefillShape(D);
    assert.ok(sharedBytes <= 16384, `D=${D}: ${sharedBytes} bytes`);
    assert.ok(constants.KC >= 1 && 32 % constants.KC === 0 && constants.KC * D <= 2048, `D=${D}: KC ${constants.KC}`);
  }
  const b = ctx.storage(16);
  const enc = ctx.device.createCommandEncoder();
  assert.throws(() => attentionPrefill(rec(enc), b, b, b, b, 4, 6, 4, 64, 16), /H 6 is not a multiple of Hkv 4/);
  assert.throws(() => attentionPrefill(rec(enc), b, b, b, b, 4, 4, 2, 320, 16), /head dim 320/);
  assert.throws(() => attentionPrefill(rec(enc), b, b, b, b, 20, 4, 2, 64, 16), /20 tokens exceed the cache \(16\)/);
  enc.finish();
});

test('attentionPrefill vs ops.attention timing (QWEN_ATTN_BENCH=1)', { skip: !process.env.QWEN_ATTN_BENCH }, async () => {
  await gpu();
  const H = Number(process.env.QWEN_ATTN_BENCH_H ?? 8);
  const Hkv = Number(process.env.QWEN_ATTN_BENCH_HKV ?? 2);
  const D = Number(process.env.QWEN_ATTN_BENCH_D ?? 256);
  const reps = Number(process.env.QWEN_ATTN_BENCH_REPS ?? 2);
  const lengths = (process.env.QWEN_ATTN_BENCH_T ?? '512,2048').split(',').map(Number);
  for (const T of lengths) {
    const maxCtx = T;
    const k = up(randn(Hkv * maxCtx * D, 1));
    const v = up(randn(Hkv * maxCtx * D, 1));
    const q = up(randn(T * H * D, 1));
    const oP = ctx.storage(T * H * D * 4);
    const oA = ctx.storage(T * H * D * 4);
    // The warm-up (pipeline creation) runs 64 tokens with the same constants: without a split pass, which is
    // what attentionSplits picks for these T (asserted), so the timed calls compile nothing.
    const splits = ops.attentionSplits(T, H, Hkv, maxCtx);
    assert.equal(splits, 1, `T=${T}: attention would split its keys ${splits} ways`);
    // Wall time, and the process's CPU time: on SwiftShader the kernels run on this process's threads, and the
    // CPU time is the steadier of the two on a machine shared with other jobs.
    const time = async (fn: (r: ReturnType<typeof rec>, n: number) => void): Promise<{ wall: number; cpu: number }> => {
      exec((enc) => fn(rec(enc), Math.min(64, T)));
      await ctx.device.queue.onSubmittedWorkDone();
      const t0 = performance.now();
      const c0 = process.cpuUsage();
      for (let i = 0; i < reps; i++) exec((enc) => fn(rec(enc), T));
      await ctx.device.queue.onSubmittedWorkDone();
      const c = process.cpuUsage(c0);
      return { wall: (performance.now() - t0) / reps, cpu: (c.user + c.system) / 1000 / reps };
    };
    const tp = await time((r, n) => attentionPrefill(r, q, k, v, oP, n, H, Hkv, D, maxCtx));
    const ta = await time((r, n) => ops.attention(r, q, k, v, oA, n, H, Hkv, D, maxCtx, splits));
    console.log(`timing H=${H} Hkv=${Hkv} D=${D} T=${T} p0=0: attention / attentionPrefill = ${(ta.wall / tp.wall).toFixed(2)} wall, ` +
      `${(ta.cpu / tp.cpu).toFixed(2)} CPU time (${reps} reps each)`);
    check(`timing T=${T}: attentionPrefill vs ops.attention`, await read(oP, T * H * D), await read(oA, T * H * D));
  }
});
