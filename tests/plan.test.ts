// Step plans: replaying the recorded forward gives exactly the logits (and sampled ids) of encoding every call
// afresh, on every tiny recipe, for prefill chunks and decode steps at many positions; the fused forward (linears
// fused at load, RMSNorms folded into the matvecs) stays within f32 rounding of the unfused one; and a decode step,
// counted from outside by wrapping the device's methods, creates no GPU object and encodes one compute pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { createGpuContext } from '../src/gpu/context.ts';
import { probeDevice } from '../src/gpu/gpu-counter.ts';
import { createSampler, destroySampler, type SamplingParams } from '../src/gpu/sample.ts';
import { makeTinyCheckpoint, TINY_RECIPES } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { argmax, loadEngine, type Engine } from '../src/engine/engine.ts';

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

const SAMPLING: SamplingParams = { temperature: 0.8, topK: 40, topP: 0.9, minP: 0, presencePenalty: 0, repetitionPenalty: 1.1 };

// Recipes alternate between the measured tuning and the GPU defaults (GEMM tile above 16 tokens): see model.test.ts.
// Replay vs direct encoding tests the recording, not the arithmetic (model.test.ts runs every recipe against the
// CPU reference), so four recipes stand for the rest: bf16 (float matvec, tied), propc (fused affine, norms folded),
// udq2 (sharded, mixed bits: some groups unfused) and udnvfp4 (a floating format, two scale groups per chunk),
// alternating the measured tuning and the defaults. The others differ from these only in override constants.
const PLAN_RECIPES = TINY_RECIPES.filter((r) => ['bf16', 'propc', 'udq2', 'udnvfp4'].includes(r));
PLAN_RECIPES.forEach((recipe, i) => {
  const tuning = i % 2 ? 'default' : 'auto';
  test(`plan replay equals direct encoding bit for bit: ${recipe} (tuning ${tuning})`, async () => {
    const ctx = await getNodeGpu();
    const files = makeTinyCheckpoint(recipe, { seed: 11 });
    const opts = { contextLength: 200, prefillChunk: 64, tuning } as const;
    const planned = await loadEngine(ctx, memorySource(files, `tiny-${recipe}`), opts);
    const direct = await loadEngine(ctx, memorySource(files, `tiny-${recipe}`), { ...opts, encoding: 'direct' });
    const engines: Engine[] = [planned, direct];
    try {
      // Prompts of 1, 5 and 12 (multi-token matvec: one and two workgroups of 8 tokens), 64 (one whole chunk) and
      // 150 tokens (chunks 64 + 64 + 22), each followed by decode steps whose plan was recorded at position 0.
      for (const len of [1, 5, 12, 64, 150]) {
        for (const e of engines) e.reset();
        const ids = randomIds(len, planned.config.vocabSize, len * 7 + 3);
        const [a, b] = [await planned.prefill(ids), await direct.prefill(ids)];
        assert.equal(firstBitDifference(a, b), -1, `${recipe}: prefill of ${len} tokens differs`);
        let next = argmax(a);
        for (let step = 0; step < 8; step++) {
          const [x, y] = [await planned.decode(next), await direct.decode(next)];
          const at = firstBitDifference(x, y);
          assert.equal(at, -1, `${recipe}: decode at position ${len + step} differs at vocab ${at}: ${x[at]} vs ${y[at]}`);
          next = argmax(x);
        }
      }

      // Sampling: the plan path with the drawn id staying on the GPU ('sampled') against direct encoding fed the
      // ids from the CPU, same draws.
      const vocab = planned.config.vocabSize;
      const samplers = engines.map(() => createSampler(ctx, vocab, vocab));
      try {
        for (const e of engines) e.reset();
        const prompt = randomIds(9, vocab, 99);
        const draws = [0.1, 0.7, 0.3, 0.95, 0.5, 0.01, 0.62, 0.4];
        const got: number[][] = [[], []];
        let first = await planned.sample(prompt, samplers[0], SAMPLING, draws[0]);
        got[0].push(first.id);
        for (const u of draws.slice(1)) got[0].push((await planned.sample('sampled', samplers[0], SAMPLING, u)).id);
        first = await direct.sample(prompt, samplers[1], SAMPLING, draws[0]);
        got[1].push(first.id);
        for (const u of draws.slice(1)) got[1].push((await direct.sample([got[1].at(-1)!], samplers[1], SAMPLING, u)).id);
        assert.deepEqual(got[0], got[1], `${recipe}: sampled ids differ`);
        assert.equal(planned.position, prompt.length + draws.length - 1);
      } finally {
        samplers.forEach(destroySampler);
      }
    } finally {
      for (const e of engines) e.dispose();
    }
  });
});

test('the fused forward (fused linears, folded RMSNorms) stays within f32 rounding of the unfused one', async () => {
  const ctx = await getNodeGpu();
  for (const recipe of ['q4g32', 'unsloth3'] as const) {
    const files = makeTinyCheckpoint(recipe, { seed: 12 });
    const opts = { contextLength: 120, prefillChunk: 64 };
    const fused = await loadEngine(ctx, memorySource(files, `tiny-${recipe}`), opts);
    const unfused = await loadEngine(ctx, memorySource(files, `tiny-${recipe}`), { ...opts, fuseLinears: false });
    try {
      // Folding changes where Σx² is summed and when the 1/rms scale is applied: f32 rounding, no more.
      assert.ok(fused.plans.decodeDispatches < unfused.plans.decodeDispatches - 2 * fused.config.numLayers,
        `${fused.plans.decodeDispatches} vs ${unfused.plans.decodeDispatches} dispatches per decode step`);
      for (const len of [1, 12, 64]) {
        fused.reset();
        unfused.reset();
        let ids = randomIds(len, fused.config.vocabSize, len + 5);
        for (let step = 0; step < 4; step++) {
          const [a, b] = [await fused.prefill(ids), await unfused.prefill(ids)];
          let worst = 0;
          let scale = 0;
          for (let i = 0; i < a.length; i++) {
            worst = Math.max(worst, Math.abs(a[i] - b[i]));
            scale = Math.max(scale, Math.abs(b[i]));
          }
          assert.ok(worst <= 1e-4 * Math.max(1, scale), `${recipe} prompt ${len} step ${step}: max |Δ| ${worst} (max |logit| ${scale})`);
          ids = [argmax(b)];
        }
      }
    } finally {
      fused.dispose();
      unfused.dispose();
    }
  }
});

test('a decode step, counted from outside: no buffer, bind group or pipeline created, one compute pass', async () => {
  const ctx = await getNodeGpu();
  const engine = await loadEngine(ctx, memorySource(makeTinyCheckpoint('propc', { seed: 3 }), 'tiny-propc'), { contextLength: 64 });
  const sampler = createSampler(ctx, engine.config.vocabSize, engine.config.vocabSize);
  try {
    await engine.sample([1, 2, 3], sampler, SAMPLING, 0.5);
    await engine.sample('sampled', sampler, SAMPLING, 0.5); // the sampler's plan is recorded on first use
    let probe = probeDevice(ctx.device, true);
    const steps = 6;
    // Two in flight at a time: the GPU-resident pipeline, as the chat session runs it.
    for (let i = 0; i < steps; i += 2) {
      const a = engine.sample('sampled', sampler, SAMPLING, i / steps);
      const b = engine.sample('sampled', sampler, SAMPLING, (i + 1) / steps);
      await Promise.all([a, b]);
    }
    probe.restore();
    const c = probe.counts;
    assert.equal(c.buffers, 0, 'buffers created per token');
    assert.equal(c.bindGroups, 0, 'bind groups created per token');
    assert.equal(c.pipelines, 0, 'pipelines created per token');
    assert.equal(c.passes, steps, 'one compute pass per token');
    assert.equal(c.submits, steps);
    // The forward plan plus the two sampling dispatches, every token.
    assert.equal(c.dispatches, steps * (engine.plans.decodeDispatches + 2));
    // The position and the sampling parameters: two small writes, no id upload (it stays on the GPU).
    assert.equal(c.writeBuffers, steps * 2);

    // engine.decode (logits readback) is also object-free.
    probe = probeDevice(ctx.device, true);
    await engine.decode(5);
    probe.restore();
    assert.equal(probe.counts.buffers, 0);
    assert.equal(probe.counts.bindGroups, 0);
    assert.equal(probe.counts.passes, 1);
  } finally {
    destroySampler(sampler);
    engine.dispose();
  }
});

test('pipelines are all compiled at load: the first forwards compile nothing', async () => {
  // A context of its own on the shared device: an empty pipeline cache, so load has everything to compile.
  const ctx = createGpuContext((await getNodeGpu()).device);
  const probe = probeDevice(ctx.device, true);
  let engine: Engine;
  try {
    engine = await loadEngine(ctx, memorySource(makeTinyCheckpoint('unsloth3', { seed: 5 }), 'tiny-unsloth3'), {
      contextLength: 300, prefillChunk: 128,
    });
  } catch (e) {
    probe.restore();
    throw e;
  }
  const sampler = createSampler(ctx, engine.config.vocabSize, engine.config.vocabSize);
  try {
    const compiled = probe.counts.pipelines;
    assert.ok(compiled > 10, `load compiled ${compiled} pipelines`);
    for (const len of [1, 2, 3, 4, 7, 16, 33, 128, 129]) {
      engine.reset();
      await engine.sample(randomIds(len, engine.config.vocabSize, len), sampler, SAMPLING, 0.25);
      await engine.sample('sampled', sampler, SAMPLING, 0.75);
    }
    assert.equal(probe.counts.pipelines, compiled, 'pipelines compiled after load');
  } finally {
    probe.restore();
    destroySampler(sampler);
    engine.dispose();
  }
});
