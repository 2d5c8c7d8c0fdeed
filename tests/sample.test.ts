// GPU sampling (src/gpu/sample.ts) against the CPU reference (src/model/reference-sample.ts): the sampled id must
// be identical. The GPU sums weights in f32 and the reference in f64, so a draw whose u lies within `tol` of a
// cumulative-probability boundary, or a top-p / min-p decision that close to its threshold, could legitimately
// differ; such u are redrawn and such params nudged (the counts are printed). Everything else must match exactly,
// ties included. Plus hand-checked reference cases, the PRNG, penalty counts, and a chi-square test of the drawn
// distribution.
import '../src/node/shaders-node.ts';
import { directRecorder } from '../src/gpu/plan.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getNodeGpu } from '../src/node/dawn.ts';
import { readBuffer, uploadBytes, type GpuContext } from '../src/gpu/context.ts';
import {
  createRng, createSampler, destroySampler, readSampled, recordTokens, resetSampler, sampleToken, type Sampler, type SamplingParams,
} from '../src/gpu/sample.ts';
import { sampleReference, sampleReferenceTrace, type SampleTrace } from '../src/model/reference-sample.ts';

const OFF: SamplingParams = { temperature: 1, topK: 0, topP: 1, minP: 0, presencePenalty: 0, repetitionPenalty: 1 };
const P = (p: Partial<SamplingParams>): SamplingParams => ({ ...OFF, ...p });

let ctx: GpuContext;
async function gpu(): Promise<GpuContext> {
  ctx ??= await getNodeGpu();
  return ctx;
}

function gaussian(rng: () => number): number {
  const u1 = Math.max(rng(), 1e-9);
  return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * rng());
}

type Shape = 'normal' | 'ties' | 'extreme' | 'peaked';
function makeLogits(V: number, shape: Shape, rng: () => number): Float32Array {
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const g = gaussian(rng);
    if (shape === 'normal') x[i] = 3 * g;
    else if (shape === 'ties') x[i] = Math.round(4 * g) / 2; // multiples of 0.5: many equal logits
    else if (shape === 'peaked') x[i] = 2 * g - 4; // LLM-like: a long low tail and a few strong tokens
    else x[i] = rng() < 0.3 ? [-1e30, -3e38, -Infinity, -1e6][Math.floor(rng() * 4)] : 2 * g;
  }
  if (shape === 'peaked') for (let j = 0; j < 40; j++) x[Math.floor(rng() * V)] = 4 + 8 * rng();
  if (shape === 'ties') {
    // Several tokens share the maximum, spread over different prep workgroups.
    let m = -Infinity;
    for (const v of x) m = Math.max(m, v);
    for (const i of [V - 1, Math.floor(V / 2), 3]) x[i] = m;
  }
  if (shape === 'extreme') {
    x[Math.floor(V / 3)] = NaN; // never sampled
    x[Math.floor(V / 5)] = Infinity; // clamped to FLT_MAX: becomes the max
  }
  return x;
}

/** min |cumulative − u| over the kept tokens (the same quantity as trace.margins.draw) for another u. */
function drawMargin(trace: SampleTrace, u: number): number {
  let acc = 0;
  let m = Infinity;
  for (const p of trace.probs) {
    acc += p;
    m = Math.min(m, Math.abs(acc - u));
  }
  return m;
}

interface Step { params: SamplingParams; u: number; want: number }
interface Nudges { u: number; params: number }

/**
 * Plans a sequence of draws on one sampler: for each params, a u (redrawn while it is within tol of a boundary)
 * and the reference id, with `counts` updated as the GPU will (each sampled id is counted).
 */
function plan(
  logits: Float32Array, counts: Uint32Array, valid: number, paramsList: SamplingParams[], rng: () => number,
  tol: number, nudges: Nudges,
): Step[] {
  const steps: Step[] = [];
  for (let params of paramsList) {
    let trace = sampleReferenceTrace(logits, counts, params, 0, valid);
    for (let tries = 0; trace.margins.topP < tol || trace.margins.minP < 1e-4; tries++) {
      assert.ok(tries < 50, 'could not move the filters off their thresholds');
      params = { ...params, topP: params.topP < 1 ? params.topP * 0.99 : 1, minP: params.minP * 1.05 };
      nudges.params++;
      trace = sampleReferenceTrace(logits, counts, params, 0, valid);
    }
    let u = rng();
    for (let tries = 0; !trace.greedy && drawMargin(trace, u) < tol; tries++) {
      assert.ok(tries < 100, 'could not find a u away from the boundaries');
      u = rng();
      nudges.u++;
    }
    const want = sampleReference(logits, counts, params, u, valid);
    counts[want]++;
    steps.push({ params, u, want });
  }
  return steps;
}

/** Encodes every step in one command buffer, collecting each sampled id; returns the ids. */
async function runSteps(sampler: Sampler, logits: GPUBuffer, steps: Step[]): Promise<Uint32Array> {
  const out = ctx.storage(steps.length * 4, 'sample-test-ids');
  const enc = ctx.device.createCommandEncoder();
  steps.forEach((s, i) => {
    sampleToken(directRecorder(ctx, enc), sampler, logits, s.params, s.u);
    enc.copyBufferToBuffer(sampler.ids, 0, out, i * 4, 4);
  });
  ctx.device.queue.submit([enc.finish()]);
  const ids = new Uint32Array(await readBuffer(ctx, out, steps.length * 4));
  out.destroy();
  return ids;
}

async function readCounts(sampler: Sampler): Promise<Uint32Array> {
  return new Uint32Array(await readBuffer(ctx, sampler.counts, sampler.vocabSize * 4));
}

function describe(p: SamplingParams): string {
  const parts = [`T=${p.temperature}`];
  if (p.topK) parts.push(`k=${p.topK}`);
  if (p.topP < 1) parts.push(`p=${p.topP.toFixed(3)}`);
  if (p.minP) parts.push(`minP=${p.minP.toFixed(3)}`);
  if (p.repetitionPenalty !== 1) parts.push(`rep=${p.repetitionPenalty}`);
  if (p.presencePenalty) parts.push(`pres=${p.presencePenalty}`);
  return parts.join(' ');
}

/**
 * One scenario: logits of a shape, a sampler with recorded tokens (half from a list, half from a GPU buffer), then
 * every params in turn; GPU ids and final counts must equal the reference's.
 */
async function scenario(
  name: string, V: number, valid: number, shape: Shape, paramsList: SamplingParams[], seed: number, tol: number,
  recorded = 0,
): Promise<{ steps: number; nudges: Nudges }> {
  const rng = createRng(seed);
  const logits = makeLogits(V, shape, rng);
  const counts = new Uint32Array(V);
  // Recorded ids: some repeated, some beyond validVocab, and a few beyond the vocabulary (ignored).
  const ids: number[] = [];
  for (let i = 0; i < recorded; i++) ids.push(i % 7 === 0 ? ids[Math.floor(rng() * ids.length)] ?? 0 : Math.floor(rng() * V));
  if (recorded > 0) ids.push(V, V + 5, valid - 1 + Math.floor((V - valid) / 2));
  for (const id of ids) if (id < V) counts[id]++;

  const sampler = createSampler(ctx, V, valid);
  const half = Math.floor(ids.length / 2);
  const enc = ctx.device.createCommandEncoder();
  recordTokens(directRecorder(ctx, enc), sampler, ids.slice(0, half));
  const idBuf = uploadBytes(ctx, new Uint32Array([...ids.slice(half), 0, 0]));
  recordTokens(directRecorder(ctx, enc), sampler, idBuf, ids.length - half);
  ctx.device.queue.submit([enc.finish()]);

  const nudges: Nudges = { u: 0, params: 0 };
  const steps = plan(logits, counts, valid, paramsList, rng, tol, nudges);
  const lbuf = uploadBytes(ctx, logits);
  const got = await runSteps(sampler, lbuf, steps);
  for (let i = 0; i < steps.length; i++) {
    assert.equal(got[i], steps[i].want,
      `${name}: step ${i} (${describe(steps[i].params)}, u=${steps[i].u}): GPU ${got[i]} vs reference ${steps[i].want}`);
  }
  assert.deepEqual(await readCounts(sampler), counts, `${name}: penalty counts`);
  destroySampler(sampler);
  lbuf.destroy();
  idBuf.destroy();
  return { steps: steps.length, nudges };
}

/** Each filter alone, in pairs and all together, at several temperatures, with and without penalties. */
function paramGrid(V: number): SamplingParams[] {
  const list: SamplingParams[] = [];
  for (const temperature of [0.35, 0.7, 1, 1.6]) {
    list.push(
      P({ temperature }),
      P({ temperature, topK: 1 }),
      P({ temperature, topK: 5 }),
      P({ temperature, topK: 40 }),
      P({ temperature, topK: Math.min(V - 1, 300) }), // more than a workgroup: the search path
      P({ temperature, topP: 0.5 }),
      P({ temperature, topP: 0.9 }),
      P({ temperature, minP: 0.05 }),
      P({ temperature, minP: 0.3 }),
      P({ temperature, topK: 20, topP: 0.8 }),
      P({ temperature, topK: 300, topP: 0.95, minP: 0.02 }),
      P({ temperature, topP: 0.7, minP: 0.1 }),
      P({ temperature, topK: 50, minP: 0.2 }),
      P({ temperature, repetitionPenalty: 1.3 }),
      P({ temperature, presencePenalty: 1.5, topK: 30 }),
      P({ temperature, repetitionPenalty: 0.8, presencePenalty: -0.5, topP: 0.9 }),
      P({ temperature, repetitionPenalty: 1.1, presencePenalty: 0.7, topK: 20, topP: 0.8, minP: 0.05 }),
    );
  }
  list.push(P({ temperature: 0 }), P({ temperature: 1e-6, repetitionPenalty: 2 }), P({ temperature: -1, presencePenalty: 3 }));
  return list;
}

// ---------------------------------------------------------------------------------------------------------------

test('reference: hand-checked rules', () => {
  const ln = (ps: number[]): Float32Array => new Float32Array(ps.map(Math.log));
  const none = new Uint32Array(8);
  // Order ids 1, 2 (tied at 3, lower id first), 4, 0, 3; weights 1, 1, e^-1, e^-2, e^-3.
  const x = new Float32Array([1, 3, 3, 0, 2]);
  const w = [1, 1, Math.exp(-1), Math.exp(-2), Math.exp(-3)];
  const Z = w.reduce((a, b) => a + b);
  const t = sampleReferenceTrace(x, none, OFF, 0, 5);
  assert.deepEqual(t.kept, [1, 2, 4, 0, 3]);
  t.probs.forEach((p, j) => assert.ok(Math.abs(p - w[j] / Z) < 1e-15));
  assert.equal(sampleReference(x, none, OFF, 0, 5), 1);
  assert.equal(sampleReference(x, none, OFF, 1 / Z - 1e-9, 5), 1);
  assert.equal(sampleReference(x, none, OFF, 1 / Z + 1e-9, 5), 2); // cumulative must exceed u
  assert.equal(sampleReference(x, none, OFF, 0.999999, 5), 3);
  // Greedy: largest logit, lowest id among ties; temperature ≤ 0 or < 1e-5 means greedy.
  for (const temperature of [0, -1, 9e-6]) assert.equal(sampleReference(x, none, P({ temperature }), 0.9, 5), 1);
  // validVocab: ids beyond it are never candidates, however large their logit.
  assert.equal(sampleReference(new Float32Array([0, 0, 9]), none, P({ temperature: 0 }), 0, 2), 0);
  // top-k keeps everything tied with the k-th logit.
  const tied = new Float32Array([3, 3, 3, 1]);
  assert.deepEqual(sampleReferenceTrace(tied, none, P({ topK: 2 }), 0.9, 4).kept, [0, 1, 2]);
  assert.equal(sampleReference(tied, none, P({ topK: 2 }), 0.9, 4), 2);
  // top-p: smallest prefix with mass ≥ p.
  const q = ln([0.5, 0.3, 0.2]);
  assert.deepEqual(sampleReferenceTrace(q, none, P({ topP: 0.5 }), 0.9, 3).kept, [0]);
  assert.deepEqual(sampleReferenceTrace(q, none, P({ topP: 0.6 }), 0.9, 3).kept, [0, 1]);
  assert.equal(sampleReference(q, none, P({ topP: 0.6 }), 0.7, 3), 1); // 0.5/0.8 = 0.625 < 0.7
  // top-k before top-p: with k = 2 the pair renormalises to 4/7, 3/7 and p = 0.5 keeps only the first
  // (top-p first would keep two: 0.4 < 0.5 ≤ 0.7).
  const r = ln([0.4, 0.3, 0.2, 0.1]);
  assert.deepEqual(sampleReferenceTrace(r, none, P({ topK: 2, topP: 0.5 }), 0.9, 4).kept, [0]);
  assert.deepEqual(sampleReferenceTrace(r, none, P({ topP: 0.5 }), 0.9, 4).kept, [0, 1]);
  // min-p: p ≥ minP · p_max; the top token always stays.
  assert.deepEqual(sampleReferenceTrace(q, none, P({ minP: 0.5 }), 0.9, 3).kept, [0, 1]);
  assert.deepEqual(sampleReferenceTrace(q, none, P({ minP: 2 }), 0.9, 3).kept, [0]);
  // Temperature sharpens before the filters: T = 0.5 squares the odds, so 0.5, 0.3, 0.2 → 25:9:4.
  const s = sampleReferenceTrace(q, none, P({ temperature: 0.5 }), 0, 3);
  s.probs.forEach((p, j) => assert.ok(Math.abs(p - [25, 9, 4][j] / 38) < 1e-6));
  // Penalties on counted ids: 2 → 2/2 − 0.5 = 0.5; −2 → −2·2 − 0.5 = −4.5; 1 untouched, now the max.
  const pen = P({ temperature: 0, repetitionPenalty: 2, presencePenalty: 0.5 });
  assert.equal(sampleReference(new Float32Array([2, -2, 1]), new Uint32Array([1, 1, 0]), pen, 0, 3), 2);
  assert.equal(sampleReference(new Float32Array([2, -2, 1]), new Uint32Array([0, 1, 0]), pen, 0, 3), 0);
  // NaN is never sampled; +∞ is the largest finite value; no candidate at all gives 0.
  assert.equal(sampleReference(new Float32Array([NaN, 1, Infinity]), none, OFF, 0.5, 3), 2);
  assert.deepEqual(sampleReferenceTrace(new Float32Array([NaN, 1, -Infinity]), none, OFF, 0.99, 3).kept, [1, 2]);
  assert.equal(sampleReference(new Float32Array([NaN, NaN]), none, OFF, 0.5, 2), 0);
});

test('createRng: reproducible, f32-exact uniforms in [0, 1)', () => {
  const a = createRng(42);
  const b = createRng(42);
  const c = createRng(43);
  const xs: number[] = [];
  let differ = 0;
  for (let i = 0; i < 20000; i++) {
    const x = a();
    assert.equal(x, b());
    if (x !== c()) differ++;
    assert.ok(x >= 0 && x < 1 && Number.isInteger(x * 2 ** 24) && Math.fround(x) === x);
    xs.push(x);
  }
  assert.ok(differ > 19900);
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01 && Math.abs(variance - 1 / 12) < 0.003, `mean ${mean} var ${variance}`);
  // First outputs pinned so a change of generator is noticed (it would change every seeded run).
  const first = createRng(1);
  assert.deepEqual([first(), first(), first()].map((x) => x * 2 ** 24), [9539625, 12648827, 14921554]);
});

test('GPU = reference, V = 1000: every filter alone and combined, ties, extremes, validVocab, penalties', async () => {
  await gpu();
  const grid = paramGrid(1000);
  const t0 = performance.now();
  let steps = 0;
  const nudges: Nudges = { u: 0, params: 0 };
  const cases: Array<[string, number, number, Shape, number]> = [
    ['normal', 1000, 1000, 'normal', 0],
    ['ties', 1000, 1000, 'ties', 0],
    ['extreme', 1000, 1000, 'extreme', 0],
    ['validVocab 931 + penalties', 1000, 931, 'normal', 400],
    ['ties + penalties', 1000, 1000, 'ties', 300],
    ['validVocab 100 (all candidates fit the small path)', 1000, 100, 'peaked', 50],
  ];
  for (const [name, V, valid, shape, recorded] of cases) {
    const r = await scenario(name, V, valid, shape, grid, 1000 + steps, 1e-6, recorded);
    steps += r.steps;
    nudges.u += r.nudges.u;
    nudges.params += r.nudges.params;
  }
  console.log(`V=1000: ${steps} draws identical to the reference (tol 1e-6; u redrawn ${nudges.u}×, ` +
    `params nudged ${nudges.params}×) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

test('GPU = reference, V = 248320 (Qwen3.5 embedding rows), validVocab 248077', async () => {
  await gpu();
  const V = 248320;
  const valid = 248077;
  const t0 = performance.now();
  const list = [
    P({ temperature: 0 }),
    P({ temperature: 0.7, topK: 20, topP: 0.8 }), // Qwen's recommended sampling
    P({ temperature: 0.6, topK: 20, topP: 0.95, presencePenalty: 1.5 }),
    P({ temperature: 1, topP: 0.95 }),
    P({ temperature: 1 }),
    P({ temperature: 0.8, minP: 0.05, repetitionPenalty: 1.2 }),
    P({ temperature: 1, topK: 1000, topP: 0.9, minP: 0.01 }),
  ];
  const a = await scenario('peaked', V, valid, 'peaked', list, 7, 1e-5, 2000);
  const b = await scenario('ties', V, valid, 'ties', [P({ temperature: 0 }), P({ temperature: 0.5, topK: 3 }), P({ temperature: 2, topP: 0.5 })], 8, 1e-5);
  console.log(`V=248320: ${a.steps + b.steps} draws identical to the reference (tol 1e-5; u redrawn ` +
    `${a.nudges.u + b.nudges.u}×, params nudged ${a.nudges.params + b.nudges.params}×) in ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`);
});

test('greedy: lowest id among tied maxima, across workgroups and after penalties', async () => {
  await gpu();
  const V = 70000;
  const x = new Float32Array(V).fill(-1);
  x[60000] = 5;
  x[20000] = 5;
  x[69500] = 7; // beyond validVocab
  const sampler = createSampler(ctx, V, 69000);
  const lbuf = uploadBytes(ctx, x);
  const step = (p: Partial<SamplingParams>): Step => ({ params: P({ temperature: 0, ...p }), u: 0, want: 0 });
  // 20000 and 60000 tie; 69500 is masked. Each draw is counted, so the penalties then see 20000.
  assert.deepEqual([...await runSteps(sampler, lbuf, [step({})])], [20000]);
  // Penalties that change nothing keep the tie: still the lowest id.
  assert.deepEqual([...await runSteps(sampler, lbuf, [step({ repetitionPenalty: 1, presencePenalty: 0 })])], [20000]);
  // Presence 0.5 lowers the counted 20000 to 4.5; then 7 lowers both maxima to −2 and the −1s win, lowest id 0.
  assert.deepEqual([...await runSteps(sampler, lbuf, [step({ presencePenalty: 0.5 }), step({ presencePenalty: 7 })])],
    [60000, 0]);
  const c = await readCounts(sampler);
  assert.deepEqual([c[0], c[20000], c[60000]], [1, 2, 1]);
  // resetSampler forgets the counts.
  resetSampler(ctx, sampler);
  assert.ok((await readCounts(sampler)).every((v) => v === 0));
  destroySampler(sampler);
  lbuf.destroy();
});

test('non-finite logits: the fault word names the lowest NaN / ±inf index and its kind, on every select path', async () => {
  await gpu();
  const V = 70000;
  const valid = 69000;
  const rng = createRng(77);
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) x[i] = 2 * gaussian(rng);
  const sampler = createSampler(ctx, V, valid);
  const lbuf = uploadBytes(ctx, x);
  const none = new Uint32Array(V);
  // Greedy, the small path (top-k set fits the workgroup) and the search path (69000 candidates).
  const paths = [P({ temperature: 0 }), P({ temperature: 0.7, topK: 20 }), P({ temperature: 1 })];
  const draw = async (params: SamplingParams) => {
    const enc = ctx.device.createCommandEncoder();
    sampleToken(directRecorder(ctx, enc), sampler, lbuf, params, 0.375);
    ctx.device.queue.submit([enc.finish()]);
    return readSampled(ctx, sampler);
  };
  // Each case adds bad logits; the fault names the lowest index so far. The id stays the reference's (the sampling
  // semantics do not change), penalties are off so the counts do not matter.
  const cases: Array<[number, number, { index: number; value: number } | undefined]> = [
    [-1, 0, undefined],
    [69500, Infinity, { index: 69500, value: Infinity }], // beyond validVocab: masked, still a fault
    [65000, NaN, { index: 65000, value: NaN }], // in a late prep workgroup
    [12345, -Infinity, { index: 12345, value: -Infinity }],
    [3, NaN, { index: 3, value: NaN }],
  ];
  for (const [at, value, want] of cases) {
    if (at >= 0) {
      x[at] = value;
      ctx.device.queue.writeBuffer(lbuf, 0, x);
    }
    for (const params of paths) {
      const got = await draw(params);
      assert.deepEqual(got.nonFinite, want, `${describe(params)} after planting ${value} at ${at}`);
      assert.equal(got.id, sampleReference(x, none, params, 0.375, valid), `${describe(params)}: id`);
    }
  }
  destroySampler(sampler);
  lbuf.destroy();
});

test('distribution: 2000 draws follow the softmax, 1000 the filtered one (chi-square, p = 0.001)', async () => {
  await gpu();
  const V = 48;
  const rng = createRng(2024);
  const x = new Float32Array(V);
  for (let i = 0; i < V; i++) x[i] = 1.5 * gaussian(rng);
  const lbuf = uploadBytes(ctx, x);
  const none = new Uint32Array(V);
  for (const [params, N] of [[P({ temperature: 0.8 }), 2000], [P({ temperature: 1.3, topK: 12, topP: 0.9 }), 1000]] as const) {
    const sampler = createSampler(ctx, V, V);
    const steps: Step[] = [];
    for (let i = 0; i < N; i++) steps.push({ params, u: rng(), want: 0 });
    const got = await runSteps(sampler, lbuf, steps);
    const trace = sampleReferenceTrace(x, none, params, 0, V);
    const expected = new Map(trace.kept.map((id, j) => [id, trace.probs[j] * N]));
    const hist = new Map<number, number>();
    for (const id of got) {
      assert.ok(expected.has(id), `${describe(params)}: drew ${id}, which the filters remove`);
      hist.set(id, (hist.get(id) ?? 0) + 1);
    }
    // Bins with expectation < 5 are pooled.
    let chi2 = 0;
    let bins = 0;
    let poolE = 0;
    let poolO = 0;
    for (const [id, e] of expected) {
      const o = hist.get(id) ?? 0;
      if (e < 5) {
        poolE += e;
        poolO += o;
        continue;
      }
      chi2 += (o - e) ** 2 / e;
      bins++;
    }
    if (poolE > 0) {
      chi2 += (poolO - poolE) ** 2 / poolE;
      bins++;
    }
    const df = bins - 1;
    // Wilson–Hilferty approximation of the 0.999 quantile of χ²(df).
    const k = 2 / (9 * df);
    const critical = df * (1 - k + 3.09 * Math.sqrt(k)) ** 3;
    console.log(`distribution ${describe(params)}: ${trace.kept.length} tokens kept, χ² = ${chi2.toFixed(1)} ` +
      `(df ${df}, 0.999 quantile ${critical.toFixed(1)})`);
    assert.ok(chi2 < critical, `${describe(params)}: χ² ${chi2} ≥ ${critical}`);
    destroySampler(sampler);
  }
  lbuf.destroy();
});

test('sampleToken / recordTokens reject bad input', async () => {
  await gpu();
  const sampler = createSampler(ctx, 16, 16);
  const lbuf = uploadBytes(ctx, new Float32Array(16));
  const enc = ctx.device.createCommandEncoder();
  assert.throws(() => sampleToken(directRecorder(ctx, enc), sampler, lbuf, OFF, 1), /uniform01/);
  assert.throws(() => sampleToken(directRecorder(ctx, enc), sampler, lbuf, P({ topK: 1.5 }), 0.5), /topK/);
  assert.throws(() => sampleToken(directRecorder(ctx, enc), sampler, lbuf, P({ repetitionPenalty: 0 }), 0.5), /repetitionPenalty/);
  assert.throws(() => sampleToken(directRecorder(ctx, enc), sampler, lbuf, P({ temperature: NaN }), 0.5), /temperature/);
  assert.throws(() => sampleToken(directRecorder(ctx, enc), sampler, uploadBytes(ctx, new Float32Array(8)), OFF, 0.5), /smaller/);
  assert.throws(() => recordTokens(directRecorder(ctx, enc), sampler, [1, -2]), /id -2/);
  assert.throws(() => createSampler(ctx, 16, 17), /validVocab/);
  destroySampler(sampler);
});
