// Tiled causal attention for prefill (spec §3.4 steps 6-7): a drop-in alternative to `attention` of
// src/gpu/ops.ts for many query tokens, with the same arguments (less the key splits), semantics and output gate.
// One dispatch of ceil(T·group / 32) · Hkv workgroups, each 32 query rows of one kv head against 32-key tiles
// (shaders/attention_prefill.wgsl). The grid depends on T, never on the position, so one recording serves
// every p0. CPU reference: attention64 (+ sigmoidGateMul64 / splitQGate64 for the gate) in
// src/model/reference-ops.ts.
import { params } from './ops.ts';
import { STEP_BINDING, type Recorder } from './plan.ts';
import { shaderText } from './shaders.ts';

const ROWS = 32; // BQ in attention_prefill.wgsl
const KEYS = 32; // BK
const LANES = 16; // LPR: invocations per pair of query rows
const MAX_D = 256; // MAXE · LPR
const CHUNK = 64; // largest DC
const V_WORDS = 2048; // region B's share for a V sub-tile: KC · D ≤ this

/** The override constants for head dim D and the workgroup memory they take (bytes), as the WGSL sizes it. */
export function attentionPrefillShape(D: number): { constants: Record<string, number>; sharedBytes: number } {
  const DC = Math.min(CHUNK, D);
  // Largest power of two ≤ min(KEYS, V_WORDS / D): a whole number of sub-tiles per key tile.
  const KC = 2 ** Math.floor(Math.log2(Math.min(KEYS, Math.floor(V_WORDS / D))));
  const E = Math.ceil(D / LANES);
  const SA = Math.max(DC * ROWS, ROWS * (KEYS + 1));
  const SB = Math.max(DC * KEYS, KC * D);
  return { constants: { D, DC, KC, E }, sharedBytes: 4 * (SA + SB) };
}

/**
 * Causal GQA attention. q [T, H, D] (normed, roped); caches [Hkv, maxCtx, D] holding positions 0..p0+T−1 (p0
 * from the step uniform); out [T, H, D]: query t sees keys 0..p0+t, scale 1/sqrt(D). With `gate` (q_proj's
 * output [T, H, 2D]: per head D values of q, then D of gate) out = attention ⊙ σ(gate).
 */
export function attentionPrefill(
  rec: Recorder, q: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer, out: GPUBuffer,
  T: number, H: number, Hkv: number, D: number, maxCtx: number, opts: { gate?: GPUBuffer } = {},
): void {
  if (T === 0) return;
  if (H % Hkv !== 0) throw new Error(`attentionPrefill: H ${H} is not a multiple of Hkv ${Hkv}`);
  if (D < 1 || D > MAX_D) throw new Error(`attentionPrefill: head dim ${D} is not in 1..${MAX_D}`);
  if (T > maxCtx) throw new Error(`attentionPrefill: ${T} tokens exceed the cache (${maxCtx})`);
  const { constants, sharedBytes } = attentionPrefillShape(D);
  const limit = rec.ctx.limits.maxComputeWorkgroupStorageSize;
  if (sharedBytes > limit) {
    throw new Error(`attentionPrefill: head dim ${D} needs ${sharedBytes} bytes of workgroup storage, the device allows ${limit}`);
  }
  const group = H / Hkv;
  const rowBlocks = Math.ceil((T * group) / ROWS);
  const p = params(rec, [T, H, Hkv, group, maxCtx, rowBlocks, { f32: 1 / Math.sqrt(D) }, 0]);
  // Without a gate the binding is still in the layout (its use sits under a constant-false branch): bind q,
  // read-only in both places, as ops.ts does.
  const gate = opts.gate ?? q;
  rec.dispatch(
    { code: shaderText('gates', 'step', 'attention_prefill'), entry: 'attention_prefill', constants: { ...constants, GATE: opts.gate ? 1 : 0 } },
    { 0: p, 1: q, 2: kCache, 3: vCache, 4: out, 10: gate, [STEP_BINDING]: rec.step },
    rowBlocks * Hkv, 'attentionPrefill',
  );
}
