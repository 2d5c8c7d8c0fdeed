// The per-adapter autotune of the linear kernels (src/gpu/autotune.ts): what it measures, how it is kept (memory,
// file), that a broken store never breaks a load, and that the tuning an engine is given is validated and used.
import '../src/node/shaders-node.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getNodeGpu } from '../src/node/dawn.ts';
import { autotuneLinear, memoryTuningStore, tuningKey, type TuningStore } from '../src/gpu/autotune.ts';
import { checkLinearTuning, DEFAULT_LINEAR_TUNING, linearTuning, setLinearTuning } from '../src/gpu/linear.ts';
import { fileTuningStore, tuningFilePath } from '../src/node/tuning-file.ts';
import { isCpuAdapter } from '../src/bench/suite.ts';
import { loadEngine } from '../src/engine/engine.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';

test('autotune measures once per adapter, then reads the store; a broken store only costs a measurement', async () => {
  const ctx = await getNodeGpu();
  const store = memoryTuningStore();
  const first = await autotuneLinear(ctx, store);
  assert.equal(first.cached, false);
  assert.doesNotThrow(() => checkLinearTuning(first.tuning));
  assert.ok(first.matvecMs && Object.keys(first.matvecMs).length >= 1, 'matvec candidates were timed');
  assert.ok(first.crossover && first.crossover.gemm64Ms > 0 && first.crossover.matvec32Ms > 0);
  // The crossover rule: the GEMM costs one tile for any M ≤ 64, the matvec one weight pass per 8 tokens.
  const { matvec32Ms, gemm64Ms } = first.crossover;
  const m = Math.floor((32 * gemm64Ms) / matvec32Ms);
  assert.equal(first.tuning.matvecMaxM, m >= 64 ? 1 << 16 : Math.max(4, m));
  if (isCpuAdapter(ctx)) {
    // SwiftShader: a workgroup barrier is a fiber switch, so the barrier-heavy GEMM tile loses at every M.
    assert.ok(gemm64Ms > matvec32Ms * 2, `GEMM M64 ${gemm64Ms} ms vs matvec M32 ${matvec32Ms} ms`);
  }

  const again = await autotuneLinear(ctx, store);
  assert.equal(again.cached, true);
  assert.deepEqual(again.tuning, first.tuning);
  assert.equal(again.key, tuningKey(ctx));
  assert.match(again.key, /v\d+ /, 'the key carries the tuning version');

  // A stored value that is not a tuning is measured over.
  await store.set(tuningKey(ctx), { matvecMaxM: 0, maxLanes: 3, reduce: 'x' });
  const stale = await autotuneLinear(ctx, store);
  assert.equal(stale.cached, false);
  assert.deepEqual(await store.get(tuningKey(ctx)), stale.tuning);

  const broken: TuningStore = {
    get: async () => { throw new Error('quota exceeded'); },
    set: async () => { throw new Error('quota exceeded'); },
  };
  const measured = await autotuneLinear(ctx, broken);
  assert.equal(measured.cached, false);
  assert.doesNotThrow(() => checkLinearTuning(measured.tuning));
  // autotuneLinear leaves the context's own tuning alone: the caller decides where it applies.
  assert.deepEqual(linearTuning(ctx), DEFAULT_LINEAR_TUNING);
});

test('the Node tuning file: kept across stores, other keys kept, a corrupt file read as empty', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'qwen-tuning-'));
  try {
    assert.equal(tuningFilePath({ QWEN_WEBGPU_CACHE_DIR: dir }), join(dir, 'tuning.json'));
    assert.equal(tuningFilePath({ XDG_CACHE_HOME: dir }), join(dir, 'qwen-webgpu', 'tuning.json'));
    const path = join(dir, 'sub', 'tuning.json');
    const a = fileTuningStore(path);
    await a.set('adapter A', { matvecMaxM: 16, maxLanes: 32, reduce: 'subgroup' });
    await a.set('adapter B', { matvecMaxM: 65536, maxLanes: 4, reduce: 'workgroup' });
    const b = fileTuningStore(path);
    assert.deepEqual(await b.get('adapter A'), { matvecMaxM: 16, maxLanes: 32, reduce: 'subgroup' });
    assert.deepEqual(await b.get('adapter B'), { matvecMaxM: 65536, maxLanes: 4, reduce: 'workgroup' });
    assert.deepEqual(Object.keys(JSON.parse(await readFile(path, 'utf8'))), ['adapter A', 'adapter B']);
    await writeFile(path, '{"adapter A": {"matvecMax');
    assert.equal(await b.get('adapter A'), undefined);
    await b.set('adapter C', { matvecMaxM: 8, maxLanes: 8, reduce: 'workgroup' });
    assert.deepEqual(await fileTuningStore(path).get('adapter C'), { matvecMaxM: 8, maxLanes: 8, reduce: 'workgroup' });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an engine records with the tuning it is given; a bad one is refused naming the field', async () => {
  const ctx = await getNodeGpu();
  const src = () => memorySource(makeTinyCheckpoint('q4g32', { seed: 2 }), 'tiny-q4g32');
  await assert.rejects(loadEngine(ctx, src(), { contextLength: 32, tuning: { maxLanes: 3 } }), /maxLanes must be a power of two/);
  await assert.rejects(loadEngine(ctx, src(), { contextLength: 32, tuning: { matvecMaxM: 0 } }), /matvecMaxM must be a positive integer/);
  assert.throws(() => setLinearTuning(ctx, { reduce: 'shared' as 'subgroup' }), /reduce must be/);

  const given = await loadEngine(ctx, src(), { contextLength: 32, tuning: { matvecMaxM: 2, maxLanes: 8, reduce: 'workgroup' } });
  const defaults = await loadEngine(ctx, src(), { contextLength: 32, tuning: 'default' });
  try {
    assert.deepEqual(given.tuning.tuning, { matvecMaxM: 2, maxLanes: 8, reduce: 'workgroup' });
    assert.deepEqual(defaults.tuning.tuning, DEFAULT_LINEAR_TUNING);
    // Different kernels (GEMM from 3 tokens, 8 lanes with a workgroup reduction): the same logits within f32 noise.
    const ids = [3, 1, 4, 1, 5, 9, 2, 6];
    const a = await given.prefill(ids);
    const b = await defaults.prefill(ids);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    assert.ok(worst < 1e-3, `max |Δlogit| ${worst}`);
    assert.deepEqual(linearTuning(ctx), DEFAULT_LINEAR_TUNING, 'an engine does not change the context for others');
  } finally {
    given.dispose();
    defaults.dispose();
  }
});
