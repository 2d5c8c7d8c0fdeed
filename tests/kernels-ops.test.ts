// GPU kernels of src/gpu/ops.ts against the CPU reference (src/model/reference-ops.ts) on random inputs.
// Tolerance: max |gpu − ref| ≤ 1e-4 · max(1, max |ref|). Shapes are deliberately odd (rows not multiples of the
// workgroup size, head dims not multiples of the tile widths, GQA ratios 2 and 3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ops from '../src/gpu/ops.ts';
import * as ref from '../src/model/reference-ops.ts';

import { check, exec, gpu, randomStream, read, rec, up, zeros } from './kernel-harness.ts';

const { randn } = randomStream(1234);

test('rmsNorm', async () => {
  await gpu();
  for (const [rows, n] of [[7, 64], [5, 192], [3, 256], [301, 256], [2, 1000], [9, 20]]) {
    const x = randn(rows * n, 3);
    const gain = randn(n, 1, 1);
    const y = zeros(rows * n);
    await exec((enc) => ops.rmsNorm(rec(enc), up(x), up(gain), y, rows, n, 1e-6));
    check(`rmsNorm rows=${rows} n=${n}`, await read(y, rows * n), ref.rmsNorm(x, gain, rows, n, 1e-6));
  }
  // In place (q_norm / k_norm usage: rows = T·heads, n = D).
  const rows = 5 * 3;
  const n = 64;
  const x = randn(rows * n, 2);
  const gain = randn(n, 0.5, 1);
  const xb = up(x);
  await exec((enc) => ops.rmsNorm(rec(enc), xb, up(gain), xb, rows, n, 1e-6));
  check('rmsNorm in place', await read(xb, rows * n), ref.rmsNorm(x, gain, rows, n, 1e-6));
});

test('rmsNormGated', async () => {
  await gpu();
  for (const [rows, n] of [[6, 32], [10, 128], [3, 192]]) {
    const x = randn(rows * n, 2);
    const z = randn(rows * n, 4);
    const gain = randn(n, 0.5, 1);
    const y = zeros(rows * n);
    await exec((enc) => ops.rmsNormGated(rec(enc), up(x), up(z), up(gain), y, rows, n, 1e-6));
    check(`rmsNormGated rows=${rows} n=${n}`, await read(y, rows * n), ref.rmsNormGated(x, z, gain, rows, n, 1e-6));
  }
  const rows = 8;
  const n = 32;
  const x = randn(rows * n, 2);
  const z = randn(rows * n, 4);
  const gain = randn(n, 0.5, 1);
  const xb = up(x);
  await exec((enc) => ops.rmsNormGated(rec(enc), xb, up(z), up(gain), xb, rows, n, 1e-6));
  check('rmsNormGated in place', await read(xb, rows * n), ref.rmsNormGated(x, z, gain, rows, n, 1e-6));
});

test('element-wise: swiglu, add', async () => {
  await gpu();
  const n = 70 * 192 + 3;
  const a = randn(n, 3);
  const gt = randn(777, 30);
  const u = randn(777, 2);
  const out = zeros(777);
  await exec((enc) => ops.swiglu(rec(enc), up(gt), up(u), out, 777));
  check('swiglu', await read(out, 777), ref.swiglu(gt, u));

  const b = randn(n, 3);
  const ab2 = up(a);
  await exec((enc) => ops.add(rec(enc), ab2, up(b), n));
  check('add', await read(ab2, n), ref.add(a, b));
});

test('rope (partial and full rotary dim, large positions)', async () => {
  await gpu();
  const cases: Array<[number, number, number, number, number, number]> = [
    // T, heads, D, R, p0, theta
    [5, 3, 64, 32, 0, 1e7],
    [70, 2, 256, 64, 17, 1e7],
    [1, 4, 64, 64, 1000, 1e4],
    [3, 2, 256, 64, 262000, 1e7],
    [2, 2, 128, 128, 4_000_000, 1e6],
  ];
  for (const [T, heads, D, R, p0, theta] of cases) {
    const x = randn(T * heads * D, 2);
    const xb = up(x);
    await exec((enc) => ops.rope(rec(enc, p0), xb, T, heads, D, R, theta));
    check(`rope T=${T} heads=${heads} D=${D} R=${R} p0=${p0}`, await read(xb, x.length), ref.rope(x, T, heads, D, R, p0, theta));
  }
});

// Fills a CPU copy of the cache the way kvAppend should.
function cpuAppend(cache: Float32Array, src: Float32Array, T: number, Hkv: number, D: number, p0: number, maxCtx: number): void {
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hkv; h++) {
      cache.set(src.subarray((t * Hkv + h) * D, (t * Hkv + h + 1) * D), (h * maxCtx + p0 + t) * D);
    }
  }
}

test('kvAppend + attention (prefill, continuation, decode, splits)', async () => {
  await gpu();
  const configs: Array<{ H: number; Hkv: number; D: number; steps: number[]; splits?: number }> = [
    { H: 4, Hkv: 2, D: 64, steps: [70, 5, 1] },
    { H: 6, Hkv: 2, D: 128, steps: [33, 1, 1] },
    { H: 3, Hkv: 1, D: 256, steps: [12, 5], splits: 3 },
    { H: 4, Hkv: 2, D: 64, steps: [70, 5], splits: 4 },
    { H: 4, Hkv: 4, D: 40, steps: [9, 1] },
  ];
  for (const { H, Hkv, D, steps, splits } of configs) {
    const maxCtx = steps.reduce((s, t) => s + t, 0) + 7;
    // Unwritten cache rows hold NaN: any read past the causal/cache limit poisons the result.
    const kCpu = new Float32Array(Hkv * maxCtx * D).fill(NaN);
    const vCpu = new Float32Array(Hkv * maxCtx * D).fill(NaN);
    const kCache = up(kCpu);
    const vCache = up(vCpu);
    let p0 = 0;
    for (const T of steps) {
      const q = randn(T * H * D, 2);
      const k = randn(T * Hkv * D, 2);
      const v = randn(T * Hkv * D, 2);
      const out = zeros(T * H * D);
      await exec((enc) => {
        ops.kvAppend(rec(enc, p0), up(k), up(v), kCache, vCache, T, Hkv, D, maxCtx);
        ops.attention(rec(enc, p0), up(q), kCache, vCache, out, T, H, Hkv, D, maxCtx, splits);
      });
      cpuAppend(kCpu, k, T, Hkv, D, p0, maxCtx);
      cpuAppend(vCpu, v, T, Hkv, D, p0, maxCtx);
      const tag = `H=${H} Hkv=${Hkv} D=${D} T=${T} p0=${p0}${splits ? ` splits=${splits}` : ''}`;
      if (T > 1) {
        // Bit-exact copies; NaN rows compare equal through Object.is.
        const got = await read(kCache, kCpu.length);
        assert.ok(got.every((x, i) => Object.is(x, kCpu[i])), `kvAppend ${tag}: K cache differs`);
      }
      check(`attention ${tag}`, await read(out, T * H * D), ref.attention(q, kCpu, vCpu, T, H, Hkv, D, p0, maxCtx));
      p0 += T;
    }
  }
  // Decode deep into a long cache: exercises the automatic split path and its combine.
  const [H, Hkv, D, maxCtx, p0] = [4, 2, 64, 1200, 1100];
  const kCpu = randn(Hkv * maxCtx * D, 2);
  const vCpu = randn(Hkv * maxCtx * D, 2);
  const q = randn(H * D, 2);
  const out = zeros(H * D);
  await exec((enc) => ops.attention(rec(enc, p0), up(q), up(kCpu), up(vCpu), out, 1, H, Hkv, D, maxCtx));
  check(`attention decode H=${H} Hkv=${Hkv} D=${D} p0=${p0}`, await read(out, H * D), ref.attention(q, kCpu, vCpu, 1, H, Hkv, D, p0, maxCtx));
});

test('conv1dCausal (state carried across calls)', async () => {
  await gpu();
  for (const [C, Kc] of [[100, 4], [300, 3]]) {
    const w = randn(C * Kc, 0.7);
    let stateCpu: Float32Array = randn((Kc - 1) * C, 2);
    const state = up(stateCpu);
    const wb = up(w);
    for (const T of [5, 1, 2, 70, 1]) {
      const m = randn(T * C, 2);
      const out = zeros(T * C);
      await exec((enc) => ops.conv1dCausal(rec(enc), up(m), state, wb, out, T, C, Kc));
      const want = ref.conv1dCausal(m, stateCpu, w, T, C, Kc);
      check(`conv1dCausal C=${C} Kc=${Kc} T=${T} out`, await read(out, T * C), want.out);
      check(`conv1dCausal C=${C} Kc=${Kc} T=${T} state`, await read(state, (Kc - 1) * C), want.state);
      stateCpu = want.state;
    }
  }
});

function gdnInputs(T: number, dims: ops.GdnDims) {
  const { Hk, Hv, Dk, Dv } = dims;
  const convDim = 2 * Hk * Dk + Hv * Dv;
  // Mostly mild decay (α ≈ 0.5..1) so the carried state matters; a[0] = 30 takes softplus's x > 20 branch.
  const a = randn(T * Hv, 3, -3);
  a[0] = 30;
  return {
    u: randn(T * convDim, 3),
    a,
    b: randn(T * Hv, 3),
    aLog: randn(Hv, 1, -1.5),
    dtBias: randn(Hv, 1),
  };
}

test('gatedDelta (one T-token call, T=1 steps, non-zero state)', async () => {
  await gpu();
  const cases: Array<{ dims: ops.GdnDims; T: number; bv?: number }> = [
    { dims: { Hk: 2, Hv: 4, Dk: 32, Dv: 32 }, T: 70 },
    { dims: { Hk: 2, Hv: 4, Dk: 32, Dv: 32 }, T: 5, bv: 32 },
    { dims: { Hk: 1, Hv: 2, Dk: 128, Dv: 128 }, T: 5 },
    { dims: { Hk: 1, Hv: 2, Dk: 128, Dv: 128 }, T: 5, bv: 32 },
    { dims: { Hk: 1, Hv: 3, Dk: 48, Dv: 40 }, T: 9 },
    { dims: { Hk: 2, Hv: 2, Dk: 256, Dv: 24 }, T: 3, bv: 8 },
  ];
  for (const { dims, T, bv } of cases) {
    const { Hv, Dk, Dv } = dims;
    const { u, a, b, aLog, dtBias } = gdnInputs(T, dims);
    const s0 = randn(Hv * Dk * Dv, 2);
    const tag = `Hk=${dims.Hk} Hv=${Hv} Dk=${Dk} Dv=${Dv} T=${T}${bv ? ` BV=${bv}` : ''}`;

    const sRef = Float32Array.from(s0);
    const want = ref.gatedDelta(u, a, b, aLog, dtBias, sRef, T, dims);

    // One call over all T tokens.
    const state = up(s0);
    const out = zeros(T * Hv * Dv);
    const [ub, ab, bb, lb, db] = [up(u), up(a), up(b), up(aLog), up(dtBias)];
    await exec((enc) => ops.gatedDelta(rec(enc), ub, ab, bb, lb, db, state, out, T, dims, bv));
    check(`gatedDelta ${tag} out`, await read(out, T * Hv * Dv), want);
    check(`gatedDelta ${tag} state`, await read(state, s0.length), sRef);

    // The same tokens as T decode steps, each its own call (state must carry through the buffer).
    if (T <= 9) {
      const convDim = u.length / T;
      const state1 = up(s0);
      const outs = new Float32Array(T * Hv * Dv);
      for (let t = 0; t < T; t++) {
        const o = zeros(Hv * Dv);
        await exec((enc) => ops.gatedDelta(rec(enc),
          up(u.subarray(t * convDim, (t + 1) * convDim)), up(a.subarray(t * Hv, (t + 1) * Hv)),
          up(b.subarray(t * Hv, (t + 1) * Hv)), lb, db, state1, o, 1, dims, bv));
        outs.set(await read(o, Hv * Dv), t * Hv * Dv);
      }
      check(`gatedDelta ${tag} as T=1 steps out`, outs, want);
      check(`gatedDelta ${tag} as T=1 steps state`, await read(state1, s0.length), sRef);
    }
  }
});

test('normRope: q rows out of q_proj output (stride 2D), k rows into the cache; = rmsNorm then rope', async () => {
  await gpu();
  for (const [T, H, D, R, p0] of [[1, 4, 64, 16, 0], [5, 3, 128, 32, 77], [2, 2, 256, 256, 4000], [3, 2, 32, 8, 9]]) {
    const theta = 1e7;
    const qg = randn(T * H * 2 * D, 2);
    const gain = randn(D, 0.5, 1);
    const y = zeros(T * H * D);
    await exec((enc) => ops.normRope(rec(enc, p0), up(qg), up(gain), y, T, H, D, R, theta, 1e-6, { inStride: 2 * D }));
    const q = ref.splitQGate(qg, T, H, D).q;
    const want = ref.rope(ref.rmsNorm(q, gain, T * H, D, 1e-6), T, H, D, R, p0, theta);
    check(`normRope q T=${T} H=${H} D=${D} R=${R} p0=${p0}`, await read(y, T * H * D), want);

    const maxCtx = p0 + T + 3;
    const k = randn(T * H * D, 2);
    const cache = zeros(H * maxCtx * D);
    await exec((enc) => ops.normRope(rec(enc, p0), up(k), up(gain), cache, T, H, D, R, theta, 1e-6, { cacheRows: maxCtx }));
    const kr = ref.rope(ref.rmsNorm(k, gain, T * H, D, 1e-6), T, H, D, R, p0, theta);
    const wantCache = new Float32Array(H * maxCtx * D);
    cpuAppend(wantCache, kr, T, H, D, p0, maxCtx);
    check(`normRope k→cache T=${T} H=${H} D=${D} p0=${p0}`, await read(cache, wantCache.length), wantCache);

    // With copyV the v rows land in the V cache at the same rows, the k side unchanged.
    const v = randn(T * H * D, 1);
    const cacheK = zeros(H * maxCtx * D);
    const cacheV = zeros(H * maxCtx * D);
    await exec((enc) => ops.normRope(rec(enc, p0), up(k), up(gain), cacheK, T, H, D, R, theta, 1e-6, {
      cacheRows: maxCtx, copyV: { v: up(v), vCache: cacheV },
    }));
    check(`normRope+v k→cache T=${T} H=${H} D=${D} p0=${p0}`, await read(cacheK, wantCache.length), wantCache);
    const wantV = new Float32Array(H * maxCtx * D);
    cpuAppend(wantV, v, T, H, D, p0, maxCtx);
    check(`normRope+v v→cache T=${T} H=${H} D=${D} p0=${p0}`, await read(cacheV, wantV.length), wantV);
  }
});

test('cacheAppend and gated attention (σ(gate) applied as the output is written, split and unsplit)', async () => {
  await gpu();
  const [H, Hkv, D, maxCtx] = [4, 2, 64, 300];
  for (const [T, p0, splits] of [[1, 0, undefined], [1, 250, undefined], [1, 250, 1], [6, 40, 1], [6, 40, 3]] as const) {
    const kvLen = p0 + T;
    const kAll = randn(kvLen * Hkv * D, 1);
    const vAll = randn(kvLen * Hkv * D, 1);
    const kCpu = new Float32Array(Hkv * maxCtx * D);
    const vCpu = new Float32Array(Hkv * maxCtx * D);
    cpuAppend(kCpu, kAll, kvLen, Hkv, D, 0, maxCtx);
    cpuAppend(vCpu, vAll.subarray(0, p0 * Hkv * D), p0, Hkv, D, 0, maxCtx);
    // The last T rows of V go in through cacheAppend.
    const vCache = up(vCpu);
    const vNew = vAll.subarray(p0 * Hkv * D);
    await exec((enc) => ops.cacheAppend(rec(enc, p0), up(vNew), vCache, T, Hkv, D, maxCtx));
    cpuAppend(vCpu, vNew, T, Hkv, D, p0, maxCtx);
    assert.ok((await read(vCache, vCpu.length)).every((x, i) => Object.is(x, vCpu[i])), `cacheAppend T=${T} p0=${p0}`);

    const qg = randn(T * H * 2 * D, 1);
    const q = ref.splitQGate(qg, T, H, D);
    const out = zeros(T * H * D);
    await exec((enc) => ops.attention(rec(enc, p0), up(q.q), up(kCpu), vCache, out, T, H, Hkv, D, maxCtx, splits, { gate: up(qg) }));
    const want = ref.sigmoidGateMul(ref.attention(q.q, kCpu, vCpu, T, H, Hkv, D, p0, maxCtx), q.gate);
    check(`gated attention T=${T} p0=${p0} splits=${splits ?? 'auto'}`, await read(out, T * H * D), want);
  }
});
