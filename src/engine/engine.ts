// The platform-neutral engine: a GPU device and a byte source in, logits and sampled tokens out.
// Each forward call (a decode step or one prefill chunk) is one command buffer with one compute pass, replayed
// from a StepPlan recorded once per token count (src/gpu/plan.ts): after load, a decode token creates no GPU
// object. Every pipeline is compiled at load. The only readbacks are logits or the sampled id, through staging
// buffers made once.
import type { GpuContext } from '../gpu/context.ts';
import {
  collectKernels, compileKernels, createStepBuffer, destroyPlan, directRecorder, recordPlan, replayPlan, writeStep,
  type Recorder, type StepPlan,
} from '../gpu/plan.ts';
import {
  copySampled, createSampler, destroySampler, encodeSample, readStaged, recordTokens, writeSampleParams,
  type Sampled, type Sampler, type SamplingParams,
} from '../gpu/sample.ts';
import type { ModelConfig } from '../format/config.ts';
import type { ByteSource } from '../format/safetensors.ts';
import { openCheckpoint, type Checkpoint } from '../format/checkpoint.ts';
import { createScratch, destroyScratch, recordForward, type ModelWeights, type Scratch } from '../model/qwen35.ts';
import {
  createSequenceState, destroySequenceState, resetSequenceState, restoreSnapshot, stateBytes, takeSnapshot,
  type SequenceState, type StateSnapshot,
} from '../model/state.ts';
import { destroyModelWeights, loadModelWeights, weightBytes } from './load.ts';
import { activationBytes } from './preflight.ts';
import { checkLinearTuning, DEFAULT_LINEAR_TUNING, withLinearTuning, type LinearTuning } from '../gpu/linear.ts';
import { autotuneLinear, type TuningReport, type TuningStore } from '../gpu/autotune.ts';

export interface EngineOptions {
  /** KV-cache capacity in tokens, at most max_position_embeddings (default min(4096, max_position_embeddings)). */
  contextLength?: number;
  /** Largest number of tokens in one prefill dispatch chain; longer prompts go in several chunks. */
  prefillChunk?: number;
  /** Called while weights upload: bytes done / total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Called while the kernels compile (after the upload): pipelines done / total. */
  onCompileProgress?: (done: number, total: number) => void;
  /**
   * 'plan' (default): forwards replay prebuilt step plans. 'direct': every call encodes afresh, one compute pass
   * per dispatch with new uniforms and bind groups (the reference the plans are tested against; slow).
   */
  encoding?: 'plan' | 'direct';
  /**
   * Fuse linears that share their input at load (q/k/v, in_proj_qkv/z/b/a, gate/up with SwiGLU): default true.
   * False keeps one dispatch per linear (the unfused path, for comparisons).
   */
  fuseLinears?: boolean;
  /**
   * The linear kernels' shape (src/gpu/autotune.ts): 'auto' (default) measures this adapter once and keeps the
   * result in `tuningStore`; 'default' uses the defaults for 32-wide SIMD GPUs without measuring; an object fixes
   * the fields it names over the defaults.
   */
  tuning?: 'auto' | 'default' | Partial<LinearTuning>;
  /** Where 'auto' keeps its results (default: the platform's store, see setDefaultTuningStore). */
  tuningStore?: TuningStore;
  /** Called with (0, 1) when 'auto' starts measuring (nothing stored for this adapter yet) and (1, 1) when done. */
  onTuneProgress?: (done: number, total: number) => void;
}

export interface ForwardOptions {
  /**
   * Checked before each prefill chunk: once aborted, no further chunk starts and forward rejects with an
   * AbortError. The chunks already run stay in the sequence (`position` says how far it got).
   */
  signal?: AbortSignal;
  /** Called as prefill chunks finish on the GPU: tokens done of the total. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Tests and debugging: commands encoded between the last chunk's forward and the sampling (it splits their
   * compute pass in two), e.g. to plant a value in the logits.
   */
  tapLogits?: (enc: GPUCommandEncoder, logits: GPUBuffer) => void;
}

/** What forward rejects with when its signal was aborted. */
export class AbortError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AbortError';
  }
}

export const isAbortError = (e: unknown): e is AbortError => e instanceof AbortError;

/** "prefill of positions 0..16", "decode at position 17": which forward step produced some logits. */
export function describeStep(kind: 'prefill' | 'decode', start: number, count: number): string {
  return count === 1 ? `${kind} at position ${start}` : `${kind} of positions ${start}..${start + count - 1}`;
}

/** The error for logits holding a NaN or ±inf: nothing sampled or printed from them would mean anything. */
export function nonFiniteLogitsError(step: string, index: number, value: number): Error {
  return new Error(
    `non-finite logits after ${step} (${value} at vocab index ${index}): a weight or an activation overflowed f32 ` +
    'or the checkpoint is corrupt',
  );
}

/** Index of the first NaN or ±inf, or -1. */
export function firstNonFiniteValue(v: Float32Array): number {
  for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i])) return i;
  return -1;
}

export interface Engine {
  readonly config: ModelConfig;
  readonly checkpoint: Checkpoint;
  /** Tokens in the current sequence. */
  readonly position: number;
  readonly contextLength: number;
  /** Appends `ids` to the sequence; returns the logits at the last of them (throws if any is NaN or ±inf). */
  prefill(ids: number[], opts?: ForwardOptions): Promise<Float32Array>;
  /** Appends one token; returns the logits after it (throws if any is NaN or ±inf). */
  decode(id: number): Promise<Float32Array>;
  /**
   * Appends `ids` and, in the same command buffer, lets `finish` encode work on the last position's logits
   * (GPU sampling); resolves with `read()` (e.g. the 4-byte sampled id). Nothing else is read back.
   */
  forward<R>(
    ids: number[], finish: (rec: Recorder, logits: GPUBuffer) => void, read: () => Promise<R>, opts?: ForwardOptions,
  ): Promise<R>;
  /**
   * Feeds `ids`, or with 'sampled' the token `sampler` drew in the previous call (it never leaves the GPU), then
   * samples the next token on the GPU. A single-chunk call has queued all its work when it returns, so the caller
   * may queue the next 'sampled' step before awaiting this one: the GPU then runs token t while the CPU prepares
   * t+1. Resolves with the id (and the fault word) once read back.
   */
  sample(ids: number[] | 'sampled', sampler: Sampler, params: SamplingParams, u: number, opts?: ForwardOptions): Promise<Sampled>;
  readonly gpu: GpuContext;
  /** The linear kernels' tuning this engine records with, and whether it was measured or stored. */
  readonly tuning: TuningReport;
  /** Plans recorded so far, and the dispatches of the decode plan (the bench reports them). */
  readonly plans: { recorded: number; decodeDispatches: number };
  /** Starts a new sequence. */
  reset(): void;
  /** Remembers the current point of the sequence (GDN/conv state + position); reuses `into`'s buffers if given. */
  snapshot(into?: StateSnapshot): StateSnapshot;
  /** Goes back to a remembered point: the next token lands at snap.position. */
  restore(snap: StateSnapshot): void;
  /** Greedy generation after prefilling `ids`; stops at maxTokens or an eos id. */
  generate(ids: number[], maxTokens: number, opts?: { eos?: number[]; onToken?: (id: number) => void }): Promise<number[]>;
  dispose(): void;
}

export interface MemoryEstimate { weights: number; recurrent: number; conv: number; kv: number; activations: number; total: number }

export function estimateMemory(ckpt: Checkpoint, contextLength: number, prefillChunk: number): MemoryEstimate {
  const cfg = ckpt.config;
  const weights = weightBytes(ckpt);
  const st = stateBytes(cfg, contextLength);
  // The formula the pre-flight check uses too, so the two agree.
  const activations = activationBytes(cfg, prefillChunk);
  return { weights, ...st, activations, total: weights + st.recurrent + st.conv + st.kv + activations };
}

/** Index of the largest value, the lowest on ties. A NaN has no place in the order: it is an error, not index 0. */
export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 0; i < v.length; i++) {
    if (Number.isNaN(v[i])) throw new Error(`argmax: NaN at index ${i} of ${v.length}`);
    if (v[i] > v[best]) best = i;
  }
  return best;
}

const show = (x: unknown) => (typeof x === 'number' ? String(x) : JSON.stringify(x) ?? String(x));

function checkPositiveInt(name: string, x: unknown): void {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 1) throw new Error(`${name} ${show(x)} must be a positive integer (tokens)`);
}

/** What one forward call adds around the replayed forward (loadEngine's queueForward). */
interface QueueOptions {
  /** Its draw goes into the same pass, after the forward. */
  sampler?: Sampler;
  /** One-off work on the logits, after the pass (engine.forward's `finish`). */
  finish?: (rec: Recorder, logits: GPUBuffer) => void;
  /** Commands after everything else (copies to staging). */
  after?: (enc: GPUCommandEncoder) => void;
  tap?: ForwardOptions['tapLogits'];
}

async function chooseTuning(ctx: GpuContext, opts: EngineOptions): Promise<TuningReport> {
  const t = opts.tuning ?? 'auto';
  if (t === 'auto') {
    let measuring = false;
    const r = await autotuneLinear(ctx, opts.tuningStore, () => {
      measuring = true;
      opts.onTuneProgress?.(0, 1);
    });
    if (measuring) opts.onTuneProgress?.(1, 1);
    return r;
  }
  if (t === 'default') return { tuning: { ...DEFAULT_LINEAR_TUNING }, cached: false, key: 'default' };
  if (typeof t !== 'object' || t === null) throw new Error(`tuning must be 'auto', 'default' or an object, got ${String(t)}`);
  return { tuning: checkLinearTuning({ ...DEFAULT_LINEAR_TUNING, ...t }), cached: false, key: 'given' };
}

export async function loadEngine(ctx: GpuContext, source: ByteSource, opts: EngineOptions = {}): Promise<Engine> {
  if (opts.contextLength !== undefined) checkPositiveInt('contextLength', opts.contextLength);
  if (opts.prefillChunk !== undefined) checkPositiveInt('prefillChunk', opts.prefillChunk);
  const ckpt = await openCheckpoint(source);
  const cfg = ckpt.config;
  const contextLength = opts.contextLength ?? Math.min(4096, cfg.maxPositionEmbeddings);
  // No kernel would fail past max_position_embeddings, but those positions are RoPE extrapolation the model was
  // never trained on: output there cannot be trusted, so the option is refused rather than warned about.
  if (contextLength > cfg.maxPositionEmbeddings) {
    throw new Error(
      `contextLength ${contextLength} is beyond the model's max_position_embeddings ${cfg.maxPositionEmbeddings} ` +
      `(${source.describe()}/config.json); use at most ${cfg.maxPositionEmbeddings}`,
    );
  }
  const prefillChunk = Math.min(opts.prefillChunk ?? 256, contextLength);
  const tuning = await chooseTuning(ctx, opts);
  const weights: ModelWeights = await loadModelWeights(ctx, ckpt, { onProgress: opts.onProgress, fuse: opts.fuseLinears });
  let state: SequenceState;
  let scratch: Scratch;
  try {
    state = createSequenceState(ctx, cfg, contextLength);
    scratch = createScratch(ctx, cfg, prefillChunk);
  } catch (e) {
    destroyModelWeights(weights);
    throw e;
  }
  const step = createStepBuffer(ctx);
  const logitsStaging = ctx.device.createBuffer({
    label: 'logits-staging', size: cfg.vocabSize * 4, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
  });
  const direct = opts.encoding === 'direct';
  const forwardOf = (T: number) => (rec: Recorder) =>
    withLinearTuning(ctx, tuning.tuning, () => recordForward(rec, cfg, weights, state, scratch, T));

  // Compile every pipeline a forward or the sampler can use now, so no message waits for a compiler: the token
  // counts below cover each kernel variant (matvec / multi-token / GEMM by M, attention row blocks by T·group).
  const probe = createSampler(ctx, cfg.vocabSize, cfg.vocabSize);
  try {
    const counts = new Set<number>([prefillChunk]);
    for (let T = 1; T <= Math.min(prefillChunk, 64); T++) counts.add(T);
    const kernels = collectKernels(ctx, step, [
      ...[...counts].map(forwardOf),
      (rec) => encodeSample(rec, probe, scratch.logits),
      (rec) => recordTokens(rec, probe, scratch.ids, 1),
    ]);
    await compileKernels(ctx, kernels, opts.onCompileProgress);
  } finally {
    destroySampler(probe);
  }

  // Plans by token count. The decode plan (T = 1) is made now and kept; prefill plans are made on first use and
  // the least recently used ones dropped beyond PLAN_CACHE.
  const PLAN_CACHE = 8;
  const plans = new Map<number, StepPlan>();
  const stats = { recorded: 0, decodeDispatches: 0 };
  const planFor = (T: number): StepPlan => {
    let plan = plans.get(T);
    if (plan) {
      plans.delete(T);
    } else {
      plan = recordPlan(ctx, step, `forward T=${T}`, forwardOf(T));
      stats.recorded++;
      // A Map iterates in insertion order and every use re-inserts, so the first key other than 1 is the LRU one.
      const stale = plans.size >= PLAN_CACHE ? [...plans.keys()].find((t) => t !== 1) : undefined;
      if (stale !== undefined) {
        destroyPlan(plans.get(stale)!);
        plans.delete(stale);
      }
    }
    plans.set(T, plan);
    return plan;
  };
  const samplePlans = new WeakMap<Sampler, StepPlan>();
  const samplePlanFor = (sampler: Sampler): StepPlan => {
    let plan = samplePlans.get(sampler);
    if (!plan) {
      plan = recordPlan(ctx, step, 'sample', (rec) => encodeSample(rec, sampler, scratch.logits));
      samplePlans.set(sampler, plan);
    }
    return plan;
  };
  if (!direct) stats.decodeDispatches = planFor(1).dispatches.length;
  const idWords = new Uint32Array(prefillChunk);
  /** The sampler whose last draw sits in scratch.ids[0], ready for a 'sampled' step. */
  let drawnBy: Sampler | undefined;

  function checkIds(ids: number[]): void {
    if (ids.length === 0) throw new Error('prefill needs at least one token id');
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) {
        throw new Error(`token id ${id} is outside the vocabulary [0, ${cfg.vocabSize})`);
      }
    }
    checkRoom(ids.length);
  }

  function checkRoom(n: number): void {
    if (state.position + n > contextLength) {
      throw new Error(`context overflow: ${state.position} tokens in the sequence + ${n} new > context length ${contextLength}`);
    }
  }


  /**
   * Queues the forward of `T` tokens at the current position (ids already written, or staying on the GPU) and
   * advances the position.
   */
  function queueForward(T: number, label: string, q: QueueOptions = {}): void {
    const { sampler, finish, after, tap } = q;
    writeStep(ctx, step, { position: state.position });
    const enc = ctx.device.createCommandEncoder({ label });
    if (direct) {
      const rec = directRecorder(ctx, enc, step);
      forwardOf(T)(rec);
      tap?.(enc, scratch.logits);
      if (sampler) encodeSample(rec, sampler, scratch.logits);
    } else {
      let pass = enc.beginComputePass({ label });
      replayPlan(pass, planFor(T));
      if (tap) {
        pass.end();
        tap(enc, scratch.logits);
        pass = enc.beginComputePass({ label: `${label} sample` });
      }
      if (sampler) replayPlan(pass, samplePlanFor(sampler));
      pass.end();
    }
    finish?.(directRecorder(ctx, enc, step), scratch.logits);
    after?.(enc);
    ctx.device.queue.submit([enc.finish()]);
    state.position += T;
  }

  /** Error scopes around synchronous GPU calls: a validation or out-of-memory error becomes an exception. */
  function scoped(fn: () => void): Promise<void> {
    ctx.device.pushErrorScope('out-of-memory');
    ctx.device.pushErrorScope('validation');
    let thrown: unknown;
    try {
      fn();
    } catch (e) {
      thrown = e;
    }
    const validation = ctx.device.popErrorScope();
    const oom = ctx.device.popErrorScope();
    return Promise.all([validation, oom]).then(([v, o]) => {
      if (thrown) throw thrown;
      const err = v ?? o;
      if (err) throw new Error(`GPU error during the forward pass: ${err.message}`);
    });
  }

  /**
   * Runs ids through the model in prefill chunks; the last chunk gets `last`. Chunks are queued back to back
   * unless someone watches them: then each is waited for, so an abort can land between two of them.
   */
  async function chunks(ids: number[], fopts: ForwardOptions, last: (T: number, label: string) => void): Promise<void> {
    checkIds(ids);
    drawnBy = undefined;
    const { signal, onProgress } = fopts;
    const paced = signal !== undefined || onProgress !== undefined;
    for (let start = 0; start < ids.length; start += prefillChunk) {
      if (signal?.aborted) throw new AbortError(`forward aborted after ${start} of ${ids.length} tokens`);
      const n = Math.min(prefillChunk, ids.length - start);
      for (let i = 0; i < n; i++) idWords[i] = ids[start + i];
      const label = `forward ${state.position}+${n}`;
      const isLast = start + n >= ids.length;
      const queued = scoped(() => {
        // writeBuffer copies the words at the call, so one array serves every chunk.
        ctx.device.queue.writeBuffer(scratch.ids, 0, idWords, 0, n);
        if (isLast) last(n, label);
        else queueForward(n, label);
      });
      await queued;
      if (paced && !isLast) {
        await ctx.device.queue.onSubmittedWorkDone();
        onProgress?.(start + n, ids.length);
      }
    }
  }

  async function forward<R>(
    ids: number[], finish: (rec: Recorder, logits: GPUBuffer) => void, read: () => Promise<R>,
    fopts: ForwardOptions = {},
  ): Promise<R> {
    await chunks(ids, fopts, (T, label) => queueForward(T, label, { finish }));
    const r = await read();
    fopts.onProgress?.(ids.length, ids.length);
    return r;
  }

  let logitsBusy = false;
  /** The logits after `ids`, refused when any is NaN or ±inf (they would print as invalid JSON or argmax to 0). */
  async function run(kind: 'prefill' | 'decode', ids: number[], fopts: ForwardOptions = {}): Promise<Float32Array> {
    if (logitsBusy) throw new Error(`${kind}: the previous logits are still being read back; await it first`);
    const start = state.position;
    logitsBusy = true;
    try {
      await chunks(ids, fopts, (T, label) => queueForward(T, label, {
        after: (enc) => enc.copyBufferToBuffer(scratch.logits, 0, logitsStaging, 0, cfg.vocabSize * 4),
      }));
      await logitsStaging.mapAsync(GPUMapMode.READ);
      const logits = new Float32Array(logitsStaging.getMappedRange().slice(0));
      logitsStaging.unmap();
      fopts.onProgress?.(ids.length, ids.length);
      const bad = firstNonFiniteValue(logits);
      if (bad >= 0) throw nonFiniteLogitsError(describeStep(kind, start, ids.length), bad, logits[bad]);
      return logits;
    } finally {
      logitsBusy = false;
    }
  }

  function sample(
    ids: number[] | 'sampled', sampler: Sampler, params: SamplingParams, u: number, fopts: ForwardOptions = {},
  ): Promise<Sampled> {
    let slot = -1;
    const queueLast = (T: number, label: string) => {
      writeSampleParams(ctx, sampler, params, u);
      queueForward(T, label, {
        sampler,
        tap: fopts.tapLogits,
        after: (enc) => {
          slot = copySampled(enc, sampler);
          // The draw also becomes the next step's input, without a round trip through the CPU.
          enc.copyBufferToBuffer(sampler.ids, 0, scratch.ids, 0, 4);
        },
      });
      drawnBy = sampler;
    };
    if (ids === 'sampled') {
      // Synchronous up to the submit, so a caller can queue the next step before awaiting this one.
      if (drawnBy !== sampler) {
        return Promise.reject(new Error("sample('sampled'): the last forward did not end with a draw of this sampler"));
      }
      try {
        checkRoom(1);
      } catch (e) {
        return Promise.reject(e);
      }
      const queued = scoped(() => queueLast(1, `decode ${state.position}`));
      return queued.then(() => readStaged(sampler, slot), (e) => {
        if (slot >= 0) void readStaged(sampler, slot).catch(() => {});
        throw e;
      });
    }
    return chunks(ids, fopts, queueLast).then(async () => {
      const r = await readStaged(sampler, slot);
      fopts.onProgress?.(ids.length, ids.length);
      return r;
    });
  }

  const engine: Engine = {
    config: cfg,
    checkpoint: ckpt,
    get position() { return state.position; },
    contextLength,
    prefill: (ids, fopts) => run('prefill', ids, fopts),
    decode: (id) => run('decode', [id]),
    forward,
    sample,
    gpu: ctx,
    tuning,
    plans: stats,
    reset() {
      drawnBy = undefined;
      resetSequenceState(ctx, state);
    },
    snapshot: (into) => takeSnapshot(ctx, state, into),
    restore(snap) {
      if (snap.buffers.length !== state.layers.filter((l) => l.kind === 'linear').length * 2) {
        throw new Error('snapshot belongs to another model');
      }
      drawnBy = undefined;
      restoreSnapshot(ctx, state, snap);
    },
    async generate(ids, maxTokens, gopts = {}) {
      const eos = new Set(gopts.eos ?? cfg.eosTokenIds);
      const out: number[] = [];
      let logits = await run('prefill', ids);
      while (out.length < maxTokens) {
        const id = argmax(logits);
        out.push(id);
        gopts.onToken?.(id);
        if (eos.has(id) || out.length === maxTokens) break;
        logits = await run('decode', [id]);
      }
      return out;
    },
    dispose() {
      for (const plan of plans.values()) destroyPlan(plan);
      plans.clear();
      step.destroy();
      logitsStaging.destroy();
      destroyScratch(scratch);
      destroySequenceState(state);
      destroyModelWeights(weights);
    },
  };
  return engine;
}
