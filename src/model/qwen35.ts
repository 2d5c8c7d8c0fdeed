// The Qwen3.5 / 3.6 dense forward pass on our WGSL kernels. Reads like spec §3: one function per block, each
// line one kernel. No kernel gets the same buffer twice (WebGPU forbids aliasing a writable binding).
// The forward is described to a Recorder (src/gpu/plan.ts): the engine records it once per token count into a
// StepPlan and replays that for every call, so nothing here may depend on the position (kernels read it from the
// recorder's step uniform).
import { dims, type ModelConfig } from '../format/config.ts';
import type { GpuContext } from '../gpu/context.ts';
import { canFoldNorm, embedGather, linear, linearSplit, linearSwiglu, type GpuLinear, type LinearNorm } from '../gpu/linear.ts';
import type { Recorder } from '../gpu/plan.ts';
import { attentionPrefill } from '../gpu/attention-prefill.ts';
import { canRunChunked, gatedDeltaChunked } from '../gpu/gated-delta-chunk.ts';
import {
  attention, conv1dCausal, gatedDelta, normRope, rmsNorm, rmsNormGated, swiglu,
} from '../gpu/ops.ts';
import type { FullLayerState, LinearLayerState, SequenceState } from './state.ts';

/**
 * Linears that read the same input: one GpuLinear fused at load (src/engine/load.ts, one dispatch), or the
 * members in order when their formats differ (per-layer quantization overrides) or fusion is off.
 */
export type Projections = GpuLinear | GpuLinear[];

/** gateUp: [gate_proj; up_proj] fused with SwiGLU, or [gate, up]. */
/**
 * From this many tokens per call the chunked gated delta rule (spec §4, C = 64) replaces the token loop; below it
 * the recurrent kernel (decode, short prompts). SwiftShader: break-even between 16 and 64 tokens, 1.47x at 512.
 */
export const GDN_CHUNKED_MIN_T = 64;
/** From this many query tokens the tiled prefill attention (online softmax over key tiles) replaces `attention`. */
export const ATTN_PREFILL_MIN_T = 32;

export interface Mlp { gateUp: Projections; down: GpuLinear }

/** Gated DeltaNet layer (spec §3.5). Norm gains, conv weights [C, Kc], A_log and dt_bias are f32 buffers. */
export interface LinearAttnWeights {
  kind: 'linear';
  inputNorm: GPUBuffer; postNorm: GPUBuffer;
  /** in_proj_qkv, in_proj_z, in_proj_b, in_proj_a */
  inProj: Projections;
  conv: GPUBuffer; aLog: GPUBuffer; dtBias: GPUBuffer; norm: GPUBuffer; outProj: GpuLinear;
  mlp: Mlp;
}

/** Gated full attention layer (spec §3.4). */
export interface FullAttnWeights {
  kind: 'full';
  inputNorm: GPUBuffer; postNorm: GPUBuffer;
  /** q_proj (with its gate), k_proj, v_proj */
  qkv: Projections;
  o: GpuLinear; qNorm: GPUBuffer; kNorm: GPUBuffer;
  mlp: Mlp;
}

export interface ModelWeights {
  embed: GpuLinear;
  /** The embedding itself when tied (spec §3.3). */
  lmHead: GpuLinear;
  finalNorm: GPUBuffer;
  layers: (LinearAttnWeights | FullAttnWeights)[];
  /**
   * Fold each RMSNorm into the matvec that follows it where that kernel can (affine weights, matvec token counts),
   * saving its dispatch; set with the linear fusion at load (false is the unfused reference path).
   */
  foldNorms: boolean;
}

/** Activation buffers for up to `maxTokens` tokens per forward call; reused across calls. */
export interface Scratch {
  maxTokens: number;
  ids: GPUBuffer;
  h: GPUBuffer; x: GPUBuffer;
  // GDN
  m: GPUBuffer; u: GPUBuffer; z: GPUBuffer; a: GPUBuffer; b: GPUBuffer; o: GPUBuffer; oNorm: GPUBuffer;
  // attention
  qg: GPUBuffer; k: GPUBuffer; v: GPUBuffer; qNormed: GPUBuffer;
  attn: GPUBuffer;
  // MLP
  mlpGate: GPUBuffer; mlpUp: GPUBuffer; mlpAct: GPUBuffer;
  logits: GPUBuffer;
}

export function createScratch(ctx: GpuContext, cfg: ModelConfig, maxTokens: number): Scratch {
  const { convDim, valueDim } = dims(cfg);
  const T = maxTokens;
  const f = (n: number, label: string) => ctx.storage(n * 4, label);
  const attnWidth = cfg.numHeads * cfg.headDim;
  return {
    maxTokens,
    ids: f(T, 'ids'),
    h: f(T * cfg.hiddenSize, 'h'), x: f(T * cfg.hiddenSize, 'x'),
    m: f(T * convDim, 'gdn_m'), u: f(T * convDim, 'gdn_u'), z: f(T * valueDim, 'gdn_z'),
    a: f(T * cfg.linearNumValueHeads, 'gdn_a'), b: f(T * cfg.linearNumValueHeads, 'gdn_b'),
    o: f(T * valueDim, 'gdn_o'), oNorm: f(T * valueDim, 'gdn_o_norm'),
    qg: f(T * 2 * attnWidth, 'attn_qg'),
    k: f(T * cfg.numKvHeads * cfg.headDim, 'attn_k'), v: f(T * cfg.numKvHeads * cfg.headDim, 'attn_v'),
    qNormed: f(T * attnWidth, 'attn_q_normed'),
    attn: f(T * attnWidth, 'attn_out'),
    mlpGate: f(T * cfg.intermediateSize, 'mlp_gate'), mlpUp: f(T * cfg.intermediateSize, 'mlp_up'),
    mlpAct: f(T * cfg.intermediateSize, 'mlp_act'),
    logits: f(cfg.vocabSize, 'logits'),
  };
}

export function destroyScratch(s: Scratch): void {
  for (const v of Object.values(s)) if (typeof v === 'object' && 'destroy' in v) (v as GPUBuffer).destroy();
}

export interface ForwardPass {
  rec: Recorder; cfg: ModelConfig; w: ModelWeights; state: SequenceState; s: Scratch;
  /** Tokens in this call (their ids are in s.ids; the first one's position is in the step uniform). */
  T: number;
}

/**
 * Records the forward of `T` tokens whose ids are in s.ids, the first at the step uniform's position.
 * Writes the logits of the last token into s.logits.
 */
export function recordForward(
  rec: Recorder, cfg: ModelConfig, w: ModelWeights, state: SequenceState, s: Scratch, T: number,
): void {
  if (T > s.maxTokens) throw new Error(`recordForward: ${T} tokens exceed the scratch buffers (${s.maxTokens})`);
  const f: ForwardPass = { rec, cfg, w, state, s, T };
  const d = cfg.hiddenSize;
  embedGather(rec, w.embed, s.ids, s.h, T);
  w.layers.forEach((layer, i) => {
    // Each block's last projection adds its output onto h as it writes (the residual, spec §3.2); each block's
    // first one applies the RMSNorm in front of it (normed).
    if (layer.kind === 'linear') gatedDeltaNet(f, layer, state.layers[i] as LinearLayerState);
    else gatedAttention(f, layer, state.layers[i] as FullLayerState);
    mlp(f, layer.mlp, layer.postNorm);
  });
  const head = normed(f, w.finalNorm, [w.lmHead], 1);
  linear(rec, w.lmHead, head.x, s.logits, 1, { xOffset: (T - 1) * d, norm: head.norm });
}

/** What linears reading RMSNorm(h) get: h with the norm folded into their kernels, or the normed copy in s.x. */
interface NormedInput { x: GPUBuffer; norm?: LinearNorm }

/**
 * RMSNorm(h) (spec §3.2) as the input of `lins` over M tokens: folded into every one of their matvecs where each can
 * take it (no dispatch, the normed values never stored), else one norm dispatch into s.x.
 */
function normed(f: ForwardPass, gain: GPUBuffer, lins: GpuLinear[], M: number): NormedInput {
  const { rec, cfg, w, s, T } = f;
  if (w.foldNorms && lins.every((l) => canFoldNorm(rec.ctx, l, M))) return { x: s.h, norm: { gain, eps: cfg.rmsNormEps } };
  rmsNorm(rec, s.h, gain, s.x, T, cfg.hiddenSize, cfg.rmsNormEps);
  return { x: s.x };
}

const members = (p: Projections): GpuLinear[] => (Array.isArray(p) ? p : [p]);

/** x · Wᵢᵀ → outputs[i] for linears sharing x: one dispatch when fused at load, else one each. */
function projections(rec: Recorder, lins: Projections, input: NormedInput, outputs: GPUBuffer[], T: number): void {
  const { x, norm } = input;
  if (Array.isArray(lins)) lins.forEach((l, i) => linear(rec, l, x, outputs[i], T, { norm }));
  else linearSplit(rec, lins, x, outputs, T, { norm });
}

/** Spec §3.5: x = input_layernorm(h); projections → causal conv + SiLU → gated delta rule → gated RMSNorm → out_proj, added onto h. */
function gatedDeltaNet(f: ForwardPass, l: LinearAttnWeights, st: LinearLayerState): void {
  const { rec, cfg, s, T } = f;
  const { convDim } = dims(cfg);
  projections(rec, l.inProj, normed(f, l.inputNorm, members(l.inProj), T), [s.m, s.z, s.b, s.a], T);
  conv1dCausal(rec, s.m, st.conv, l.conv, s.u, T, convDim, cfg.convKernel);
  const deltaRule = T >= GDN_CHUNKED_MIN_T && canRunChunked(rec.ctx) ? gatedDeltaChunked : gatedDelta;
  deltaRule(rec, s.u, s.a, s.b, l.aLog, l.dtBias, st.recurrent, s.o, T, {
    Hk: cfg.linearNumKeyHeads, Hv: cfg.linearNumValueHeads, Dk: cfg.linearKeyHeadDim, Dv: cfg.linearValueHeadDim,
  });
  rmsNormGated(rec, s.o, s.z, l.norm, s.oNorm, T * cfg.linearNumValueHeads, cfg.linearValueHeadDim, cfg.rmsNormEps);
  linear(rec, l.outProj, s.oNorm, s.h, T, { accumulate: true });
}

/**
 * Spec §3.4: x = input_layernorm(h); q (with its gate, [T, H, 2D]), k, v → q_norm + RoPE → k_norm + RoPE into the
 * K cache, v into the V cache in the same dispatch → causal GQA, gated by σ(gate) as it is written → o_proj, added
 * onto h.
 */
function gatedAttention(f: ForwardPass, l: FullAttnWeights, st: FullLayerState): void {
  const { rec, cfg, s, T, state } = f;
  const { numHeads: H, numKvHeads: Hkv, headDim: D, rotaryDim: R, ropeTheta, rmsNormEps: eps } = cfg;
  const ctxRows = state.maxContext;
  projections(rec, l.qkv, normed(f, l.inputNorm, members(l.qkv), T), [s.qg, s.k, s.v], T);
  normRope(rec, s.qg, l.qNorm, s.qNormed, T, H, D, R, ropeTheta, eps, { inStride: 2 * D });
  normRope(rec, s.k, l.kNorm, st.k, T, Hkv, D, R, ropeTheta, eps, { cacheRows: ctxRows, copyV: { v: s.v, vCache: st.v } });
  if (T >= ATTN_PREFILL_MIN_T) attentionPrefill(rec, s.qNormed, st.k, st.v, s.attn, T, H, Hkv, D, ctxRows, { gate: s.qg });
  else attention(rec, s.qNormed, st.k, st.v, s.attn, T, H, Hkv, D, ctxRows, undefined, { gate: s.qg });
  linear(rec, l.o, s.attn, s.h, T, { accumulate: true });
}

/** Spec §3.6: x = post_attention_layernorm(h); down(silu(gate(x)) ⊙ up(x)), added onto h. */
function mlp(f: ForwardPass, m: Mlp, postNorm: GPUBuffer): void {
  const { rec, cfg, s, T } = f;
  const x = normed(f, postNorm, members(m.gateUp), T);
  if (Array.isArray(m.gateUp)) {
    projections(rec, m.gateUp, x, [s.mlpGate, s.mlpUp], T);
    swiglu(rec, s.mlpGate, s.mlpUp, s.mlpAct, T * cfg.intermediateSize);
  } else {
    linearSwiglu(rec, m.gateUp, x.x, s.mlpAct, T, { norm: x.norm });
  }
  linear(rec, m.down, s.mlpAct, s.h, T, { accumulate: true });
}
