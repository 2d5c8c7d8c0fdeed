// Whole model on the GPU (Dawn/SwiftShader) vs the CPU reference, on a tiny checkpoint of every published recipe;
// on four of them also the recorded step plans replayed against encoding every call afresh, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { makeTinyCheckpoint, TINY_RECIPES } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint, referenceWeights } from '../src/format/checkpoint.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import { argmax, loadEngine } from '../src/engine/engine.ts';
import { createSampler, destroySampler, type SamplingParams } from '../src/gpu/sample.ts';
import { compareLogits } from './logit-compare.ts';

const TOL = 2e-3;
const MARGIN = 4e-3;
const DECODE_STEPS = 16;

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

// Which prefill path meets the reference: the adapter's measured tuning (on SwiftShader the multi-token matvec at
// every length) or the GPU defaults (the 64-token GEMM tile above 16 tokens). The GEMM runs on one recipe of each
// element family: affine at mixed bits with fused linears (propc), E2M1 with two scale groups per chunk (udnvfp4),
// E4M3 with channel and block scales (ctfp8). kernels-linear.test.ts holds the GEMM of every format to its CPU
// reference; on SwiftShader a GEMM prompt costs about three times the matvec one, hence not every recipe.
const GEMM_RECIPES = new Set(['propc', 'udnvfp4', 'ctfp8']);
// Replaying the recorded step plans against encoding every call afresh (bit for bit) tests the recording, not the
// arithmetic, so four recipes stand for the rest: bf16 (float matvec, tied), propc (fused affine, norms folded),
// udq2 (sharded, mixed bits: some groups unfused) and udnvfp4 (a floating format). The others differ from these
// only in override constants.
const REPLAY_RECIPES = new Set(['bf16', 'propc', 'udq2', 'udnvfp4']);

const SAMPLING: SamplingParams = { temperature: 0.8, topK: 40, topP: 0.9, minP: 0, presencePenalty: 0, repetitionPenalty: 1.1 };

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

for (const recipe of TINY_RECIPES) {
  const tuning = GEMM_RECIPES.has(recipe) ? 'default' : 'auto';
  const replay = REPLAY_RECIPES.has(recipe);
  test(`GPU forward equals the CPU reference: ${recipe} (tuning ${tuning})${replay ? '; plan replay equals direct encoding bit for bit' : ''}`, async () => {
    const ctx = await getNodeGpu();
    const src = memorySource(makeTinyCheckpoint(recipe, { seed: 7 }), `tiny-${recipe}`);
    const ckpt = await openCheckpoint(src);
    const ref = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied });
    // A prefill chunk of 64 makes the 130-token prompt run as three chunks (state carried between them).
    const opts = { contextLength: 160, prefillChunk: 64, tuning } as const;
    const engine = await loadEngine(ctx, src, opts);
    // The same model encoding every call afresh (no recorded plan); its pipelines are already compiled.
    const direct = replay ? await loadEngine(ctx, src, { ...opts, encoding: 'direct' }) : undefined;
    /** The replayed logits must equal direct encoding's to the bit (same kernels, same order). */
    const sameAsDirect = (got: Float32Array, other: Float32Array, where: string) => {
      const at = firstBitDifference(got, other);
      assert.equal(at, -1, `${recipe}: plan replay vs direct encoding, ${where}: vocab ${at}: ${got[at]} vs ${other[at]}`);
    };
    let worst = 0;
    let checked = 0;
    try {
      for (const len of [1, 17, 130]) {
        engine.reset();
        direct?.reset();
        ref.reset();
        const ids = randomIds(len, ckpt.config.vocabSize, len * 31 + 1);
        let gpu = await engine.prefill(ids);
        if (direct) sameAsDirect(gpu, await direct.prefill(ids), `prefill of ${len}`);
        let cpu = ref.prefill(ids).at(-1)!;
        for (let step = 0; step <= DECODE_STEPS; step++) {
          const d = compareLogits(gpu, cpu);
          worst = Math.max(worst, d.maxAbs);
          assert.ok(d.maxAbs <= TOL, `${recipe} prompt ${len} step ${step}: max |Δlogit| ${d.maxAbs} > ${TOL}`);
          if (d.margin >= MARGIN) {
            checked++;
            assert.ok(!d.argmaxMismatch, `${recipe} prompt ${len} step ${step}: argmax differs (margin ${d.margin})`);
          }
          if (step === DECODE_STEPS) break;
          const next = argmax(cpu);
          gpu = await engine.decode(next);
          if (direct) sameAsDirect(gpu, await direct.decode(next), `decode at position ${len + step}`);
          cpu = ref.decode(next);
        }
      }
      if (direct) {
        // Sampling: the plan path with the drawn id staying on the GPU ('sampled') against direct encoding fed the
        // ids from the CPU, same draws.
        const vocab = engine.config.vocabSize;
        const samplers = [createSampler(ctx, vocab, vocab), createSampler(ctx, vocab, vocab)];
        try {
          engine.reset();
          direct.reset();
          const prompt = randomIds(9, vocab, 99);
          const draws = [0.1, 0.7, 0.3, 0.95, 0.5, 0.01, 0.62, 0.4];
          const got: number[][] = [[], []];
          got[0].push((await engine.sample(prompt, samplers[0], SAMPLING, draws[0])).id);
          for (const u of draws.slice(1)) got[0].push((await engine.sample('sampled', samplers[0], SAMPLING, u)).id);
          got[1].push((await direct.sample(prompt, samplers[1], SAMPLING, draws[0])).id);
          for (const u of draws.slice(1)) got[1].push((await direct.sample([got[1].at(-1)!], samplers[1], SAMPLING, u)).id);
          assert.deepEqual(got[0], got[1], `${recipe}: sampled ids differ between plan replay and direct encoding`);
          assert.equal(engine.position, prompt.length + draws.length - 1);
        } finally {
          samplers.forEach(destroySampler);
        }
      }
    } finally {
      engine.dispose();
      direct?.dispose();
    }
    console.log(`${recipe}: max |Δlogit| GPU vs CPU = ${worst.toExponential(3)} over 51 steps; argmax checked on ${checked}`);
    assert.ok(checked > 25, `${recipe}: too few positions with a clear margin (${checked}); the tiny model's logits are too flat to test argmax`);
  });
}

test('GPU forward equals the CPU reference on an HF-named checkpoint (zero-centred norms, [C, 1, Kc] conv)', async () => {
  const ctx = await getNodeGpu();
  const src = memorySource(makeTinyCheckpoint('bf16', { seed: 11, hf: true }), 'tiny-bf16-hf');
  const ckpt = await openCheckpoint(src);
  assert.equal(ckpt.normShift, true);
  const ref = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied });
  const engine = await loadEngine(ctx, src, { contextLength: 64 });
  try {
    const ids = randomIds(17, ckpt.config.vocabSize, 5);
    let gpu = await engine.prefill(ids);
    let cpu = ref.prefill(ids).at(-1)!;
    let worst = 0;
    for (let step = 0; step < 4; step++) {
      const d = compareLogits(gpu, cpu);
      worst = Math.max(worst, d.maxAbs);
      assert.ok(d.maxAbs <= TOL, `hf step ${step}: max |Δlogit| ${d.maxAbs}`);
      const next = argmax(cpu);
      gpu = await engine.decode(next);
      cpu = ref.decode(next);
    }
    console.log(`bf16 (HF names): max |Δlogit| GPU vs CPU = ${worst.toExponential(3)}`);
  } finally {
    engine.dispose();
  }
});

test('engine errors: context overflow and out-of-vocabulary ids leave it usable', async () => {
  const ctx = await getNodeGpu();
  const src = memorySource(makeTinyCheckpoint('q4g32', { seed: 3 }), 'tiny-q4g32');
  const engine = await loadEngine(ctx, src, { contextLength: 8 });
  try {
    await assert.rejects(engine.prefill([1, 2, 3, 4, 5, 6, 7, 8, 9]), /context overflow: 0 tokens .* \+ 9 new > context length 8/);
    await assert.rejects(engine.prefill([1, 5000]), /token id 5000 is outside the vocabulary \[0, 1024\)/);
    assert.equal(engine.position, 0);
    const a = await engine.prefill([1, 2, 3]);
    engine.reset();
    const b = await engine.prefill([1, 2, 3]);
    assert.deepEqual(a, b, 'reset must give back a fresh sequence');
  } finally {
    engine.dispose();
  }
});

test('multi-turn reuse: restoring a snapshot and prefilling only the new tokens equals a fresh full prefill', async () => {
  const ctx = await getNodeGpu();
  const src = memorySource(makeTinyCheckpoint('propc', { seed: 5 }), 'tiny-propc');
  const engine = await loadEngine(ctx, src, { contextLength: 128, prefillChunk: 32 });
  try {
    const V = engine.config.vocabSize;
    const turn1 = randomIds(40, V, 1);
    const reply = randomIds(9, V, 2); // what the model generated after turn 1 (teacher-forced here)
    const turn2Extra = randomIds(23, V, 3);
    await engine.prefill(turn1);
    const snap = engine.snapshot();
    for (const id of reply) await engine.decode(id);
    // The next turn re-renders the history: the shared prefix is turn1; roll back to it and append the rest.
    engine.restore(snap);
    assert.equal(engine.position, turn1.length);
    const reused = await engine.prefill([...reply, ...turn2Extra]);
    engine.reset();
    const fresh = await engine.prefill([...turn1, ...reply, ...turn2Extra]);
    const d = compareLogits(reused, fresh);
    console.log(`turn-2 logits, reuse vs fresh prefill: max |Δ| = ${d.maxAbs.toExponential(3)}`);
    assert.ok(d.maxAbs <= 1e-4, `reuse differs from a fresh prefill by ${d.maxAbs}`);
    assert.ok(!d.argmaxMismatch);
  } finally {
    engine.dispose();
  }
});
