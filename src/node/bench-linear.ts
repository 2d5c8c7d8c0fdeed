// Microbenchmark: 4-bit gs64 dequant matvec (4096 × 4096) against a plain copy kernel in the same process.
// Decode is memory bound, so the number that matters is the matvec's effective bandwidth (bytes of weights, scales
// and biases read per second) as a fraction of what a trivial copy kernel achieves on the same device. On SwiftShader
// both are CPU timings: only the ratio means anything there.
//   node --import tsx src/node/bench-linear.ts [rows] [cols] [iterations]
import './shaders-node.ts';
import { getNodeGpu } from './dawn.ts';
import { dispatch, grid2d, uploadBytes, type GpuContext } from '../gpu/context.ts';
import { directRecorder } from '../gpu/plan.ts';
import { createGpuLinear, destroyGpuLinear, linear, linearOptions } from '../gpu/linear.ts';

const COPY_WGSL = `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 256u;
  if (i < arrayLength(&src)) { dst[i] = src[i]; }
}`;

function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

/** bf16 values in [0.5, 1): random scales and biases that keep results finite. */
function bf16Bytes(n: number, seed: number): Uint8Array {
  const r = randomBytes(n, seed);
  const out = new Uint16Array(n);
  for (let i = 0; i < n; i++) out[i] = 0x3f00 | (r[i] & 0x7f);
  return new Uint8Array(out.buffer);
}

/** Seconds per call of `encode`, from wall-clock time over `iters` calls in one submission (after a warm-up). */
async function time(ctx: GpuContext, iters: number, encode: (enc: GPUCommandEncoder) => void): Promise<number> {
  const run = async (n: number): Promise<number> => {
    const enc = ctx.device.createCommandEncoder();
    for (let i = 0; i < n; i++) encode(enc);
    const t0 = performance.now();
    ctx.device.queue.submit([enc.finish()]);
    await ctx.device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / 1000;
  };
  await run(1);
  return (await run(iters)) / iters;
}

async function main(): Promise<void> {
  const [rows, cols, iters] = [4096, 4096, 20].map((d, i) => Number(process.argv[2 + i] ?? d));
  const ctx = await getNodeGpu();
  const bits = 4;
  const groupSize = 64;
  const groups = rows * (cols / groupSize);
  const lin = createGpuLinear(
    ctx,
    { name: 'bench', rows, cols, format: { kind: 'affine', bits, groupSize, scaleDtype: 'bf16' } },
    { weight: randomBytes((rows * cols * bits) / 8, 1), scales: bf16Bytes(groups, 2), biases: bf16Bytes(groups, 3) },
  );
  const x = uploadBytes(ctx, new Float32Array(cols).fill(0.01));
  const y = ctx.storage(rows * 4);
  const weightBytes = lin.bytes;

  // The copy moves as many bytes as the matvec reads; its bandwidth counts bytes read plus bytes written.
  const src = uploadBytes(ctx, randomBytes(Math.ceil(weightBytes / 16) * 16, 4));
  const dst = ctx.storage(src.size);
  const copy = ctx.pipeline(COPY_WGSL);
  const copyGroups = grid2d(ctx, Math.ceil(src.size / 16 / 256));

  const tCopy = await time(ctx, iters, (enc) => dispatch(ctx, enc, copy, [src, dst], copyGroups));
  const copyGBs = (2 * src.size) / tCopy / 1e9;
  const info = (ctx.device as { adapterInfo?: { description?: string; subgroupMinSize?: number } }).adapterInfo;
  console.log(`device: ${info?.description ?? '?'}; subgroups ${ctx.features.subgroups ? `yes (min size ${info?.subgroupMinSize ?? '?'})` : 'no'}; wall-clock timing over ${iters} iterations`);
  console.log(`copy   ${(src.size / 1e6).toFixed(1)} MB: ${(tCopy * 1e3).toFixed(3)} ms  ${copyGBs.toFixed(2)} GB/s (read + write)`);

  // The default kernel first (subgroup reduction where available), then the workgroup-memory reduction.
  const variants = ctx.features.subgroups ? [true, false] : [false];
  for (const useSubgroups of variants) {
    linearOptions.useSubgroups = useSubgroups;
    const tMv = await time(ctx, iters, (enc) => linear(directRecorder(ctx, enc), lin, x, y, 1));
    const mvGBs = weightBytes / tMv / 1e9;
    const how = useSubgroups ? 'subgroup reduction' : 'workgroup-memory reduction';
    console.log(`matvec ${rows}x${cols} 4-bit gs64 bf16 (${how}), ${(weightBytes / 1e6).toFixed(1)} MB read: ${(tMv * 1e3).toFixed(3)} ms  ${mvGBs.toFixed(2)} GB/s`);
    console.log(`  ratio matvec / copy: ${(mvGBs / copyGBs).toFixed(3)}`);
  }
  linearOptions.useSubgroups = true;

  destroyGpuLinear(lin);
  for (const b of [x, y, src, dst]) b.destroy();
}

await main();
