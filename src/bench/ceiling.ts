// The bandwidth ceiling every kernel row is compared with, measured in the same run on the same device: a
// stream read (every invocation reads vec4<u32> words in a grid-stride loop, XOR-reduces them, and the workgroup
// writes one word), which is what a memory-bound decode kernel can at best do. A copy is reported beside it
// (bytes read + written), the figure the old bench-linear compared with. The data rotates through several
// buffers whose sum exceeds the largest last-level / system cache (Apple's Max chips: 48 MB), so the figure is
// DRAM bandwidth, not cache bandwidth.

import { grid2d, readBuffer, type GpuContext } from '../gpu/context.ts';
import { createStepBuffer, destroyPlan, recordPlan, replayPlan, type Binding, type StepPlan } from '../gpu/plan.ts';
import { randomBytes } from './data.ts';
import { timeKernel, type Timing, type TimingOptions } from './timing.ts';

const WG = 256;
/**
 * Candidate vec4 words per invocation (the grid is sized for that many; the loop covers any rest). A GPU wants
 * many workgroups (few words each); SwiftShader runs a workgroup's invocations as coroutines and pays per barrier
 * and per workgroup, so it wants a few long ones. The fastest on a 4 MiB slice is taken as the ceiling's grid.
 */
const WORDS_PER_INVOCATION = [4, 16, 64, 256, 1024];
const PROBE_BYTES = 4 << 20;

// One atomic per invocation into workgroup memory and one barrier: a tree reduction's log2(256) barriers cost
// SwiftShader 10× the read itself, and a GPU hides either.
export const STREAM_WGSL = /* wgsl */ `
@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
var<workgroup> acc_wg: atomic<u32>;

@compute @workgroup_size(${WG})
fn stream_read(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;
  let stride = nwg.x * nwg.y * ${WG}u;
  let n = arrayLength(&src);
  var acc = vec4<u32>(0u);
  for (var i = wg * ${WG}u + li; i < n; i += stride) { acc ^= src[i]; }
  atomicXor(&acc_wg, acc.x ^ acc.y ^ acc.z ^ acc.w);
  workgroupBarrier();
  if (li == 0u) { out[wg] = atomicLoad(&acc_wg); }
}

@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(${WG})
fn copy(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let wg = wid.x + wid.y * nwg.x;
  let stride = nwg.x * nwg.y * ${WG}u;
  let n = arrayLength(&src);
  for (var i = wg * ${WG}u + li; i < n; i += stride) { dst[i] = src[i]; }
}
`;

export interface CeilingResult {
  /** Stream-read GB/s (bytes read). */
  readGBps: number;
  /** Copy GB/s (bytes read + bytes written). */
  copyGBps: number;
  read: Timing;
  copy: Timing;
  /** Bytes the read sweeps over (all copies). */
  workingSetBytes: number;
  /** The XOR the kernel computed equals the XOR of the data: it read every word. */
  verified: boolean;
  /** vec4 words each invocation of the stream read reads (the fastest grid on this device). */
  readWordsPerInvocation: number;
}

export interface CeilingOptions extends Omit<TimingOptions, 'copies' | 'maxIterations'> {
  /** Total bytes over all rotating buffers (default 96 MiB). */
  workingSetBytes?: number;
  /** Bytes per buffer (default 24 MiB, or less where the binding limit is lower). */
  bufferBytes?: number;
}

/** XOR of all the words, as the stream-read kernel reduces them (the check that it read everything). */
export function xorOfWords(bytes: Uint8Array): number {
  const w = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  let x = 0;
  for (let i = 0; i < w.length; i++) x ^= w[i];
  return x >>> 0;
}

/** Workgroups actually launched for a flat count (the recorder lays it out 2-D, possibly with a few extra). */
function groupsLaidOut(ctx: GpuContext, count: number): number {
  const [x, y] = grid2d(ctx, count);
  return x * y;
}

type Entry = 'stream_read' | 'copy';

/** Records one dispatch of `entry` over `src` (a whole buffer or a slice) with a grid of `groups` workgroups. */
function plan(ctx: GpuContext, step: GPUBuffer, entry: Entry, src: Binding, out: GPUBuffer, dst: GPUBuffer, groups: number): StepPlan {
  const bindings: Record<number, Binding> = entry === 'stream_read' ? { 0: src, 1: out } : { 0: src, 2: dst };
  return recordPlan(ctx, step, entry, (rec) => rec.dispatch({ code: STREAM_WGSL, entry }, bindings, groups, entry));
}

/** The words per invocation whose grid runs `entry` fastest over the first PROBE_BYTES of `src`. */
async function fastestGrid(
  ctx: GpuContext, step: GPUBuffer, entry: Entry, src: GPUBuffer, out: GPUBuffer, dst: GPUBuffer,
): Promise<number> {
  const size = Math.min(PROBE_BYTES, src.size);
  let best = { w: WORDS_PER_INVOCATION[0], ms: Infinity };
  for (const w of WORDS_PER_INVOCATION) {
    const p = plan(ctx, step, entry, { buffer: src, offset: 0, size }, out, dst, Math.ceil(size / 16 / (WG * w)));
    try {
      const t = await timeKernel(ctx, (pass, _first, n) => { for (let i = 0; i < n; i++) replayPlan(pass, p); },
        { samples: 2, targetMs: 0, copies: 1, maxIterations: 1 });
      if (t.medianMs < best.ms) best = { w, ms: t.medianMs };
    } finally {
      destroyPlan(p);
    }
  }
  return best.w;
}

export async function measureCeiling(ctx: GpuContext, opts: CeilingOptions): Promise<CeilingResult> {
  const total = opts.workingSetBytes ?? 96 << 20;
  const limit = Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const per = Math.floor(Math.min(opts.bufferBytes ?? 24 << 20, limit, total) / 16) * 16;
  const copies = Math.max(1, Math.ceil(total / per));
  const words = per / 16;
  const maxGroups = Math.ceil(words / (WG * WORDS_PER_INVOCATION[0]));
  const data = randomBytes(per, 7);
  const step = createStepBuffer(ctx);
  const srcs: GPUBuffer[] = [];
  const plans: StepPlan[] = [];
  const out = ctx.storage(groupsLaidOut(ctx, maxGroups) * 4, 'stream-read partials');
  const dst = ctx.storage(per, 'copy destination');
  try {
    for (let i = 0; i < copies; i++) {
      const b = ctx.storage(per, `stream source ${i}`);
      ctx.device.queue.writeBuffer(b, 0, data as Uint8Array<ArrayBuffer>);
      srcs.push(b);
    }
    const readWords = await fastestGrid(ctx, step, 'stream_read', srcs[0], out, dst);
    const copyWords = await fastestGrid(ctx, step, 'copy', srcs[0], out, dst);
    const readGroups = Math.ceil(words / (WG * readWords));
    const readPlans = srcs.map((src) => plan(ctx, step, 'stream_read', src, out, dst, readGroups));
    const copyPlans = srcs.map((src) => plan(ctx, step, 'copy', src, out, dst, Math.ceil(words / (WG * copyWords))));
    plans.push(...readPlans, ...copyPlans);
    const timing = { ...opts, copies: copies, maxIterations: copies * 64 };
    const sweep = (ps: StepPlan[]) => (pass: GPUComputePassEncoder, first: number, n: number) => {
      for (let i = first; i < first + n; i++) replayPlan(pass, ps[i % copies]);
    };
    const read = await timeKernel(ctx, sweep(readPlans), timing);
    const copy = await timeKernel(ctx, sweep(copyPlans), timing);
    // Every source holds the same data, and the last read pass left its partials in `out`.
    const partials = new Uint32Array(await readBuffer(ctx, out, groupsLaidOut(ctx, readGroups) * 4));
    const verified = partials.reduce((x, w) => (x ^ w) >>> 0, 0) === xorOfWords(data);
    return {
      readGBps: per / (read.medianMs * 1e6),
      copyGBps: (2 * per) / (copy.medianMs * 1e6),
      read,
      copy,
      workingSetBytes: per * copies,
      verified,
      readWordsPerInvocation: readWords,
    };
  } finally {
    for (const p of plans) destroyPlan(p);
    for (const b of [...srcs, out, dst, step]) b.destroy();
  }
}
