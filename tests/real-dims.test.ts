// Real Qwen3.5-0.8B widths in CI (spec §1.3: d 1024, I 3584, 8 heads / 2 KV heads of 256, 16 + 16 GDN heads of 128,
// V = 248320, tied), with synthetic weights and four layers (three GDN, one full attention) so it stays affordable on
// SwiftShader: every kernel runs at the row lengths, head counts and vocabulary of the real model, which a tiny
// model never reaches (buffer sizes, workgroup counts along y, the 248320-way lm_head and sampler-sized logits).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint, referenceWeights } from '../src/format/checkpoint.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import { argmax, loadEngine } from '../src/engine/engine.ts';
import { compareLogits } from './logit-compare.ts';

const REAL_08B = {
  hiddenSize: 1024, numLayers: 4, numHeads: 8, numKvHeads: 2, headDim: 256, linearKeyHeads: 16, linearValueHeads: 16,
  linearHeadDim: 128, convKernel: 4, intermediateSize: 3584, vocabSize: 248320,
};

test('Qwen3.5-0.8B widths (vocabulary 248320, tied 4-bit g32): GPU logits equal the CPU reference over a prompt and decode', async () => {
  const ctx = await getNodeGpu();
  const src = memorySource(makeTinyCheckpoint('q4g32', { seed: 5, shape: REAL_08B }), 'real-0.8B-widths');
  const ckpt = await openCheckpoint(src);
  assert.deepEqual([ckpt.config.hiddenSize, ckpt.config.vocabSize, ckpt.tied], [1024, 248320, true]);
  const ref = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied });
  const engine = await loadEngine(ctx, src, { contextLength: 16, tuning: 'default' });
  try {
    // Three tokens: the multi-token matvec, never the 64-token GEMM tile (which SwiftShader runs slowly).
    const ids = [17, 248319, 100000];
    let gpu = await engine.prefill(ids);
    let cpu = ref.prefill(ids).at(-1)!;
    let worst = 0;
    for (let step = 0; step < 3; step++) {
      assert.equal(gpu.length, 248320);
      const d = compareLogits(gpu, cpu);
      worst = Math.max(worst, d.maxAbs);
      assert.ok(d.maxAbs <= 2e-3, `step ${step}: max |Δlogit| ${d.maxAbs}`);
      if (d.margin >= 4e-3) assert.ok(!d.argmaxMismatch, `step ${step}: argmax differs (margin ${d.margin})`);
      if (step === 2) break;
      const next = argmax(cpu);
      gpu = await engine.decode(next);
      cpu = ref.decode(next);
    }
    console.log(`0.8B widths: max |Δlogit| GPU vs CPU = ${worst.toExponential(3)} over 3 positions`);
  } finally {
    engine.dispose();
  }
});
