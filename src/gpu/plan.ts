// Where kernels go. Every kernel wrapper (ops.ts, linear.ts, sample.ts) describes its dispatches to a Recorder:
// which kernel, which buffers, how many workgroups, which fixed parameters. Three recorders exist:
//   directRecorder   encodes at once, one compute pass per dispatch with fresh uniforms and bind groups
//                    (kernel tests, one-off work);
//   recordPlan       builds a StepPlan: pipelines, bind groups and one uniform arena created once, so replaying
//                    a forward creates no GPU object and encodes one compute pass;
//   collectKernels   only lists the pipelines a recording needs, so they can be compiled ahead with
//                    createComputePipelineAsync.
// Values that change between calls of a plan (the position) live in one small `step` uniform that the kernels
// depending on them bind; it is written once per call (writeStep). Models: ratchet's Executable (one pass, uniforms
// set up front), wonnx (bind groups built at load).
import { grid2d, pipelineKey, type GpuContext } from './context.ts';

/** A uniform or storage binding: a whole buffer or a range of one. */
export type Binding = GPUBuffer | { buffer: GPUBuffer; offset: number; size: number };

/** A compute pipeline by its WGSL text, entry point and override constants (the pipeline cache key). */
export interface Kernel { code: string; entry?: string; constants?: Record<string, number> }

export interface Recorder {
  readonly ctx: GpuContext;
  /** Uniform with the per-call values (STEP_WGSL); bound at STEP_BINDING by kernels that read the position. */
  readonly step: GPUBuffer;
  /** A uniform holding `words` (u32/f32 words), fixed for the life of the recording. */
  params(words: ArrayBufferView): Binding;
  /** One dispatch; `groups` as a flat count is laid out 2-D by grid2d (the kernels rebuild x + y·nx). */
  dispatch(kernel: Kernel, bindings: Record<number, Binding>, groups: number | [number, number?, number?], label: string): void;
}

/** The binding number of the step uniform in every kernel that reads it. */
export const STEP_BINDING = 15;
export const STEP_BYTES = 16;
/** The step uniform as WGSL declares it (rope.wgsl, elementwise.wgsl, attention.wgsl). */
export interface StepValues { position: number }

export function createStepBuffer(ctx: GpuContext): GPUBuffer {
  return ctx.device.createBuffer({
    label: 'step', size: STEP_BYTES, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
}

const stepWords = new Uint32Array(STEP_BYTES / 4);
/** Queues the one write a call of a plan needs: the position of its first token. */
export function writeStep(ctx: GpuContext, step: GPUBuffer, v: StepValues): void {
  stepWords[0] = v.position;
  ctx.device.queue.writeBuffer(step, 0, stepWords);
}

function workgroups(ctx: GpuContext, groups: number | [number, number?, number?]): [number, number, number] {
  if (typeof groups === 'number') {
    const [x, y] = grid2d(ctx, groups);
    return [x, y, 1];
  }
  return [groups[0], groups[1] ?? 1, groups[2] ?? 1];
}

function pipelineOf(ctx: GpuContext, k: Kernel): GPUComputePipeline {
  return ctx.pipeline(k.code, k.constants, k.entry);
}

function entries(bindings: Record<number, Binding>): GPUBindGroupEntry[] {
  return Object.entries(bindings).map(([binding, b]) => ({
    binding: Number(binding),
    resource: 'buffer' in b && 'offset' in b ? { buffer: b.buffer, offset: b.offset, size: b.size } : { buffer: b as GPUBuffer },
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// direct

/**
 * Encodes each dispatch into `enc` as its own compute pass with a new uniform and bind group. `step` supplies the
 * position for kernels that read it (a step buffer is created and written when not given).
 */
export function directRecorder(ctx: GpuContext, enc: GPUCommandEncoder, step?: GPUBuffer | StepValues): Recorder {
  let stepBuffer: GPUBuffer;
  if (step && 'size' in step) {
    stepBuffer = step;
  } else {
    stepBuffer = createStepBuffer(ctx);
    writeStep(ctx, stepBuffer, step ?? { position: 0 });
  }
  return {
    ctx,
    step: stepBuffer,
    params: (words) => ctx.uniform(words),
    dispatch(kernel, bindings, groups, label) {
      const [x, y, z] = workgroups(ctx, groups);
      if (x * y * z === 0) return;
      const pipeline = pipelineOf(ctx, kernel);
      const bindGroup = ctx.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: entries(bindings) });
      const pass = enc.beginComputePass({ label });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// plans

interface PlannedDispatch { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; x: number; y: number; z: number; label: string }

/** A recorded sequence of dispatches whose GPU objects all exist: replaying it creates nothing. */
export interface StepPlan {
  readonly label: string;
  readonly dispatches: readonly PlannedDispatch[];
  /** Distinct parameter blocks in the arena (identical ones, e.g. the same norm in every layer, are shared). */
  readonly paramBlocks: number;
  /** Everything the plan created: the uniform arena (its bind groups need no destroy). */
  readonly buffers: readonly GPUBuffer[];
}

/** Placeholder for a parameter block until the arena exists. */
class ArenaRef { constructor(readonly index: number) {} }

/**
 * Records the dispatches `fn` makes into a plan. Parameter blocks go into one uniform arena, deduplicated by
 * content, written once here; bind groups are created here. The recorder passes `step` to kernels that read it.
 */
export function recordPlan(ctx: GpuContext, step: GPUBuffer, label: string, fn: (rec: Recorder) => void): StepPlan {
  const blocks: Uint8Array[] = [];
  const byContent = new Map<string, number>();
  const pending: { kernel: Kernel; bindings: Record<number, Binding | ArenaRef>; groups: [number, number, number]; label: string }[] = [];
  const rec: Recorder = {
    ctx,
    step,
    params(words) {
      const bytes = new Uint8Array(Math.max(16, Math.ceil(words.byteLength / 16) * 16));
      bytes.set(new Uint8Array(words.buffer, words.byteOffset, words.byteLength));
      const key = Array.from(new Uint32Array(bytes.buffer)).join(',');
      let i = byContent.get(key);
      if (i === undefined) {
        i = blocks.length;
        blocks.push(bytes);
        byContent.set(key, i);
      }
      return new ArenaRef(i) as unknown as Binding;
    },
    dispatch(kernel, bindings, groups, dlabel) {
      const g = workgroups(ctx, groups);
      if (g[0] * g[1] * g[2] === 0) return;
      pending.push({ kernel, bindings, groups: g, label: dlabel });
    },
  };
  fn(rec);

  const align = ctx.limits.minUniformBufferOffsetAlignment;
  const offsets: number[] = [];
  let size = 0;
  for (const b of blocks) {
    offsets.push(size);
    size += Math.ceil(b.byteLength / align) * align;
  }
  const buffers: GPUBuffer[] = [];
  let arena: GPUBuffer | undefined;
  if (blocks.length > 0) {
    arena = ctx.device.createBuffer({ label: `${label}: parameters`, size, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
    const mapped = new Uint8Array(arena.getMappedRange());
    blocks.forEach((b, i) => mapped.set(b, offsets[i]));
    arena.unmap();
    buffers.push(arena);
  }
  const dispatches = pending.map((d): PlannedDispatch => {
    const pipeline = pipelineOf(ctx, d.kernel);
    const resolved: Record<number, Binding> = {};
    for (const [k, b] of Object.entries(d.bindings)) {
      resolved[Number(k)] = b instanceof ArenaRef ? { buffer: arena!, offset: offsets[b.index], size: blocks[b.index].byteLength } : b;
    }
    const bindGroup = ctx.device.createBindGroup({
      label: d.label, layout: pipeline.getBindGroupLayout(0), entries: entries(resolved),
    });
    return { pipeline, bindGroup, x: d.groups[0], y: d.groups[1], z: d.groups[2], label: d.label };
  });
  return { label, dispatches, paramBlocks: blocks.length, buffers };
}

/** Replays a plan into an open compute pass (WebGPU orders the dispatches of a pass and their memory effects). */
export function replayPlan(pass: GPUComputePassEncoder, plan: StepPlan): void {
  // Indexed: this loop runs for every dispatch of every token, and the array iterator's result objects showed up
  // in heap profiles of decode. Every dispatch has its own bind group (no two consecutive ones share bindings at
  // 64 layers), so only a repeated pipeline is skipped.
  const ds = plan.dispatches;
  let pipeline: GPUComputePipeline | undefined;
  for (let i = 0; i < ds.length; i++) {
    const d = ds[i];
    if (d.pipeline !== pipeline) {
      pass.setPipeline(d.pipeline);
      pipeline = d.pipeline;
    }
    pass.setBindGroup(0, d.bindGroup);
    pass.dispatchWorkgroups(d.x, d.y, d.z);
  }
}

export function destroyPlan(plan: StepPlan): void {
  for (const b of plan.buffers) b.destroy();
}

// ---------------------------------------------------------------------------------------------------------------
// ahead-of-time compilation

/** The distinct kernels the recordings `fns` dispatch, without creating any GPU object. */
export function collectKernels(ctx: GpuContext, step: GPUBuffer, fns: ((rec: Recorder) => void)[]): Kernel[] {
  const seen = new Map<string, Kernel>();
  const dummy = { buffer: step, offset: 0, size: STEP_BYTES };
  const rec: Recorder = {
    ctx,
    step,
    params: () => dummy,
    dispatch(kernel) {
      const key = pipelineKey(kernel.code, kernel.constants, kernel.entry);
      if (!seen.has(key)) seen.set(key, kernel);
    },
  };
  for (const fn of fns) fn(rec);
  return [...seen.values()];
}

/**
 * Compiles `kernels` with createComputePipelineAsync, at most a few at a time, into the context's pipeline cache,
 * so recording and the first forward never wait for a compiler. Reports kernels done / total.
 */
export async function compileKernels(
  ctx: GpuContext, kernels: Kernel[], onProgress?: (done: number, total: number) => void,
): Promise<void> {
  let done = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < kernels.length) {
      const k = kernels[next++];
      await ctx.pipelineAsync(k.code, k.constants, k.entry);
      onProgress?.(++done, kernels.length);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, kernels.length) }, worker));
}
