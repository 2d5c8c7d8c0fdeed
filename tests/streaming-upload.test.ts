// Streaming weight upload (src/gpu/upload.ts): linears go from the byte source to the GPU in pieces of whole rows
// through a ring of mapped staging buffers, never a whole tensor in memory. Oracles: the in-memory upload
// (createGpuLinear / createFusedLinear with whole tensors, the path the loader took before) byte for byte, the
// CPU reference's logits, and a source that records every read. QWEN_WEBGPU_MEASURE_LOAD=1 adds the peak-memory
// measurement at real Qwen3.5-0.8B widths (scripts/measure-load-memory.ts; slow: it writes a ~200 MB checkpoint).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { readBuffer, type GpuContext } from '../src/gpu/context.ts';
import {
  createFusedLinear, createGpuLinear, destroyGpuLinear, uploadFusedLinear, uploadGpuLinear, type Fusion, type GpuLinear,
  type LinearFormat, type LinearSpec, type RowReader,
} from '../src/gpu/linear.ts';
import { bufferWriter, createStagingRing, uploadOptions } from '../src/gpu/upload.ts';
import { makeTinyCheckpoint, TINY_RECIPES, type TinyRecipe } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { parseSafetensorsHeader, type ByteSource } from '../src/format/safetensors.ts';
import { openCheckpoint, readEntry, readQuantTensors, referenceWeights, type Checkpoint } from '../src/format/checkpoint.ts';
import { encodeFloats, type FloatDType } from '../src/format/dtype.ts';
import { storedTensors } from '../src/format/weight-format.ts';
import { destroyModelWeights, loadModelWeights, weightBytes } from '../src/engine/load.ts';
import { argmax, loadEngine } from '../src/engine/engine.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import type { ModelWeights } from '../src/model/qwen35.ts';
import { randomBytes } from '../src/bench/data.ts';
import { compareLogits } from './logit-compare.ts';

const FILE = 'model.safetensors';

/** Runs `body` with the loader's piece size (and staging buffer size) set to `bytes`. */
async function withPieceBytes<T>(bytes: number, body: () => Promise<T>): Promise<T> {
  const saved = uploadOptions.pieceBytes;
  uploadOptions.pieceBytes = bytes;
  try {
    return await body();
  } finally {
    uploadOptions.pieceBytes = saved;
  }
}

async function bytesOf(ctx: GpuContext, b: GPUBuffer): Promise<Uint8Array> {
  return new Uint8Array(await readBuffer(ctx, b));
}

/** Same parts, same buffer sizes and labels, same bytes (padding included). */
async function assertSameLinear(ctx: GpuContext, got: GpuLinear, want: GpuLinear): Promise<void> {
  assert.equal(got.name, want.name);
  assert.deepEqual([got.rows, got.cols, got.format, got.bytes, got.fused], [want.rows, want.cols, want.format, want.bytes, want.fused], got.name);
  assert.equal(got.parts.length, want.parts.length, `${got.name}: parts`);
  for (const [i, p] of got.parts.entries()) {
    const q = want.parts[i];
    assert.deepEqual([p.rowStart, p.rows], [q.rowStart, q.rows], `${got.name} part ${i}`);
    for (const k of ['weight', 'scales', 'biases'] as const) {
      const a = p[k];
      const b = q[k];
      assert.equal(!!a, !!b, `${got.name} part ${i} ${k}`);
      if (!a || !b) continue;
      assert.deepEqual([a.size, a.label], [b.size, b.label], `${got.name} part ${i} ${k}`);
      assert.deepEqual(await bytesOf(ctx, a), await bytesOf(ctx, b), `${got.name} part ${i} ${k}: bytes differ`);
    }
  }
}

/** A RowReader over whole tensors held in memory. */
function memoryRows(spec: LinearSpec, data: Uint8Array[]): RowReader {
  const perRow = storedTensors(spec.format, spec.cols).map((t) => t.rowBytes);
  return async (tensors, from, to) => tensors.map((i) => data[i].slice(from * perRow[i], to * perRow[i]));
}

function randomTensors(spec: LinearSpec, seed: number): Uint8Array[] {
  return storedTensors(spec.format, spec.cols).map((t, i) => randomBytes(spec.rows * t.rowBytes, seed + i));
}
const dataOf = (t: Uint8Array[]) => ({ weight: t[0], scales: t[1], biases: t[2] });

test('staging ring + buffer writer: pieces of any length into several buffers land byte for byte, across staging buffers', async () => {
  const ctx = await getNodeGpu();
  for (const [slotBytes, slots] of [[64, 2], [100, 3], [4096, 2]]) {
    const ring = createStagingRing(ctx, slotBytes, slots);
    const sizes = [1, 6, 250, 1001];
    const want = sizes.map((n, i) => randomBytes(n, 40 + i));
    const dsts = sizes.map((n) => ctx.storage(n + 8, `dst-${n}`));
    const writers = dsts.map((d) => bufferWriter(ring, d));
    // Interleave the destinations, cutting each into pieces of 0..37 bytes.
    const at = sizes.map(() => 0);
    let turn = 0;
    while (at.some((a, i) => a < sizes[i])) {
      const i = turn++ % sizes.length;
      const n = Math.min(sizes[i] - at[i], (turn * 7) % 38);
      await writers[i].append(want[i].subarray(at[i], at[i] + n));
      at[i] += n;
    }
    for (const w of writers) await w.end();
    ring.submit();
    for (const [i, d] of dsts.entries()) {
      const got = await bytesOf(ctx, d);
      assert.deepEqual(got.subarray(0, sizes[i]), want[i], `slot ${slotBytes} × ${slots}: buffer ${sizes[i]}`);
      assert.ok(got.subarray(sizes[i]).every((b) => b === 0), 'the padding stays zero');
      d.destroy();
    }
    ring.destroy();
  }
});

test('staging ring: a mapAsync that fails (a lost device) fails the write that waits for it, naming the staging buffer', async () => {
  const ctx = await getNodeGpu();
  const d = ctx.device as unknown as Record<string, unknown>;
  const orig = ctx.device.createBuffer;
  d.createBuffer = (desc: GPUBufferDescriptor) => {
    const b = orig.call(ctx.device, desc);
    (b as unknown as Record<string, unknown>).mapAsync = () => Promise.reject(new Error('device lost (injected)'));
    return b;
  };
  const ring = createStagingRing(ctx, 64, 2);
  const dst = ctx.storage(1024, 'dst');
  try {
    // Slots 0 and 1 are created mapped; the third write waits for slot 0's mapAsync, which failed.
    await ring.write(dst, 0, new Uint8Array(64));
    await ring.write(dst, 64, new Uint8Array(64));
    await assert.rejects(ring.write(dst, 128, new Uint8Array(64)), (e: Error) => {
      assert.equal(e.message, 'weight upload: mapping staging buffer weight-staging-0 for writing failed (device lost (injected)); the GPU device may have been lost');
      return true;
    });
  } finally {
    delete d.createBuffer;
    ring.destroy();
  }
  await assert.rejects(ring.write(dst, 0, new Uint8Array(4)), /the staging ring was destroyed/);
  dst.destroy();
});

test('uploadGpuLinear / uploadFusedLinear equal createGpuLinear / createFusedLinear: row-split parts, odd row bytes, fusions', async () => {
  const ctx = await getNodeGpu();
  const q = (kind: 'affine' | 'mxfp4', bits: number, groupSize: number, scaleDtype: 'bf16' | 'e8m0'): LinearFormat => ({ kind, bits, groupSize, scaleDtype });
  const singles: [LinearSpec, number | undefined][] = [
    [{ name: 'affine4', rows: 37, cols: 128, format: q('affine', 4, 64, 'bf16') }, 1024], // parts of 16, 16, 5 rows
    [{ name: 'f16-odd', rows: 29, cols: 33, format: { kind: 'float', dtype: 'f16' } }, 700], // 66-byte rows: 10, 10, 9
    [{ name: 'mxfp4', rows: 19, cols: 64, format: q('mxfp4', 4, 32, 'e8m0') }, undefined], // 2-byte scale rows
  ];
  const ring = createStagingRing(ctx, 96, 2);
  for (const [seed, [spec, max]] of singles.entries()) {
    const data = randomTensors(spec, 10 * seed);
    for (const pieceBytes of [1, 100, 1 << 20]) {
      const want = createGpuLinear(ctx, spec, dataOf(data), max);
      const landed: number[] = [];
      const got = await uploadGpuLinear(ctx, ring, spec, memoryRows(spec, data), {
        maxBytesPerBuffer: max, pieceBytes, onPiece: (m, n) => landed.push(n),
      });
      ring.submit();
      if (max) assert.ok(got.parts.length > 1, `${spec.name}: split into parts`);
      assert.equal(landed.reduce((a, b) => a + b, 0), data.reduce((n, t) => n + t.byteLength, 0), `${spec.name}: progress covers every byte`);
      await assertSameLinear(ctx, got, want);
      destroyGpuLinear(got);
      destroyGpuLinear(want);
    }
  }
  // 2-byte scale rows: members of 3, 5 and 7 rows put the scales of the second member at byte 6, the third at 16.
  const fusions: [Fusion['kind'], LinearSpec[]][] = [
    ['split', [3, 5, 7].map((rows, i) => ({ name: `m${i}`, rows, cols: 128, format: q('affine', 4, 128, 'bf16') }))],
    ['split', [3, 5].map((rows, i) => ({ name: `f${i}`, rows, cols: 33, format: { kind: 'float', dtype: 'f16' } as LinearFormat }))],
    ['swiglu', ['gate', 'up'].map((name) => ({ name, rows: 7, cols: 64, format: q('affine', 3, 32, 'bf16') }))],
  ];
  for (const [kind, specs] of fusions) {
    const data = specs.map((s, i) => randomTensors(s, 100 + 10 * i));
    for (const pieceBytes of [1, 100, 1 << 20]) {
      const want = createFusedLinear(ctx, 'fused', kind, specs.map((spec, i) => ({ spec, data: dataOf(data[i]) })));
      const members: number[] = [];
      const got = await uploadFusedLinear(ctx, ring, 'fused', kind, specs.map((spec, i) => ({ spec, read: memoryRows(spec, data[i]) })), {
        pieceBytes, onPiece: (m) => members.push(m),
      });
      ring.submit();
      assert.deepEqual([...new Set(members)], specs.map((_, i) => i), 'pieces land member after member');
      await assertSameLinear(ctx, got, want);
      destroyGpuLinear(got);
      destroyGpuLinear(want);
    }
  }
  ring.destroy();
});

/** Every linear of loaded weights, each once (a tied lm_head is the embedding). */
function linearsOf(w: ModelWeights): GpuLinear[] {
  const out = new Set<GpuLinear>([w.embed, w.lmHead]);
  for (const l of w.layers) {
    const ms = l.kind === 'linear' ? [l.inProj, l.outProj] : [l.qkv, l.o];
    for (const m of [...ms, l.mlp.gateUp, l.mlp.down].flat()) out.add(m);
  }
  return [...out];
}

/** What the loader built before streaming: whole tensors read, then uploaded from memory. */
async function wholeTensorLinear(ctx: GpuContext, ckpt: Checkpoint, lin: GpuLinear): Promise<GpuLinear> {
  const dataFor = async (path: string) => {
    const p = ckpt.modules.get(path)!;
    if (p.kind === 'quant') {
      const { weight, scales, biases } = await readQuantTensors(ckpt.source, p);
      return { weight, scales, biases };
    }
    return { weight: await readEntry(ckpt.source, p.weight) };
  };
  const { rows, cols, format } = lin;
  if (!lin.fused) return createGpuLinear(ctx, { name: lin.name, rows, cols, format }, await dataFor(lin.name));
  const members = [];
  for (const [i, name] of lin.fused.names.entries()) {
    members.push({ spec: { name, rows: lin.fused.segments[i], cols, format }, data: await dataFor(name) });
  }
  return createFusedLinear(ctx, lin.name, lin.fused.kind, members);
}

test('every tiny recipe streamed in small pieces equals the whole-tensor upload byte for byte; progress per piece', async () => {
  const ctx = await getNodeGpu();
  for (const [i, recipe] of TINY_RECIPES.entries()) {
    const ckpt = await openCheckpoint(memorySource(makeTinyCheckpoint(recipe, { seed: 3 }), `tiny-${recipe}`));
    const total = weightBytes(ckpt);
    const progress: number[] = [];
    // Odd piece sizes: rows of 264-1088 bytes give pieces that end mid staging buffer and cross into the next.
    const pieceBytes = [3000, 1000, 40_000][i % 3];
    const weights = await withPieceBytes(pieceBytes, () => loadModelWeights(ctx, ckpt, {
      onProgress: (done, all) => { assert.equal(all, total); progress.push(done); },
    }));
    try {
      assert.equal(progress.at(-1), total, `${recipe}: progress ends at weightBytes`);
      assert.ok(progress.every((d, k) => k === 0 || d > progress[k - 1]), `${recipe}: progress only grows`);
      assert.ok(progress.length > ckpt.modules.size, `${recipe}: progress per piece (${progress.length} calls, ${ckpt.modules.size} modules)`);
      for (const lin of linearsOf(weights)) {
        const want = await wholeTensorLinear(ctx, ckpt, lin);
        await assertSameLinear(ctx, lin, want);
        destroyGpuLinear(want);
      }
    } finally {
      destroyModelWeights(weights);
    }
  }
});

interface ReadLog { file: string; offset: number; length: number }

/**
 * The source, recording every read; its bytes are copies (as a file or HTTP source gives), and `fail` may throw
 * instead of reading.
 */
function recording(src: ByteSource, opts: { fail?: (r: ReadLog) => boolean; onRead?: (r: ReadLog) => void } = {}) {
  const log: ReadLog[] = [];
  const source: ByteSource = {
    describe: () => src.describe(),
    size: (f) => src.size(f),
    async read(file, offset, length) {
      const r = { file, offset, length };
      log.push(r);
      opts.onRead?.(r);
      if (opts.fail?.(r)) throw new Error(`injected failure reading ${length} bytes at ${offset}`);
      return (await src.read(file, offset, length)).slice();
    },
  };
  return { source, log };
}

/** Asserts the reads cover the bytes of every tensor the model uses exactly once, and nothing else. */
function assertCoverage(ckpt: Checkpoint, log: ReadLog[]): void {
  const want = [...ckpt.tensors.values()].map((t) => ({ file: t.file, offset: t.begin, length: t.end - t.begin }));
  const merged = (rs: ReadLog[]) => {
    const out: ReadLog[] = [];
    for (const r of [...rs].sort((a, b) => a.file.localeCompare(b.file) || a.offset - b.offset)) {
      const last = out.at(-1);
      if (last && last.file === r.file) {
        assert.ok(r.offset >= last.offset + last.length, `${r.file}: bytes ${r.offset}.. read twice`);
        if (r.offset === last.offset + last.length) { last.length += r.length; continue; }
      }
      out.push({ ...r });
    }
    return out;
  };
  assert.deepEqual(merged(log), merged(want));
}

/**
 * Asserts the reads go through each region front to back, one region after another: a module's weight, then its
 * scales and biases (read in pairs). A source that keeps only its last chunk or two (the IndexedDB cache, 64 MiB
 * chunks) would load every chunk again and again if a piece read three regions.
 */
function assertRegionOrder(ckpt: Checkpoint, log: ReadLog[]): void {
  const tensors = [...ckpt.tensors.values()];
  const region = (r: ReadLog) => {
    const t = tensors.find((x) => x.file === r.file && x.begin <= r.offset && r.offset + r.length <= x.end);
    assert.ok(t, `a read of ${r.length} bytes at ${r.offset} spans tensors`);
    return { t, id: t.rawName.replace(/\.(scales|biases)$/, '.scales+biases') };
  };
  const done = new Set<string>();
  const last = new Map<string, number>();
  let current = '';
  for (const r of log) {
    const { t, id } = region(r);
    if (id !== current) {
      assert.ok(!done.has(id), `${id} read again after other tensors`);
      done.add(current);
      current = id;
    }
    assert.ok(r.offset >= (last.get(t.rawName) ?? 0), `${t.rawName}: read backwards`);
    last.set(t.rawName, r.offset + r.length);
  }
}

const SHAPE = { vocabSize: 8192 }; // a 2.1 MB embedding and lm_head: 34 pieces of 64 KiB each
const PIECE = 64 * 1024;

test('reads: none larger than the piece, every weight byte once, front to back, at most two pieces held; logits equal the reference', async () => {
  const ctx = await getNodeGpu();
  const files = makeTinyCheckpoint('q8g128', { seed: 5, shape: SHAPE });
  // Bytes asked of the source minus bytes landed in staging (the progress): what the load holds in JS memory, at
  // its largest just as a read starts.
  let asked = 0;
  let landed = 0;
  let peak = 0;
  const { source, log } = recording(memorySource(files, 'tiny-q8g128-v8192'), {
    onRead: (r) => { asked += r.length; peak = Math.max(peak, asked - landed); },
  });
  const ckpt = await openCheckpoint(source);
  log.length = 0;
  asked = 0;
  let largest = 0;
  for (const t of ckpt.tensors.values()) largest = Math.max(largest, t.end - t.begin);
  assert.ok(largest > 16 * PIECE, `test setup: the largest tensor (${largest} bytes) is well above the piece`);

  const t0 = performance.now();
  const weights = await withPieceBytes(PIECE, () => loadModelWeights(ctx, ckpt, { onProgress: (done) => { landed = done; } }));
  const seconds = (performance.now() - t0) / 1000;
  destroyModelWeights(weights);
  const maxRead = Math.max(...log.map((r) => r.length));
  console.log(`q8g128 V=8192, ${weightBytes(ckpt)} weight bytes, pieces of ${PIECE}: ${log.length} reads, largest ${maxRead} ` +
    `bytes (largest tensor ${largest}), peak read but not landed ${peak} bytes, ${seconds.toFixed(2)} s`);
  assert.ok(maxRead <= PIECE, `a read of ${maxRead} bytes, above the ${PIECE}-byte piece`);
  assert.ok(peak <= 2 * PIECE, `${peak} bytes read but not yet uploaded, above two pieces (${2 * PIECE})`);
  assertCoverage(ckpt, log);
  assertRegionOrder(ckpt, log);

  // The whole model: small pieces vs the default ones (bit for bit), and vs the CPU reference.
  const src = memorySource(files, 'tiny-q8g128-v8192');
  const opts = { contextLength: 8, tuning: 'default' as const };
  const small = await withPieceBytes(PIECE, () => loadEngine(ctx, src, opts));
  const whole = await loadEngine(ctx, src, opts);
  const ref = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied });
  try {
    const ids = [3, 4000, 17, 8191, 256];
    let a = await small.prefill(ids);
    let b = await whole.prefill(ids);
    let cpu = ref.prefill(ids).at(-1)!;
    for (let step = 0; step < 3; step++) {
      assert.deepEqual(a, b, `step ${step}: streamed in small pieces vs the default pieces`);
      const d = compareLogits(a, cpu);
      assert.ok(d.maxAbs <= 2e-3, `step ${step}: max |Δlogit| vs the CPU reference ${d.maxAbs}`);
      const next = argmax(cpu);
      [a, b, cpu] = [await small.decode(next), await whole.decode(next), ref.decode(next)];
    }
  } finally {
    small.dispose();
    whole.dispose();
  }
});

/** Tracks every buffer the device creates from now on, and which were destroyed; restore() unpatches. */
function trackBuffers(device: GPUDevice) {
  const made: GPUBuffer[] = [];
  const destroyed = new Set<GPUBuffer>();
  const d = device as unknown as Record<string, unknown>;
  const own = Object.prototype.hasOwnProperty.call(d, 'createBuffer');
  const prev = d.createBuffer;
  const orig = device.createBuffer;
  d.createBuffer = (desc: GPUBufferDescriptor) => {
    const b = orig.call(device, desc);
    made.push(b);
    const destroy = b.destroy;
    (b as unknown as Record<string, unknown>).destroy = () => { destroyed.add(b); destroy.call(b); };
    return b;
  };
  return { made, destroyed, restore: () => { if (own) d.createBuffer = prev; else delete d.createBuffer; } };
}

test('a read that fails mid-tensor: the load rejects naming the tensor, and every buffer it created is destroyed', async () => {
  const ctx = await getNodeGpu();
  const files = makeTinyCheckpoint('q8g128', { seed: 5, shape: SHAPE });
  const header = await parseSafetensorsHeader(FILE, memorySource(files));
  // The third piece of the embedding (the first linear), a member of the last layer's fused gate/up, and lm_head
  // (the last linear, with everything else created).
  const cases: [string, number][] = [
    ['language_model.model.embed_tokens.weight', 2 * PIECE],
    ['language_model.model.layers.7.mlp.up_proj.weight', 100],
    ['language_model.lm_head.weight', 1_500_000],
  ];
  for (const [name, within] of cases) {
    const t = header.tensors.get(name)!;
    const at = t.begin + within;
    const { source } = recording(memorySource(files, 'tiny'), { fail: (r) => r.offset <= at && at < r.offset + r.length });
    const ckpt = await openCheckpoint(source);
    const track = trackBuffers(ctx.device);
    try {
      await assert.rejects(withPieceBytes(PIECE, () => loadModelWeights(ctx, ckpt)), (e: Error) => {
        assert.match(e.message, new RegExp(`^${FILE}: tensor "${name.replace(/\./g, '\\.')}" \\(.*\\): reading its bytes \\d+-\\d+ failed: injected failure`));
        assert.match(String((e.cause as Error)?.message), /^injected failure/);
        return true;
      });
    } finally {
      track.restore();
    }
    assert.ok(track.made.length > 2, `${name}: buffers were created (${track.made.length})`);
    const left = track.made.filter((b) => !track.destroyed.has(b)).map((b) => b.label);
    assert.deepEqual(left, [], `${name}: buffers left behind`);
  }
});

test('per-piece checks name the tensor and the index within the whole tensor, not within the piece', async () => {
  const ctx = await getNodeGpu();
  const hf = (p: string) => `model.language_model.${p}`;
  const lm = (p: string) => `language_model.model.${p}`;
  const f = (dtype: FloatDType, v: number) => encodeFloats([v], dtype);
  // [recipe, tensor, byte offset in the tensor, bytes to write there, expected message]
  const cases: [TinyRecipe, string, number, Uint8Array, RegExp][] = [
    ['bf16', lm('embed_tokens.weight'), 2 * 200_000, f('BF16', NaN), /\(BF16 \[1024, 256\]\) holds NaN at index 200000 \(element \[781, 64\]\); the weights must be finite/],
    ['q4g32', lm('layers.1.mlp.down_proj.scales'), 2 * 3000, f('BF16', Infinity), /\(BF16 \[256, 16\]\) holds Infinity at index 3000 \(element \[187, 8\]\)/],
    ['q8g128', lm('layers.0.mlp.up_proj.scales'), 2 * 601, f('BF16', 3e38), /\(BF16 \[512, 2\]\): scale \S+ at index 601 \(element \[300, 1\]\) with bias \S+ overflows f32/],
    ['qwenfp8', hf('layers.1.mlp.down_proj.weight'), 100_000, Uint8Array.of(0xff), /\(F8_E4M3 \[256, 512\]\) holds the E4M3 NaN code 0xff at byte 100000; the weights must be finite/],
    ['udnvfp4', lm('layers.2.linear_attn.in_proj_z.scales'), 1000, Uint8Array.of(0x7f), /\(U8 \[128, 16\]\) holds the NaN code 0x7f \(e4m3\) at index 1000 \(element \[62, 8\]\)/],
  ];
  for (const [recipe, name, offset, bytes, want] of cases) {
    const files = makeTinyCheckpoint(recipe, { seed: 7 });
    const t = (await parseSafetensorsHeader(FILE, memorySource(files))).tensors.get(name);
    assert.ok(t, `test setup: no tensor ${name}`);
    files.get(FILE)!.set(bytes, t.begin + offset);
    const ckpt = await openCheckpoint(memorySource(files, `tiny-${recipe}`));
    await assert.rejects(withPieceBytes(4096, () => loadModelWeights(ctx, ckpt)), (e: Error) => {
      assert.match(e.message, new RegExp(`${FILE}: tensor "${name.replace(/\./g, '\\.')}"`));
      assert.match(e.message, want);
      return true;
    });
  }
});

test('peak memory at Qwen3.5-0.8B widths (QWEN_WEBGPU_MEASURE_LOAD=1)', { skip: !process.env.QWEN_WEBGPU_MEASURE_LOAD, timeout: 900_000 }, () => {
  const script = path.resolve(import.meta.dirname, '../scripts/measure-load-memory.ts');
  for (const recipe of ['q4g32', 'bf16']) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--recipe', recipe], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const m = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { maxReadMiB: number; peakInFlightMiB: number };
    console.log(r.stdout.trim());
    assert.ok(m.maxReadMiB <= 16 && m.peakInFlightMiB <= 32, r.stdout);
  }
});
