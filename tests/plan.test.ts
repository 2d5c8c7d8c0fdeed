// Step plans: the fused forward (linears fused at load, RMSNorms folded into the matvecs) stays within f32 rounding
// of the unfused one; a decode step, counted from outside by wrapping the device's methods, creates no GPU object and
// encodes one compute pass; and load compiles every pipeline. That replaying a recorded plan gives exactly the
// logits and sampled ids of encoding every call afresh is checked in model.test.ts, next to the CPU reference (the
// same loaded recipes serve both, which saves compiling their pipelines twice).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { createGpuContext } from '../src/gpu/context.ts';
import { probeDevice } from '../src/gpu/gpu-counter.ts';
import { createSampler, destroySampler, type SamplingParams } from '../src/gpu/sample.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { argmax, loadEngine, type Engine } from '../src/engine/engine.ts';

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

const SAMPLING: SamplingParams = { temperature: 0.8, topK: 40, topP: 0.9, minP: 0, presencePenalty: 0, repetitionPenalty: 1.1 };

test('the fused forward (fused linears, folded RMSNorms) stays within f32 rounding of the unfused one', async () => {
  const ctx = await getNodeGpu();
  // q4g32: one format everywhere, so every fusion and fold applies (unsloth3's partly fused groups meet the CPU
  // reference in model.test.ts).
  for (const recipe of ['q4g32'] as const) {
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
