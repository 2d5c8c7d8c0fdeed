// Shared by the GPU kernel tests (kernels-ops, kernels-gdn-chunk, kernels-attn-prefill): deterministic inputs,
// one Dawn device, upload / read / encode helpers and the common tolerance check
// (max |gpu − ref| ≤ 1e-4 · max(1, max |ref|); NaN counts as an infinite error, so it fails).
import '../src/node/shaders-node.ts';
import assert from 'node:assert/strict';
import { getNodeGpu } from '../src/node/dawn.ts';
import { readF32, uploadBytes, type GpuContext } from '../src/gpu/context.ts';
import { directRecorder } from '../src/gpu/plan.ts';
import { maxAbsError } from '../src/bench/data.ts';

/** Deterministic uniform [0, 1) stream (mulberry32) so a failure reproduces. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A test file's input stream: rand() in [0, 1), randn(n, scale, offset) = offset + scale · U[−1, 1) per element. */
export function randomStream(seed: number) {
  const rand = rng(seed);
  const randn = (n: number, scale = 1, offset = 0): Float32Array<ArrayBuffer> => {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = offset + scale * (2 * rand() - 1);
    return out;
  };
  return { rand, randn };
}

/** The shared device, set by gpu() (an ES live binding: importers see it once gpu() has run). */
export let ctx: GpuContext;
export async function gpu(): Promise<GpuContext> {
  ctx ??= await getNodeGpu();
  return ctx;
}
export const up = (data: Float32Array): GPUBuffer => uploadBytes(ctx, data);
export const zeros = (n: number): GPUBuffer => ctx.storage(n * 4);
export const read = (buf: GPUBuffer, n: number): Promise<Float32Array> => readF32(ctx, buf, n);
export function exec(encode: (enc: GPUCommandEncoder) => void): void {
  const enc = ctx.device.createCommandEncoder();
  encode(enc);
  ctx.device.queue.submit([enc.finish()]);
}
/** Encodes straight into `enc`, with `position` as the step uniform's p0. */
export const rec = (enc: GPUCommandEncoder, position = 0) => directRecorder(ctx, enc, { position });

export function check(name: string, got: Float32Array, want: ArrayLike<number>): void {
  assert.equal(got.length, want.length, `${name}: length`);
  const { err, scale } = maxAbsError(got, want);
  const tol = 1e-4 * scale;
  console.log(`${name}: max |Δ| = ${err.toExponential(2)} (max(1, max |ref|) ${scale.toFixed(3)}, tol ${tol.toExponential(1)})`);
  assert.ok(err <= tol, `${name}: max |Δ| ${err} > ${tol}`);
}
