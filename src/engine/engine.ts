// The platform-neutral engine: a GPU device and a byte source in, logits and greedy tokens out.
// One command encoder per forward call (a decode step or one prefill chunk); logits are the only readback.
import type { GpuContext } from '../gpu/context.ts';
import { readF32 } from '../gpu/context.ts';
import type { ModelConfig } from '../format/config.ts';
import type { ByteSource } from '../format/safetensors.ts';
import { openCheckpoint, type Checkpoint } from '../format/checkpoint.ts';
import { createScratch, destroyScratch, encodeForward, type ModelWeights, type Scratch } from '../model/qwen35.ts';
import {
  createSequenceState, destroySequenceState, resetSequenceState, restoreSnapshot, stateBytes, takeSnapshot,
  type SequenceState, type StateSnapshot,
} from '../model/state.ts';
import { destroyModelWeights, loadModelWeights, weightBytes } from './load.ts';

export interface EngineOptions {
  /** KV-cache capacity in tokens, at most max_position_embeddings (default min(4096, max_position_embeddings)). */
  contextLength?: number;
  /** Largest number of tokens in one prefill dispatch chain; longer prompts go in several chunks. */
  prefillChunk?: number;
  /** Called while weights upload: bytes done / total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface ForwardOptions {
  /**
   * Checked before each prefill chunk: once aborted, no further chunk starts and forward rejects with an
   * AbortError. The chunks already run stay in the sequence (`position` says how far it got).
   */
  signal?: AbortSignal;
  /** Called as prefill chunks finish on the GPU: tokens done of the total. */
  onProgress?: (done: number, total: number) => void;
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
    ids: number[], finish: (enc: GPUCommandEncoder, logits: GPUBuffer) => void, read: () => Promise<R>, opts?: ForwardOptions,
  ): Promise<R>;
  readonly gpu: GpuContext;
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
  const T = prefillChunk;
  const perToken = 4 * (3 * cfg.hiddenSize + 8 * cfg.numHeads * cfg.headDim + 3 * cfg.intermediateSize +
    2 * (2 * cfg.linearNumKeyHeads * cfg.linearKeyHeadDim + cfg.linearNumValueHeads * cfg.linearValueHeadDim) +
    3 * cfg.linearNumValueHeads * cfg.linearValueHeadDim);
  const activations = T * perToken + 4 * cfg.vocabSize;
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
  const weights: ModelWeights = await loadModelWeights(ctx, ckpt, opts.onProgress);
  let state: SequenceState;
  let scratch: Scratch;
  try {
    state = createSequenceState(ctx, cfg, contextLength);
    scratch = createScratch(ctx, cfg, prefillChunk);
  } catch (e) {
    destroyModelWeights(weights);
    throw e;
  }

  /**
   * Runs the forward over `ids` (in prefill chunks), then `finish(enc, logits)` in the last chunk's encoder, then
   * `read()`. Error scopes turn a validation or out-of-memory failure into an exception instead of garbage output.
   */
  async function forward<R>(
    ids: number[], finish: (enc: GPUCommandEncoder, logits: GPUBuffer) => void, read: () => Promise<R>,
    fopts: ForwardOptions = {},
  ): Promise<R> {
    if (ids.length === 0) throw new Error('prefill needs at least one token id');
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= cfg.vocabSize) {
        throw new Error(`token id ${id} is outside the vocabulary [0, ${cfg.vocabSize})`);
      }
    }
    if (state.position + ids.length > contextLength) {
      throw new Error(
        `context overflow: ${state.position} tokens in the sequence + ${ids.length} new > context length ${contextLength}`,
      );
    }
    const { signal, onProgress } = fopts;
    // Chunks are queued back to back unless someone watches them: then each is waited for, so an abort can land
    // between two of them (nothing else runs while the loop only queues work).
    const paced = signal !== undefined || onProgress !== undefined;
    ctx.device.pushErrorScope('out-of-memory');
    ctx.device.pushErrorScope('validation');
    let result: R | undefined;
    let thrown: unknown;
    try {
      for (let start = 0; start < ids.length; start += prefillChunk) {
        if (signal?.aborted) throw new AbortError(`forward aborted after ${start} of ${ids.length} tokens`);
        const chunk = ids.slice(start, start + prefillChunk);
        ctx.device.queue.writeBuffer(scratch.ids, 0, new Uint32Array(chunk));
        const enc = ctx.device.createCommandEncoder({ label: `forward ${state.position}+${chunk.length}` });
        encodeForward(ctx, enc, cfg, weights, state, scratch, chunk.length);
        if (start + prefillChunk >= ids.length) finish(enc, scratch.logits);
        ctx.device.queue.submit([enc.finish()]);
        state.position += chunk.length;
        if (paced && start + prefillChunk < ids.length) {
          await ctx.device.queue.onSubmittedWorkDone();
          onProgress?.(start + chunk.length, ids.length);
        }
      }
      result = await read();
      onProgress?.(ids.length, ids.length);
    } catch (e) {
      thrown = e;
    }
    const validation = await ctx.device.popErrorScope();
    const oom = await ctx.device.popErrorScope();
    if (thrown) throw thrown;
    const err = validation ?? oom;
    if (err) throw new Error(`GPU error during the forward pass: ${err.message}`);
    return result!;
  }

  /** The logits after `ids`, refused when any is NaN or ±inf (they would print as invalid JSON or argmax to 0). */
  async function run(kind: 'prefill' | 'decode', ids: number[], fopts?: ForwardOptions): Promise<Float32Array> {
    const start = state.position;
    const logits = await forward(ids, () => {}, () => readF32(ctx, scratch.logits, cfg.vocabSize), fopts);
    const bad = firstNonFiniteValue(logits);
    if (bad >= 0) throw nonFiniteLogitsError(describeStep(kind, start, ids.length), bad, logits[bad]);
    return logits;
  }

  const engine: Engine = {
    config: cfg,
    checkpoint: ckpt,
    get position() { return state.position; },
    contextLength,
    prefill: (ids, fopts) => run('prefill', ids, fopts),
    decode: (id) => run('decode', [id]),
    forward,
    gpu: ctx,
    reset() { resetSequenceState(ctx, state); },
    snapshot: (into) => takeSnapshot(ctx, state, into),
    restore(snap) {
      if (snap.buffers.length !== state.layers.filter((l) => l.kind === 'linear').length * 2) {
        throw new Error('snapshot belongs to another model');
      }
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
      destroyScratch(scratch);
      destroySequenceState(state);
      destroyModelWeights(weights);
    },
  };
  return engine;
}
