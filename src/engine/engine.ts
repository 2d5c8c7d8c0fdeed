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
  /** KV-cache capacity in tokens (default min(4096, max_position_embeddings)). */
  contextLength?: number;
  /** Largest number of tokens in one prefill dispatch chain; longer prompts go in several chunks. */
  prefillChunk?: number;
  /** Called while weights upload: bytes done / total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

export interface Engine {
  readonly config: ModelConfig;
  readonly checkpoint: Checkpoint;
  /** Tokens in the current sequence. */
  readonly position: number;
  readonly contextLength: number;
  /** Appends `ids` to the sequence; returns the logits at the last of them. */
  prefill(ids: number[]): Promise<Float32Array>;
  /** Appends one token; returns the logits after it. */
  decode(id: number): Promise<Float32Array>;
  /**
   * Appends `ids` and, in the same command buffer, lets `finish` encode work on the last position's logits
   * (GPU sampling); resolves with `read()` (e.g. the 4-byte sampled id). Nothing else is read back.
   */
  forward<R>(ids: number[], finish: (enc: GPUCommandEncoder, logits: GPUBuffer) => void, read: () => Promise<R>): Promise<R>;
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

export function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

export async function loadEngine(ctx: GpuContext, source: ByteSource, opts: EngineOptions = {}): Promise<Engine> {
  const ckpt = await openCheckpoint(source);
  const cfg = ckpt.config;
  const contextLength = opts.contextLength ?? Math.min(4096, cfg.maxPositionEmbeddings);
  const prefillChunk = Math.max(1, Math.min(opts.prefillChunk ?? 256, contextLength));
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
    ctx.device.pushErrorScope('out-of-memory');
    ctx.device.pushErrorScope('validation');
    let result: R | undefined;
    let thrown: unknown;
    try {
      for (let start = 0; start < ids.length; start += prefillChunk) {
        const chunk = ids.slice(start, start + prefillChunk);
        ctx.device.queue.writeBuffer(scratch.ids, 0, new Uint32Array(chunk));
        const enc = ctx.device.createCommandEncoder({ label: `forward ${state.position}+${chunk.length}` });
        encodeForward(ctx, enc, cfg, weights, state, scratch, chunk.length);
        if (start + prefillChunk >= ids.length) finish(enc, scratch.logits);
        ctx.device.queue.submit([enc.finish()]);
        state.position += chunk.length;
      }
      result = await read();
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

  const run = (ids: number[]) => forward(ids, () => {}, () => readF32(ctx, scratch.logits, cfg.vocabSize));

  const engine: Engine = {
    config: cfg,
    checkpoint: ckpt,
    get position() { return state.position; },
    contextLength,
    prefill: (ids) => run(ids),
    decode: (id) => run([id]),
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
      let logits = await run(ids);
      while (out.length < maxTokens) {
        const id = argmax(logits);
        out.push(id);
        gopts.onToken?.(id);
        if (eos.has(id) || out.length === maxTokens) break;
        logits = await run([id]);
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
