// GPU linear / embedding kernels vs the CPU reference (src/model/reference-ops.ts) on MLX-quantised random weights.
import '../src/node/shaders-node.ts';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getNodeGpu } from '../src/node/dawn.ts';
import { readF32, uploadBytes, type GpuContext } from '../src/gpu/context.ts';
import { directRecorder } from '../src/gpu/plan.ts';
import { maxAbsError } from '../src/bench/data.ts';
import {
  canFoldNorm, createFusedLinear, createGpuLinear, destroyGpuLinear, embedGather, linear, linearOptions, linearSplit, linearSwiglu, linearTuning, matvecTokens,
  type GpuLinear, type LinearFormat, type ScaleDtype,
} from '../src/gpu/linear.ts';
import { dequantizeWeight, quantizeWeight } from '../src/format/weight-codec.ts';
import { describeFormat } from '../src/format/weight-format.ts';
import * as ref from '../src/model/reference-ops.ts';

/** Deterministic uniform floats in [-a, a) (xorshift32), so failures reproduce. */
function rand(n: number, seed: number, a = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * a;
  }
  return out;
}

const u8 = (a: ArrayBufferView): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

interface Made { lin: GpuLinear; w: Float32Array }

/** Quantise (or round to the float dtype) a random matrix, upload it, and return the f32 matrix the GPU sees. */
function make(ctx: GpuContext, rows: number, cols: number, format: LinearFormat, seed: number, maxBytes?: number): Made {
  const m = member(rows, cols, format, seed, `${format.kind === 'float' ? 'f' : 'w'}${rows}x${cols}`);
  return { lin: createGpuLinear(ctx, m.spec, m.data, maxBytes), w: m.w };
}

/**
 * Runs linear on the GPU with x placed at an offset and y written at an offset, and returns y. An x offset that is a
 * multiple of 4 takes the vec4 x loads, any other the scalar ones.
 */
async function runLinear(ctx: GpuContext, lin: GpuLinear, x: Float32Array, M: number, xOffset = 5): Promise<Float32Array> {
  const yOffset = 3;
  const xs = new Float32Array(xOffset + x.length);
  xs.set(x, xOffset);
  const xb = uploadBytes(ctx, xs);
  const yb = ctx.storage((yOffset + M * lin.rows) * 4);
  const enc = ctx.device.createCommandEncoder();
  linear(directRecorder(ctx, enc), lin, xb, yb, M, { xOffset, yOffset });
  ctx.device.queue.submit([enc.finish()]);
  const y = await readF32(ctx, yb, M * lin.rows, yOffset);
  xb.destroy();
  yb.destroy();
  return y;
}

function check(label: string, got: Float32Array, want: Float32Array): void {
  assert.equal(got.length, want.length);
  const { err, scale } = maxAbsError(got, want);
  console.log(`${label.padEnd(44)} max|Δ| ${err.toExponential(2)}  (max|ref| ${scale.toFixed(2)})`);
  assert.ok(err <= 1e-4 * scale, `${label}: max |Δ| ${err} > ${1e-4 * scale}`);
}

async function checkLinear(ctx: GpuContext, label: string, m: Made, M: number, seed: number, xOffset = 5): Promise<void> {
  const { lin, w } = m;
  const x = rand(M * lin.cols, seed);
  const got = await runLinear(ctx, lin, x, M, xOffset);
  check(`${label} M=${M} xOff=${xOffset}`, got, ref.linear(x, w, M, lin.rows, lin.cols));
}

/** Runs `body` with subgroup shuffles allowed or not (then the matvec reduces through workgroup memory). */
async function withSubgroups(useSubgroups: boolean, body: () => Promise<void>): Promise<void> {
  const saved = { ...linearOptions };
  linearOptions.useSubgroups = useSubgroups;
  try {
    await body();
  } finally {
    Object.assign(linearOptions, saved);
  }
}

/** Runs `body` with the matvec reduced through workgroup memory (lanes up to 32) instead of subgroup shuffles. */
const withWorkgroupReduction = (body: () => Promise<void>): Promise<void> => withSubgroups(false, body);

const BITS = [2, 3, 4, 5, 6, 8] as const;
const GROUPS = [32, 64, 128] as const;

test('affine linear: every bits × group size, bf16 scales, M = 1 and 3 (matvec)', async () => {
  const ctx = await getNodeGpu();
  let seed = 1;
  for (const bits of BITS) {
    for (const groupSize of GROUPS) {
      const rows = 37;
      const cols = groupSize * (bits % 2 === 0 ? 2 : 3);
      const m = make(ctx, rows, cols, { kind: 'affine', bits, groupSize, scaleDtype: 'bf16' }, seed++);
      await checkLinear(ctx, `affine b${bits} g${groupSize} bf16 [${rows}x${cols}]`, m, 1, seed++, 4);
      await checkLinear(ctx, `affine b${bits} g${groupSize} bf16 [${rows}x${cols}]`, m, 3, seed++, 5);
      destroyGpuLinear(m.lin);
    }
  }
});

test('affine linear: workgroup-memory reduction (no subgroups), up to 32 lanes per row', async () => {
  const ctx = await getNodeGpu();
  await withWorkgroupReduction(async () => {
    let seed = 50;
    for (const [bits, cols] of [[3, 1024], [4, 1024], [8, 64], [6, 2048], [2, 256]] as const) {
      const m = make(ctx, 21, cols, { kind: 'affine', bits, groupSize: 64, scaleDtype: 'bf16' }, seed++);
      await checkLinear(ctx, `wg-reduce affine b${bits} g64 bf16 [21x${cols}]`, m, 1, seed++, 0);
      await checkLinear(ctx, `wg-reduce affine b${bits} g64 bf16 [21x${cols}]`, m, 2, seed++, 7);
      destroyGpuLinear(m.lin);
    }
  });
});

test('affine linear: f16 and f32 scales, longer rows, M = 1', async () => {
  const ctx = await getNodeGpu();
  const cases: [number, number, ScaleDtype, number, number][] = [
    [4, 64, 'f16', 19, 1024], [3, 32, 'f16', 21, 320], [6, 128, 'f16', 13, 768],
    [8, 32, 'f32', 11, 256], [5, 64, 'f32', 23, 640], [2, 128, 'f32', 9, 1280],
  ];
  let seed = 100;
  for (const [bits, groupSize, scaleDtype, rows, cols] of cases) {
    const m = make(ctx, rows, cols, { kind: 'affine', bits: bits as 4, groupSize: groupSize as 64, scaleDtype }, seed++);
    await checkLinear(ctx, `affine b${bits} g${groupSize} ${scaleDtype} [${rows}x${cols}]`, m, 1, seed++);
    destroyGpuLinear(m.lin);
  }
});

test('affine linear: multi-token matvec (MT = 2, 4, 8 tokens per workgroup), every bit width, both reductions', async () => {
  const ctx = await getNodeGpu();
  const maxM = linearTuning(ctx).matvecMaxM;
  assert.ok(maxM >= 9, `the crossover (${maxM}) leaves no M with two multi-token workgroups`);
  let seed = 150;
  for (const useSubgroups of [true, false]) {
    await withSubgroups(useSubgroups, async () => {
      for (const bits of BITS) {
        const groupSize = GROUPS[(bits + 1) % 3];
        const rows = 23;
        const cols = groupSize * 2;
        const m = make(ctx, rows, cols, { kind: 'affine', bits, groupSize, scaleDtype: 'bf16' }, seed++);
        // 2 and 3: MT = 2 and 4 with a clamped token; 5, 8: MT = 8; 9 and maxM: several workgroups along z.
        for (const M of [2, 3, 5, 8, 9, maxM]) {
          const x = rand(M * cols, seed++);
          const got = await runLinear(ctx, m.lin, x, M, M % 2 ? 5 : 4);
          check(`MT=${matvecTokens(M)} b${bits} g${groupSize} sg=${useSubgroups} M=${M}`, got, ref.linear(x, m.w, M, rows, cols));
          // Each token's sum runs in the same order whatever MT is: every row equals the single-token matvec's bits.
          for (const t of [0, M - 1]) {
            const one = await runLinear(ctx, m.lin, x.subarray(t * cols, (t + 1) * cols), 1, 4);
            assert.deepEqual(got.subarray(t * rows, (t + 1) * rows), one, `MT=${matvecTokens(M)} M=${M}: token ${t} differs from M=1`);
          }
        }
        destroyGpuLinear(m.lin);
      }
    });
  }
});

test('affine linear: tiled GEMM above the matvec crossover, every bit width', async () => {
  const ctx = await getNodeGpu();
  const MATVEC_MAX_M = linearTuning(ctx).matvecMaxM;
  let seed = 200;
  for (const bits of BITS) {
    const groupSize = GROUPS[bits % 3];
    const scaleDtype: ScaleDtype = bits === 5 ? 'f16' : bits === 6 ? 'f32' : 'bf16';
    const rows = bits === 4 ? 70 : 37;
    const m = make(ctx, rows, groupSize * 3, { kind: 'affine', bits, groupSize, scaleDtype }, seed++);
    const M = bits === 4 ? 17 : MATVEC_MAX_M + 1 + bits;
    await checkLinear(ctx, `affine b${bits} g${groupSize} ${scaleDtype} [${rows}x${groupSize * 3}]`, m, M, seed++);
    destroyGpuLinear(m.lin);
  }
});

// The floating formats of the table: MLX microscaling (spec §5.4) and FP8 with float scales (spec §6), channel
// (one group per row) and 128-wide groups.
const FP_FORMATS: LinearFormat[] = [
  { kind: 'mxfp4', bits: 4, groupSize: 32, scaleDtype: 'e8m0' },
  { kind: 'nvfp4', bits: 4, groupSize: 16, scaleDtype: 'e4m3' },
  { kind: 'mxfp8', bits: 8, groupSize: 32, scaleDtype: 'e8m0' },
  { kind: 'fp8', bits: 8, groupSize: 384, scaleDtype: 'bf16' },
  { kind: 'fp8', bits: 8, groupSize: 128, scaleDtype: 'f32' },
];

// Each format's variants are few (pipeline compiles dominate on SwiftShader): the decode matvec with vec4 x, a
// 3-token matvec with scalar x loads, the GEMM, a SwiGLU pair with the folded norm and one on the GEMM.
test('mxfp4 / nvfp4 / mxfp8 / fp8 linear: matvec, multi-token matvec, GEMM, SwiGLU with folded norm, row split', async () => {
  const ctx = await getNodeGpu();
  let seed = 900;
  const cols = 384;
  const gemmM = linearTuning(ctx).matvecMaxM + 3;
  for (const format of FP_FORMATS) {
    const name = describeFormat(format);
    const m = make(ctx, 37, cols, format, seed);
    for (const [M, xOff] of [[1, 4], [3, 5], [gemmM, 4]]) await checkLinear(ctx, name, m, M, seed + M, xOff);
    // nvfp4's two groups per chunk through the other reduction too.
    if (format.kind === 'nvfp4') await withWorkgroupReduction(() => checkLinear(ctx, `wg-reduce ${name}`, m, 1, seed + 1, 4));

    // Split into several parts: bit-identical to the whole.
    const split = make(ctx, 37, cols, format, seed, 1000);
    assert.ok(split.lin.parts.length > 3, `${name}: expected several parts, got ${split.lin.parts.length}`);
    const x = rand(cols, seed + 2);
    assert.deepEqual(await runLinear(ctx, split.lin, x, 1, 4), await runLinear(ctx, m.lin, x, 1, 4), `${name}: split result differs`);
    destroyGpuLinear(split.lin);
    destroyGpuLinear(m.lin);

    const I = 13;
    const [g, u] = [member(I, cols, format, seed + 3, 'gate'), member(I, cols, format, seed + 4, 'up')];
    const gu = createFusedLinear(ctx, 'gate_up', 'swiglu', [g, u]);
    const gain = rand(cols, seed + 5, 1.5);
    const gainBuf = uploadBytes(ctx, gain);
    for (const M of [1, gemmM]) {
      const h = rand(M * cols, seed + 6 + M, 4);
      const hb = uploadBytes(ctx, h);
      const act = ctx.storage(M * I * 4);
      const folded = canFoldNorm(ctx, gu, M);
      assert.equal(folded, M === 1, `${name}: the norm folds into the matvec, not the GEMM`);
      const enc = ctx.device.createCommandEncoder();
      linearSwiglu(directRecorder(ctx, enc), gu, hb, act, M, folded ? { norm: { gain: gainBuf, eps: 1e-6 } } : {});
      ctx.device.queue.submit([enc.finish()]);
      const xin = folded ? ref.rmsNorm(h, gain, M, cols, 1e-6) : h;
      check(`${name} swiglu${folded ? '+norm' : ''} M=${M}`, await readF32(ctx, act, M * I), ref.swiglu(ref.linear(xin, g.w, M, I, cols), ref.linear(xin, u.w, M, I, cols)));
      hb.destroy();
      act.destroy();
    }
    destroyGpuLinear(gu);
    gainBuf.destroy();
    seed += 100;
  }
});

test('float linear: bf16, f16, f32 weights, odd rows, cols 192 / 256 / odd', async () => {
  const ctx = await getNodeGpu();
  let seed = 300;
  const cases: [ScaleDtype, number, number][] = [
    ['bf16', 37, 192], ['bf16', 21, 256], ['f16', 29, 192], ['f32', 33, 256], ['bf16', 13, 101], ['f32', 7, 45],
  ];
  for (const [dtype, rows, cols] of cases) {
    const m = make(ctx, rows, cols, { kind: 'float', dtype }, seed++);
    await checkLinear(ctx, `float ${dtype} [${rows}x${cols}]`, m, 1, seed++, 0);
    await checkLinear(ctx, `float ${dtype} [${rows}x${cols}]`, m, 3, seed++, 5);
    await checkLinear(ctx, `float ${dtype} [${rows}x${cols}]`, m, 17, seed++, 8);
    await withWorkgroupReduction(() => checkLinear(ctx, `wg-reduce float ${dtype} [${rows}x${cols}]`, m, 2, seed++, 4));
    destroyGpuLinear(m.lin);
  }
});

test('row split into parts gives identical results', async () => {
  const ctx = await getNodeGpu();
  const formats: LinearFormat[] = [
    { kind: 'affine', bits: 3, groupSize: 64, scaleDtype: 'bf16' },
    { kind: 'float', dtype: 'bf16' },
  ];
  for (const format of formats) {
    const rows = 75;
    const cols = 192;
    const whole = make(ctx, rows, cols, format, 400);
    // Tiny buffers: 72 bytes of 3-bit codes per row → 4 rows per part; 384 bytes of bf16 per row → 2 rows per part.
    const split = make(ctx, rows, cols, format, 400, format.kind === 'affine' ? 300 : 800);
    assert.ok(split.lin.parts.length > 10, `expected many parts, got ${split.lin.parts.length}`);
    for (const M of [1, 9]) {
      const x = rand(M * cols, 401 + M);
      const a = await runLinear(ctx, whole.lin, x, M);
      const b = await runLinear(ctx, split.lin, x, M);
      assert.deepEqual(b, a, `${format.kind}: split result differs (M=${M})`);
      check(`split ${format.kind} ${split.lin.parts.length} parts M=${M}`, b, ref.linear(x, whole.w, M, rows, cols));
    }
    destroyGpuLinear(whole.lin);
    destroyGpuLinear(split.lin);
  }
  assert.throws(
    () => make(ctx, 4, 256, { kind: 'float', dtype: 'f32' }, 1, 512),
    /f4x256.*1024 bytes.*512-byte limit/,
  );
});

test('embedGather: quantised and float tables, split into parts', async () => {
  const ctx = await getNodeGpu();
  const ids = new Uint32Array([0, 40, 7, 40, 99, 3, 63]);
  const idsBuf = uploadBytes(ctx, ids);
  const formats: [LinearFormat, number | undefined][] = [
    [{ kind: 'affine', bits: 4, groupSize: 64, scaleDtype: 'bf16' }, undefined],
    [{ kind: 'affine', bits: 6, groupSize: 32, scaleDtype: 'f16' }, 1000],
    [{ kind: 'float', dtype: 'bf16' }, undefined],
    [{ kind: 'float', dtype: 'f32' }, 3000],
    [{ kind: 'mxfp4', bits: 4, groupSize: 32, scaleDtype: 'e8m0' }, undefined],
    [{ kind: 'nvfp4', bits: 4, groupSize: 16, scaleDtype: 'e4m3' }, 1000],
    [{ kind: 'mxfp8', bits: 8, groupSize: 32, scaleDtype: 'e8m0' }, undefined],
    [{ kind: 'fp8', bits: 8, groupSize: 256, scaleDtype: 'bf16' }, 3000],
  ];
  let seed = 500;
  for (const [format, maxBytes] of formats) {
    const rows = 100;
    const cols = 256;
    const { lin, w } = make(ctx, rows, cols, format, seed++, maxBytes);
    const out = ctx.storage(ids.length * cols * 4);
    const enc = ctx.device.createCommandEncoder();
    embedGather(directRecorder(ctx, enc), lin, idsBuf, out, ids.length);
    ctx.device.queue.submit([enc.finish()]);
    const got = await readF32(ctx, out, ids.length * cols);
    const name = describeFormat(format);
    check(`embed ${name} (${lin.parts.length} parts)`, got, ref.embedGather(w, ids, cols));
    out.destroy();
    destroyGpuLinear(lin);
  }
  idsBuf.destroy();
});

/** The stored bytes (the CPU codec, src/format/weight-codec.ts) and the f32 matrix they decode to. */
function member(rows: number, cols: number, format: LinearFormat, seed: number, name: string) {
  const data = quantizeWeight(rand(rows * cols, seed, 0.5), rows, cols, format);
  return { spec: { name, rows, cols, format }, data, w: dequantizeWeight(format, rows, cols, data) };
}

test('output stages: accumulate, split into segments, SwiGLU pairs (matvec and GEMM, affine and float)', async () => {
  const ctx = await getNodeGpu();
  const formats: LinearFormat[] = [
    { kind: 'affine', bits: 4, groupSize: 32, scaleDtype: 'bf16' },
    { kind: 'affine', bits: 3, groupSize: 64, scaleDtype: 'f16' },
    { kind: 'float', dtype: 'bf16' },
  ];
  const cols = 128;
  for (const format of formats) {
    const tag = describeFormat(format);
    for (const M of [1, 3, 6, linearTuning(ctx).matvecMaxM + 1, 70]) {
      const x = rand(M * cols, 7 + M);
      const xb = uploadBytes(ctx, x);

      // accumulate: y += x · Wᵀ onto a prefilled y (rows odd: a partial last slot and tile).
      const acc = make(ctx, 37, cols, format, 3);
      const y0 = rand(M * 37, 9);
      const yb = uploadBytes(ctx, y0);
      let enc = ctx.device.createCommandEncoder();
      linear(directRecorder(ctx, enc), acc.lin, xb, yb, M, { accumulate: true });
      ctx.device.queue.submit([enc.finish()]);
      const want = ref.linear(x, acc.w, M, 37, cols).map((v, i) => v + y0[i]);
      check(`accumulate ${tag} M=${M}`, await readF32(ctx, yb, M * 37), want);
      destroyGpuLinear(acc.lin);
      yb.destroy();

      // split: four members of odd row counts, each into its own output.
      const rows = [40, 9, 5, 3];
      const ms = rows.map((r, i) => member(r, cols, format, 20 + i, `m${i}`));
      const fused = createFusedLinear(ctx, 'split', 'split', ms);
      const outs = rows.map((r) => ctx.storage(M * r * 4));
      enc = ctx.device.createCommandEncoder();
      linearSplit(directRecorder(ctx, enc), fused, xb, outs, M);
      ctx.device.queue.submit([enc.finish()]);
      for (const [i, m] of ms.entries()) {
        check(`split ${tag} M=${M} segment ${i}`, await readF32(ctx, outs[i], M * rows[i]), ref.linear(x, m.w, M, rows[i], cols));
      }
      destroyGpuLinear(fused);
      outs.forEach((b) => b.destroy());

      // three members: the fourth output slot is unused.
      const three = createFusedLinear(ctx, 'split3', 'split', ms.slice(0, 3));
      const outs3 = rows.slice(0, 3).map((r) => ctx.storage(M * r * 4));
      enc = ctx.device.createCommandEncoder();
      linearSplit(directRecorder(ctx, enc), three, xb, outs3, M);
      ctx.device.queue.submit([enc.finish()]);
      check(`split3 ${tag} M=${M} segment 2`, await readF32(ctx, outs3[2], M * rows[2]), ref.linear(x, ms[2].w, M, rows[2], cols));
      destroyGpuLinear(three);
      outs3.forEach((b) => b.destroy());

      // SwiGLU: I = 35 (odd, not a multiple of the 32-row GEMM half-tile).
      const I = 35;
      const [g, u] = [member(I, cols, format, 30, 'gate'), member(I, cols, format, 31, 'up')];
      const gu = createFusedLinear(ctx, 'gate_up', 'swiglu', [g, u]);
      const act = ctx.storage(M * I * 4);
      enc = ctx.device.createCommandEncoder();
      linearSwiglu(directRecorder(ctx, enc), gu, xb, act, M);
      ctx.device.queue.submit([enc.finish()]);
      const wantAct = ref.swiglu(ref.linear(x, g.w, M, I, cols), ref.linear(x, u.w, M, I, cols));
      check(`swiglu ${tag} M=${M}`, await readF32(ctx, act, M * I), wantAct);
      destroyGpuLinear(gu);
      act.destroy();
      xb.destroy();
    }
  }
  // Members of different formats or widths are refused.
  const a = member(8, cols, formats[0], 1, 'a');
  const b = member(8, cols, formats[1], 2, 'b');
  assert.throws(() => createFusedLinear(ctx, 'mixed', 'split', [a, b]), /cannot be fused/);
});

test('RMSNorm folded into the affine matvec: every bit width, write / split / SwiGLU stages, MT 1-8, both reductions', async () => {
  const ctx = await getNodeGpu();
  const eps = 1e-6;
  let seed = 400;
  for (const useSubgroups of [true, false]) {
    await withSubgroups(useSubgroups, async () => {
      for (const bits of BITS) {
        const groupSize = GROUPS[bits % 3];
        const cols = groupSize * 4;
        const format: LinearFormat = { kind: 'affine', bits, groupSize, scaleDtype: 'bf16' };
        // A residual stream with a large spread (the norm must be computed over the whole row, not a lane's share).
        const gain = rand(cols, seed++, 1.5);
        const gainBuf = uploadBytes(ctx, gain);
        for (const M of [1, 3, 9]) {
          const h = rand(M * cols, seed++, 4);
          const hb = uploadBytes(ctx, h);
          const xn = ref.rmsNorm(h, gain, M, cols, eps);
          const norm = { gain: gainBuf, eps };
          const tag = `b${bits} g${groupSize} sg=${useSubgroups} M=${M}`;

          const one = make(ctx, 29, cols, format, seed++);
          const y = ctx.storage(M * 29 * 4);
          let enc = ctx.device.createCommandEncoder();
          linear(directRecorder(ctx, enc), one.lin, hb, y, M, { norm });
          ctx.device.queue.submit([enc.finish()]);
          check(`norm+linear ${tag}`, await readF32(ctx, y, M * 29), ref.linear(xn, one.w, M, 29, cols));
          destroyGpuLinear(one.lin);
          y.destroy();

          const ms = [17, 6, 3].map((r, i) => member(r, cols, format, seed + i, `m${i}`));
          const split = createFusedLinear(ctx, 'split', 'split', ms);
          const outs = ms.map((m) => ctx.storage(M * m.spec.rows * 4));
          enc = ctx.device.createCommandEncoder();
          linearSplit(directRecorder(ctx, enc), split, hb, outs, M, { norm });
          ctx.device.queue.submit([enc.finish()]);
          for (const [i, m] of ms.entries()) {
            check(`norm+split ${tag} segment ${i}`, await readF32(ctx, outs[i], M * m.spec.rows), ref.linear(xn, m.w, M, m.spec.rows, cols));
          }
          destroyGpuLinear(split);
          outs.forEach((b) => b.destroy());

          const I = 13;
          const [g, u] = [member(I, cols, format, seed + 5, 'gate'), member(I, cols, format, seed + 6, 'up')];
          const gu = createFusedLinear(ctx, 'gate_up', 'swiglu', [g, u]);
          const act = ctx.storage(M * I * 4);
          enc = ctx.device.createCommandEncoder();
          linearSwiglu(directRecorder(ctx, enc), gu, hb, act, M, { norm });
          ctx.device.queue.submit([enc.finish()]);
          check(`norm+swiglu ${tag}`, await readF32(ctx, act, M * I), ref.swiglu(ref.linear(xn, g.w, M, I, cols), ref.linear(xn, u.w, M, I, cols)));
          destroyGpuLinear(gu);
          act.destroy();
          hb.destroy();
          seed += 8;
        }
        gainBuf.destroy();
      }
    });
  }
  // A split with the gain needs 9 storage buffers: on an adapter at WebGPU's default limit of 8 it does not fold.
  const limited = { ...ctx, limits: { maxStorageBuffersPerShaderStage: 8 } as GPUSupportedLimits };
  const fmt: LinearFormat = { kind: 'affine', bits: 4, groupSize: 64, scaleDtype: 'bf16' };
  const parts = [8, 8, 8].map((r, i) => member(r, 64, fmt, 500 + i, `p${i}`));
  const split3 = createFusedLinear(ctx, 'split', 'split', parts);
  const plain = make(ctx, 8, 64, fmt, 503);
  assert.equal(canFoldNorm(ctx, split3, 1), ctx.limits.maxStorageBuffersPerShaderStage >= 9);
  assert.equal(canFoldNorm(limited, split3, 1), false);
  assert.equal(canFoldNorm(limited, plain.lin, 1), true);
  destroyGpuLinear(split3);
  destroyGpuLinear(plain.lin);

  // Where the norm cannot fold (float weights; the GEMM), the call is refused, not silently wrong.
  const f = make(ctx, 8, 64, { kind: 'float', dtype: 'bf16' }, 1);
  const g = uploadBytes(ctx, new Float32Array(64).fill(1));
  const enc = ctx.device.createCommandEncoder();
  assert.throws(() => linear(directRecorder(ctx, enc), f.lin, g, ctx.storage(32), 1, { norm: { gain: g, eps: 1e-6 } }), /folds only into the quantized matvec/);
  const q = make(ctx, 8, 64, { kind: 'affine', bits: 4, groupSize: 64, scaleDtype: 'bf16' }, 2);
  const M = linearTuning(ctx).matvecMaxM + 1;
  const big = ctx.storage(M * 64 * 4);
  assert.throws(() => linear(directRecorder(ctx, enc), q.lin, big, ctx.storage(M * 8 * 4), M, { norm: { gain: g, eps: 1e-6 } }), /folds only/);
});
