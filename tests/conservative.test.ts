// The conservative-device mode (issue 8, scope 7): a device with WebGPU's default limits and no optional feature
// (no subgroups, no shader-f16, no timestamp-query) runs the whole model, a sharded recipe, to the CPU reference's
// logits; the kernels pick their variants from the limits (e.g. a split linear keeps its RMSNorm as a dispatch).
import '../src/node/shaders-node.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getNodeGpu } from '../src/node/dawn.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint, referenceWeights } from '../src/format/checkpoint.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import { argmax, loadEngine } from '../src/engine/engine.ts';
import { compareLogits } from './logit-compare.ts';

test('default limits, no optional feature: a sharded recipe matches the CPU reference, and the max-limits device', { timeout: 900_000 }, async () => {
  const ctx = await getNodeGpu('default');
  const full = await getNodeGpu('max');
  assert.notEqual(ctx.device, full.device);
  // Only what every device has ('core-features-and-limits' marks a core, not compatibility-mode, device).
  assert.deepEqual([...ctx.device.features].filter((f) => f !== 'core-features-and-limits'), [], 'no optional feature');
  assert.deepEqual([ctx.features.subgroups, ctx.features.shaderF16, ctx.features.timestampQuery], [false, false, false]);
  // WebGPU's defaults (spec §3.6.2 "limits"): 8 storage buffers per stage, 128 MiB per binding, 256 MiB per buffer.
  assert.equal(ctx.limits.maxStorageBuffersPerShaderStage, 8);
  assert.equal(ctx.limits.maxStorageBufferBindingSize, 128 * 2 ** 20);
  assert.equal(ctx.limits.maxBufferSize, 256 * 2 ** 20);
  assert.equal(ctx.limits.maxComputeWorkgroupStorageSize, 16384);

  // udq2: three shards, a module split across two of them, 2- to 8-bit per-layer overrides.
  const src = memorySource(makeTinyCheckpoint('udq2', { seed: 21 }), 'tiny-udq2');
  const ckpt = await openCheckpoint(src);
  const ref = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied });
  const opts = { contextLength: 160, prefillChunk: 64 };
  const engine = await loadEngine(ctx, src, opts);
  const other = await loadEngine(full, src, opts);
  try {
    assert.ok(engine.plans.decodeDispatches >= other.plans.decodeDispatches, 'the conservative device folds no more than the full one');
    for (const len of [1, 17, 130]) {
      engine.reset();
      other.reset();
      ref.reset();
      const ids = Array.from({ length: len }, (_, i) => (i * 37 + len) % ckpt.config.vocabSize);
      let [gpu, cpu, max] = [await engine.prefill(ids), ref.prefill(ids).at(-1)!, await other.prefill(ids)];
      for (let step = 0; step <= 6; step++) {
        const d = compareLogits(gpu, cpu);
        assert.ok(d.maxAbs <= 2e-3, `prompt ${len} step ${step}: max |Δlogit| vs CPU ${d.maxAbs}`);
        assert.ok(compareLogits(gpu, max).maxAbs <= 1e-3, `prompt ${len} step ${step}: default vs max limits`);
        if (step === 6) break;
        const next = argmax(cpu);
        [gpu, cpu, max] = [await engine.decode(next), ref.decode(next), await other.decode(next)];
      }
    }
  } finally {
    engine.dispose();
    other.dispose();
  }
});
