import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getNodeGpu } from '../src/node/dawn.ts';
import { dispatch, readF32, uploadBytes } from '../src/gpu/context.ts';

test('Dawn device runs a compute shader', async () => {
  const ctx = await getNodeGpu();
  const code = `@group(0) @binding(0) var<storage, read_write> a: array<f32>;
  @compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) { if (g.x < arrayLength(&a)) { a[g.x] = a[g.x] * 2.0 + 1.0; } }`;
  const buf = uploadBytes(ctx, new Float32Array([1, 2, 3, 4, 5]));
  const enc = ctx.device.createCommandEncoder();
  dispatch(ctx, enc, ctx.pipeline(code), [buf], [1]);
  ctx.device.queue.submit([enc.finish()]);
  assert.deepEqual([...(await readF32(ctx, buf))], [3, 5, 7, 9, 11]);
});
