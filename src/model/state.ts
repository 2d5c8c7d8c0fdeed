// Per-sequence state on the GPU (spec §3.5 "Decode state"): conv ring and fp32 recurrent state for every
// linear-attention layer, K/V caches for every full-attention layer. Nothing else carries across tokens.
import type { GpuContext } from '../gpu/context.ts';
import { dims, type ModelConfig } from '../format/config.ts';

export interface LinearLayerState { kind: 'linear'; conv: GPUBuffer; recurrent: GPUBuffer }
export interface FullLayerState { kind: 'full'; k: GPUBuffer; v: GPUBuffer }
export type LayerState = LinearLayerState | FullLayerState;

export interface SequenceState {
  layers: LayerState[];
  /** Tokens already in the sequence (the next token's position). */
  position: number;
  /** Capacity of the KV caches in tokens. */
  maxContext: number;
  bytes: number;
}

/**
 * Bytes of each GPU buffer of the state, one of each per layer of its kind: the conv ring and the recurrent state
 * of a linear-attention layer, and the K cache and the V cache (`kv`, each one buffer) of a full-attention layer.
 * They are single buffers (a kernel binds each whole), so each must fit the device's buffer limits; the pre-flight
 * check (src/engine/preflight.ts) reads them from here.
 */
export function stateBufferBytes(cfg: ModelConfig, maxContext: number): { conv: number; recurrent: number; kv: number } {
  const { convDim } = dims(cfg);
  return {
    conv: (cfg.convKernel - 1) * convDim * 4,
    recurrent: cfg.linearNumValueHeads * cfg.linearKeyHeadDim * cfg.linearValueHeadDim * 4,
    kv: cfg.numKvHeads * maxContext * cfg.headDim * 4,
  };
}

/** Bytes of state one sequence needs at `maxContext` tokens (for the memory estimate before loading). */
export function stateBytes(cfg: ModelConfig, maxContext: number): { recurrent: number; conv: number; kv: number } {
  const nLinear = cfg.layerTypes.filter((t) => t === 'linear_attention').length;
  const nFull = cfg.numLayers - nLinear;
  const b = stateBufferBytes(cfg, maxContext);
  return { recurrent: nLinear * b.recurrent, conv: nLinear * b.conv, kv: nFull * 2 * b.kv };
}

export function createSequenceState(ctx: GpuContext, cfg: ModelConfig, maxContext: number): SequenceState {
  const sizes = stateBytes(cfg, maxContext);
  const buffers = stateBufferBytes(cfg, maxContext);
  const kvBytes = buffers.kv;
  if (kvBytes > ctx.limits.maxStorageBufferBindingSize) {
    throw new Error(
      `context length ${maxContext} needs a ${kvBytes} B KV cache per layer, above this device's ` +
        `maxStorageBufferBindingSize (${ctx.limits.maxStorageBufferBindingSize} B); ask for a shorter context`,
    );
  }
  const layers: LayerState[] = cfg.layerTypes.map((t, i) =>
    t === 'linear_attention'
      ? {
          kind: 'linear',
          conv: ctx.storage(buffers.conv, `L${i}.conv_state`),
          recurrent: ctx.storage(buffers.recurrent, `L${i}.gdn_state`),
        }
      : { kind: 'full', k: ctx.storage(kvBytes, `L${i}.k_cache`), v: ctx.storage(kvBytes, `L${i}.v_cache`) },
  );
  const state: SequenceState = { layers, position: 0, maxContext, bytes: sizes.recurrent + sizes.conv + sizes.kv };
  resetSequenceState(ctx, state);
  return state;
}

/** A new sequence starts from zeros (KV caches need no clearing: attention reads only positions < position). */
export function resetSequenceState(ctx: GpuContext, state: SequenceState): void {
  const enc = ctx.device.createCommandEncoder();
  for (const l of state.layers) {
    if (l.kind === 'linear') {
      enc.clearBuffer(l.conv);
      enc.clearBuffer(l.recurrent);
    }
  }
  ctx.device.queue.submit([enc.finish()]);
  state.position = 0;
}

export function destroySequenceState(state: SequenceState): void {
  for (const l of state.layers) {
    if (l.kind === 'linear') { l.conv.destroy(); l.recurrent.destroy(); } else { l.k.destroy(); l.v.destroy(); }
  }
}

/**
 * The GDN recurrence cannot be rolled back, so a point of the sequence worth returning to (the end of a chat turn's
 * prompt) is kept as a copy of every conv and recurrent state plus the position. KV caches need no copy: entries
 * below the position are never overwritten by later tokens, only those at or above it.
 */
export interface StateSnapshot { position: number; buffers: GPUBuffer[]; bytes: number }

function linearBuffers(state: SequenceState): GPUBuffer[] {
  return state.layers.flatMap((l) => (l.kind === 'linear' ? [l.conv, l.recurrent] : []));
}

export function takeSnapshot(ctx: GpuContext, state: SequenceState, into?: StateSnapshot): StateSnapshot {
  const src = linearBuffers(state);
  const snap = into ?? {
    position: 0,
    buffers: src.map((b) => ctx.storage(b.size, `snapshot:${b.label}`)),
    bytes: src.reduce((n, b) => n + b.size, 0),
  };
  const enc = ctx.device.createCommandEncoder({ label: 'take snapshot' });
  src.forEach((b, i) => enc.copyBufferToBuffer(b, 0, snap.buffers[i], 0, b.size));
  ctx.device.queue.submit([enc.finish()]);
  snap.position = state.position;
  return snap;
}

export function restoreSnapshot(ctx: GpuContext, state: SequenceState, snap: StateSnapshot): void {
  const dst = linearBuffers(state);
  const enc = ctx.device.createCommandEncoder({ label: 'restore snapshot' });
  dst.forEach((b, i) => enc.copyBufferToBuffer(snap.buffers[i], 0, b, 0, b.size));
  ctx.device.queue.submit([enc.finish()]);
  state.position = snap.position;
}

export function destroySnapshot(snap: StateSnapshot): void {
  for (const b of snap.buffers) b.destroy();
}
