// Hand-worked checks of the CPU reference ops, the chunked delta rule against the recurrent one, and the
// sequence bookkeeping of the reference model (prefill / decode / reset) on a small random model.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  add, attention, conv1dCausal, embedGather, gatedDelta, gatedDelta64, gatedDeltaChunked, gatedDeltaChunked64,
  linear, rmsNorm,
  rmsNormGated, rope, sigmoidGateMul, splitQGate, swiglu,
} from '../src/model/reference-ops.ts';
import type { GdnDims } from '../src/model/reference-ops.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import type { RefWeights } from '../src/model/reference.ts';
import type { ModelConfig } from '../src/format/config.ts';

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  assert.equal(a.length, b.length, 'length mismatch');
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

const near = (actual: ArrayLike<number>, expected: number[], tol = 1e-6, what = ''): void => {
  const err = maxAbsDiff(actual, expected);
  assert.ok(err <= tol, `${what}: max |Δ| ${err} > ${tol}\n  got      ${Array.from(actual)}\n  expected ${expected}`);
};

const f = (xs: number[]): Float32Array => Float32Array.from(xs);
const silu = (x: number): number => x / (1 + Math.exp(-x));

/** Deterministic uniform [−1, 1) stream (mulberry32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}
const randoms = (n: number, r: () => number, scale = 1): Float32Array => Float32Array.from({ length: n }, () => r() * scale);

test('linear: 2×3 times a 2×3 weight by hand', () => {
  // x = [[1,2,3],[4,5,6]], W = [[1,0,−1],[0.5,0.5,0.5]] → [[1−3, 3], [4−6, 7.5]]
  near(linear(f([1, 2, 3, 4, 5, 6]), f([1, 0, -1, 0.5, 0.5, 0.5]), 2, 2, 3), [-2, 3, -2, 7.5], 0, 'linear');
});

test('embedGather picks rows', () => {
  near(embedGather(f([0, 1, 10, 11, 20, 21]), [2, 0, 2], 2), [20, 21, 0, 1, 20, 21], 0, 'gather');
});

test('rmsNorm and rmsNormGated on [3, 4]', () => {
  // mean(x²) = (9 + 16)/2 = 12.5, sqrt(12.5) = 3.5355339059327378
  near(rmsNorm(f([3, 4]), f([1, 2]), 1, 2, 0), [0.8485281374238571, 2.2627416997969522], 1e-6, 'rmsNorm');
  // eps enters under the root: sqrt(12.5 + 0.5) = sqrt(13)
  near(rmsNorm(f([3, 4]), f([1, 1]), 1, 2, 0.5), [3 / 3.605551275463989, 4 / 3.605551275463989], 1e-6, 'rmsNorm eps');
  // two rows normalise independently
  near(rmsNorm(f([3, 4, -2, -2]), f([1, 1]), 2, 2, 0), [0.8485281374238571, 1.1313708498984762, -1, -1], 1e-6, 'rows');
  // silu(0) = 0, silu(1) = 1/(1 + e^−1) = 0.7310585786300049; norm first, gate second
  near(rmsNormGated(f([3, 4]), f([0, 1]), f([1, 1]), 1, 2, 0), [0, 1.1313708498984762 * 0.7310585786300049], 1e-6, 'gated');
});

test('splitQGate takes the first D of each head as query and the next D as gate', () => {
  // T = 1, H = 2, D = 2: [q0 q0 g0 g0 q1 q1 g1 g1]
  const { q, gate } = splitQGate(f([1, 2, 3, 4, 5, 6, 7, 8]), 1, 2, 2);
  near(q, [1, 2, 5, 6], 0, 'q');
  near(gate, [3, 4, 7, 8], 0, 'gate');
});

test('rope rotates (i, i + R/2) pairs of the first R dims at position p0 + t', () => {
  // D = 6, R = 4, theta = 10000: frequencies 10000^0 = 1 and 10000^(−2/4) = 0.01.
  const x = f([1, 2, 3, 4, 5, 6, /* t = 1 */ 1, 0, 0, 1, 7, 7]);
  const y = rope(x, 2, 1, 6, 4, 3, 10000);
  const rot = (a: number, b: number, th: number): [number, number] => [a * Math.cos(th) - b * Math.sin(th), b * Math.cos(th) + a * Math.sin(th)];
  // t = 0 at position 3: pair (0,2) angle 3, pair (1,3) angle 0.03; dims 4, 5 untouched
  const [a0, b0] = rot(1, 3, 3);
  const [a1, b1] = rot(2, 4, 0.03);
  // t = 1 at position 4: angles 4 and 0.04
  const [c0, d0] = rot(1, 0, 4);
  const [c1, d1] = rot(0, 1, 0.04);
  near(y, [a0, a1, b0, b1, 5, 6, c0, c1, d0, d1, 7, 7], 1e-6, 'rope');
  // position 0 is the identity
  near(rope(x.subarray(0, 6), 1, 1, 6, 4, 0, 10000), [1, 2, 3, 4, 5, 6], 0, 'rope p=0');
});

test('attention: single key returns v; causal mask; GQA head mapping; cache stride', () => {
  const D = 2, maxCtx = 4;
  // One kv head, one query, one cached key: softmax over one score is 1.
  const k1 = new Float32Array(maxCtx * D); k1.set([0.3, -0.7]);
  const v1 = new Float32Array(maxCtx * D); v1.set([5, -6]);
  near(attention(f([9, 9]), k1, v1, 1, 1, 1, D, 0, maxCtx), [5, -6], 1e-6, 'T=1 single key');

  // T = 2 from p0 = 0: query 0 sees key 0 only; query 1 has q ⊥ both keys → equal weights → mean of v.
  const k2 = new Float32Array(maxCtx * D); k2.set([1, 0, 1, 0]);
  const v2 = new Float32Array(maxCtx * D); v2.set([2, 4, 6, 8]);
  near(attention(f([1, 0, 0, 1]), k2, v2, 2, 1, 1, D, 0, maxCtx), [2, 4, 4, 6], 1e-6, 'causal');

  // Two keys with scores 0 and ln 3 (q·k/sqrt(2) = ln 3): weights 1/4, 3/4.
  const s = Math.log(3) * Math.sqrt(2);
  const k3 = new Float32Array(maxCtx * D); k3.set([0, 0, 1, 0]);
  near(attention(f([s, 0]), k3, v2, 1, 1, 1, D, 1, maxCtx), [0.25 * 2 + 0.75 * 6, 0.25 * 4 + 0.75 * 8], 1e-6, 'softmax');

  // H = 4, Hkv = 2: heads 0,1 read kv head 0, heads 2,3 read kv head 1 (kv head g starts at g·maxCtx·D).
  const k4 = new Float32Array(2 * maxCtx * D);
  const v4 = new Float32Array(2 * maxCtx * D);
  v4.set([1, 1], 0);
  v4.set([2, 2], maxCtx * D);
  near(attention(f([1, 2, 3, 4, 5, 6, 7, 8]), k4, v4, 1, 4, 2, D, 0, maxCtx), [1, 1, 1, 1, 2, 2, 2, 2], 1e-6, 'GQA');
});

test('sigmoidGateMul, swiglu, add', () => {
  near(sigmoidGateMul(f([2, 3]), f([0, Math.log(3)])), [1, 2.25], 1e-6, 'sigmoid gate');
  near(swiglu(f([0, 1]), f([5, 2])), [0, 2 * 0.7310585786300049], 1e-6, 'swiglu');
  near(add(f([1, 2]), f([0.5, -2])), [1.5, 0], 0, 'add');
});

test('conv1dCausal on a 3-token example, then one more token from the carried state', () => {
  // C = 2, Kc = 3: channel 0 weights [1, 2, 3] (3 multiplies the current token), channel 1 passes through.
  const w = f([1, 2, 3, 0, 0, 1]);
  const m = f([1, 10, 2, 20, 3, 30]);
  const r = conv1dCausal(m, new Float32Array(4), w, 3, 2, 3);
  // ch0: t0 = 3·1 = 3; t1 = 2·1 + 3·2 = 8; t2 = 1·1 + 2·2 + 3·3 = 14
  near(r.out, [silu(3), silu(10), silu(8), silu(20), silu(14), silu(30)], 1e-6, 'conv out');
  near(r.state, [2, 20, 3, 30], 0, 'conv state');
  // next token 4: ch0 = 1·2 + 2·3 + 3·4 = 20
  const r2 = conv1dCausal(f([4, 40]), r.state, w, 1, 2, 3);
  near(r2.out, [silu(20), silu(40)], 1e-5, 'conv decode');
  near(r2.state, [3, 30, 4, 40], 0, 'state after one token keeps the older row');
});

test('gatedDelta: two tokens of a 1-head delta rule by hand', () => {
  // Hk = Hv = 1, Dk = 2, Dv = 1. u = [q (2) | k (2) | v (1)].
  const dims: GdnDims = { Hk: 1, Hv: 1, Dk: 2, Dv: 1 };
  const u = f([1, 0, 1, 0, 2, /* t1 */ 0, 1, 1, 0, 5]);
  const b = f([0, 0]); // β = 1/2
  const a = f([0, 0]); // softplus(0 + 0) = ln 2, A_log = 0 → g = −ln 2, α = 1/2
  const S = new Float32Array(2);
  const o = gatedDelta(u, a, b, f([0]), f([0]), S, 2, dims);
  const kn = 1 / Math.sqrt(1 + 1e-6); // k̂ = (kn, 0)
  const qs = kn / Math.sqrt(2); // q̂ = (qs, 0) then (0, qs)
  // t0: S = 0 → δ = ½·2 = 1 → S = (kn, 0) → o = kn·qs
  // t1: S = (kn/2, 0); e = kn²/2; δ = ½(5 − kn²/2); S₀ += kn·δ; o = S₁·qs = 0 (q̂ reads the empty row)
  const s0 = kn / 2 + kn * 0.5 * (5 - (kn * kn) / 2);
  near(o, [kn * qs, 0], 1e-6, 'o');
  near(S, [s0, 0], 1e-6, 'state');
});

/** aLog: a constant A_log for every head (else random in ±aLogScale); aShift moves a, so softplus(a + dt_bias) too. */
interface GdnCase { name: string; T: number; aLogScale: number; aShift: number; dims: GdnDims; chunk?: number; aLog?: number }

function gdnInputs(c: GdnCase, seed: number) {
  const r = rng(seed);
  const { Hk, Hv, Dk, Dv } = c.dims;
  const convDim = 2 * Hk * Dk + Hv * Dv;
  return {
    u: randoms(c.T * convDim, r),
    a: Float32Array.from({ length: c.T * Hv }, () => r() + c.aShift),
    b: randoms(c.T * Hv, r, 2),
    aLog: Float32Array.from({ length: Hv }, () => c.aLog ?? r() * c.aLogScale),
    dtBias: randoms(Hv, r),
    state: randoms(Hv * Dk * Dv, r, 0.5),
  };
}

test('chunked gated delta rule equals the recurrent form (max abs ≤ 1e-5)', () => {
  const dims: GdnDims = { Hk: 2, Hv: 4, Dk: 16, Dv: 8 };
  const cases: GdnCase[] = [
    ...[1, 63, 64, 65, 150].map((T) => ({ name: `T=${T}`, T, aLogScale: 1, aShift: 0, dims })),
    // long memory: g = −exp(−10)·softplus(≈ −10) ≈ −2e-9, so α ≈ 1 and the state accumulates over all 150 tokens
    { name: 'long decay T=150', T: 150, aLogScale: 0, aShift: -10, aLog: -10, dims },
    // fast decay: g ≈ −20 per token, γ underflows inside a chunk
    { name: 'strong decay T=130', T: 130, aLogScale: 0, aShift: 20, dims },
    { name: 'chunk 16, T=70', T: 70, aLogScale: 1, aShift: 0, dims, chunk: 16 },
    { name: 'Hv=Hk, T=100', T: 100, aLogScale: 1, aShift: 0, dims: { Hk: 2, Hv: 2, Dk: 8, Dv: 8 } },
  ];
  for (const [n, c] of cases.entries()) {
    const x = gdnInputs(c, 100 + n);
    const sRec = x.state.slice();
    const sChk = x.state.slice();
    const oRec = gatedDelta(x.u, x.a, x.b, x.aLog, x.dtBias, sRec, c.T, c.dims);
    const oChk = gatedDeltaChunked(x.u, x.a, x.b, x.aLog, x.dtBias, sChk, c.T, c.dims, c.chunk);
    const eo = maxAbsDiff(oRec, oChk);
    const es = maxAbsDiff(sRec, sChk);
    // The f32 contract rounds both to the same f32 almost everywhere; the f64 forms show the true gap.
    const s64Rec = Float64Array.from(x.state);
    const s64Chk = Float64Array.from(x.state);
    const eo64 = maxAbsDiff(
      gatedDelta64(x.u, x.a, x.b, x.aLog, x.dtBias, s64Rec, c.T, c.dims),
      gatedDeltaChunked64(x.u, x.a, x.b, x.aLog, x.dtBias, s64Chk, c.T, c.dims, c.chunk),
    );
    const es64 = maxAbsDiff(s64Rec, s64Chk);
    console.log(`chunked vs recurrent ${c.name}: f32 max |Δo| ${eo.toExponential(2)}, |ΔS| ${es.toExponential(2)}; ` +
      `f64 max |Δo| ${eo64.toExponential(2)}, |ΔS| ${es64.toExponential(2)}`);
    assert.ok(eo <= 1e-5 && es <= 1e-5, `${c.name}: o ${eo}, S ${es}`);
    assert.ok(eo64 <= 1e-12 && es64 <= 1e-12, `${c.name} (f64): o ${eo64}, S ${es64}`);
    assert.ok(x.state.some((v, i) => v !== sRec[i]), 'state must be updated in place');
  }
});

test('recurrent gated delta fed token by token equals one call over all tokens', () => {
  const c: GdnCase = { name: 'split', T: 37, aLogScale: 1, aShift: 0, dims: { Hk: 1, Hv: 2, Dk: 16, Dv: 8 } };
  const x = gdnInputs(c, 7);
  const { Hk, Hv, Dk, Dv } = c.dims;
  const convDim = 2 * Hk * Dk + Hv * Dv;
  const step = (t: number) => [x.u.subarray(t * convDim, (t + 1) * convDim), x.a.subarray(t * Hv, (t + 1) * Hv), x.b.subarray(t * Hv, (t + 1) * Hv)] as const;

  // f64 state: every call does the same arithmetic in the same order, so the results are bit-identical.
  const s64All = Float64Array.from(x.state);
  const s64Step = Float64Array.from(x.state);
  const oAll64 = gatedDelta64(x.u, x.a, x.b, x.aLog, x.dtBias, s64All, c.T, c.dims);
  const oStep64 = new Float64Array(c.T * Hv * Dv);
  for (let t = 0; t < c.T; t++) {
    const [u, a, b] = step(t);
    oStep64.set(gatedDelta64(u, a, b, x.aLog, x.dtBias, s64Step, 1, c.dims), t * Hv * Dv);
  }
  assert.equal(maxAbsDiff(oAll64, oStep64), 0);
  assert.equal(maxAbsDiff(s64All, s64Step), 0);

  // f32 state (the GPU contract): the state is rounded to f32 between calls, so only f32 rounding separates them.
  const sAll = x.state.slice();
  const sStep = x.state.slice();
  const oAll = gatedDelta(x.u, x.a, x.b, x.aLog, x.dtBias, sAll, c.T, c.dims);
  const oStep = new Float32Array(c.T * Hv * Dv);
  for (let t = 0; t < c.T; t++) {
    const [u, a, b] = step(t);
    oStep.set(gatedDelta(u, a, b, x.aLog, x.dtBias, sStep, 1, c.dims), t * Hv * Dv);
  }
  const eo = maxAbsDiff(oAll, oStep);
  const es = maxAbsDiff(sAll, sStep);
  console.log(`recurrent token-by-token vs one call (f32 state): max |Δo| ${eo.toExponential(2)}, max |ΔS| ${es.toExponential(2)}`);
  assert.ok(eo <= 1e-6 && es <= 1e-6);
});

// A small random model with every structural feature of the real ones: GQA (3 heads / 1 kv), partial rotary,
// Hv = 2·Hk, two full-attention layers.
function tinyModel(seed: number): { cfg: ModelConfig; weights: RefWeights } {
  const cfg: ModelConfig = {
    modelType: 'qwen3_5_text', hiddenSize: 32, numLayers: 8, intermediateSize: 48,
    numHeads: 3, numKvHeads: 1, headDim: 16,
    linearNumKeyHeads: 1, linearNumValueHeads: 2, linearKeyHeadDim: 8, linearValueHeadDim: 8, convKernel: 4,
    layerTypes: Array.from({ length: 8 }, (_, i) => ((i + 1) % 4 === 0 ? 'full_attention' : 'linear_attention')),
    rmsNormEps: 1e-6, ropeTheta: 1e7, partialRotaryFactor: 0.25, rotaryDim: 4, vocabSize: 40,
    maxPositionEmbeddings: 4096, tieWordEmbeddings: true, eosTokenIds: [], quantization: null, fp8: null,
  };
  const r = rng(seed);
  const d = 32, I = 48, H = 3, Hkv = 1, D = 16, Hk = 1, Hv = 2, Dk = 8, Dv = 8;
  const convDim = 2 * Hk * Dk + Hv * Dv;
  const w: RefWeights = new Map();
  const mat = (name: string, rows: number, cols: number) => w.set(name, randoms(rows * cols, r, 1 / Math.sqrt(cols)));
  const gain = (name: string, n: number) => w.set(name, Float32Array.from({ length: n }, () => 1 + 0.2 * r()));
  mat('embed_tokens', cfg.vocabSize, d);
  gain('norm', d);
  cfg.layerTypes.forEach((type, i) => {
    const p = `layers.${i}.`;
    gain(`${p}input_layernorm`, d);
    gain(`${p}post_attention_layernorm`, d);
    mat(`${p}mlp.gate_proj`, I, d);
    mat(`${p}mlp.up_proj`, I, d);
    mat(`${p}mlp.down_proj`, d, I);
    if (type === 'linear_attention') {
      mat(`${p}linear_attn.in_proj_qkv`, convDim, d);
      mat(`${p}linear_attn.in_proj_z`, Hv * Dv, d);
      mat(`${p}linear_attn.in_proj_b`, Hv, d);
      mat(`${p}linear_attn.in_proj_a`, Hv, d);
      mat(`${p}linear_attn.conv1d`, convDim, 4);
      mat(`${p}linear_attn.out_proj`, d, Hv * Dv);
      w.set(`${p}linear_attn.A_log`, randoms(Hv, r));
      w.set(`${p}linear_attn.dt_bias`, randoms(Hv, r));
      gain(`${p}linear_attn.norm`, Dv);
    } else {
      mat(`${p}self_attn.q_proj`, 2 * H * D, d);
      mat(`${p}self_attn.k_proj`, Hkv * D, d);
      mat(`${p}self_attn.v_proj`, Hkv * D, d);
      mat(`${p}self_attn.o_proj`, d, H * D);
      gain(`${p}self_attn.q_norm`, D);
      gain(`${p}self_attn.k_norm`, D);
    }
  });
  return { cfg, weights: w };
}

test('reference model: prefill, split prefill, decode and the chunked form agree; reset restarts', () => {
  const { cfg, weights } = tinyModel(3);
  const r = rng(11);
  const ids = Array.from({ length: 150 }, () => Math.floor((r() + 1) * 20));

  const whole = createReferenceModel(cfg, weights, { tied: true });
  const logits = whole.prefill(ids);
  assert.equal(logits.length, ids.length);
  assert.equal(logits[0].length, cfg.vocabSize);
  assert.equal(whole.position, ids.length);

  // prefill in pieces (crossing the KV-cache growth at 64 positions), then token-by-token decode
  const pieces = createReferenceModel(cfg, weights, { tied: true });
  const got = [...pieces.prefill(ids.slice(0, 5)), ...pieces.prefill(ids.slice(5, 100))];
  for (const id of ids.slice(100)) got.push(pieces.decode(id));
  let eSplit = 0;
  got.forEach((l, t) => (eSplit = Math.max(eSplit, maxAbsDiff(l, logits[t]))));

  const chunked = createReferenceModel(cfg, weights, { tied: true, gdn: 'chunked' });
  let eChunk = 0;
  chunked.prefill(ids).forEach((l, t) => (eChunk = Math.max(eChunk, maxAbsDiff(l, logits[t]))));

  pieces.reset();
  assert.equal(pieces.position, 0);
  const again = pieces.prefill(ids.slice(0, 20));
  let eReset = 0;
  again.forEach((l, t) => (eReset = Math.max(eReset, maxAbsDiff(l, logits[t]))));

  console.log(`reference model: split/decode vs whole ${eSplit.toExponential(2)}, chunked vs recurrent ${eChunk.toExponential(2)}, after reset ${eReset.toExponential(2)}`);
  assert.ok(eSplit <= 1e-5, `split ${eSplit}`);
  assert.ok(eChunk <= 1e-5, `chunked ${eChunk}`);
  assert.equal(eReset, 0);
});

test('reference model rejects missing weights and bad token ids with readable errors', () => {
  const { cfg, weights } = tinyModel(4);
  const partial = new Map(weights);
  partial.delete('layers.3.self_attn.k_norm');
  assert.throws(() => createReferenceModel(cfg, partial, { tied: true }), /layers\.3\.self_attn\.k_norm/);
  assert.throws(() => createReferenceModel(cfg, weights, { tied: false }), /lm_head/);
  const m = createReferenceModel(cfg, weights, { tied: true });
  assert.throws(() => m.decode(cfg.vocabSize), /token id/);
});
