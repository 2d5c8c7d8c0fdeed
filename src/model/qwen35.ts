// The Qwen3.5 / 3.6 dense forward pass on our WGSL kernels. Reads like spec §3: one function per block, each
// line one kernel. No kernel gets the same buffer twice (WebGPU forbids aliasing a writable binding).
// Everything for one call goes into the caller's command encoder.
import { dims, type ModelConfig } from '../format/config.ts';
import type { GpuContext } from '../gpu/context.ts';
import { embedGather, linear, type GpuLinear } from '../gpu/linear.ts';
import {
  add, attention, conv1dCausal, gatedDelta, kvAppend, rmsNorm, rmsNormGated, rope, sigmoidGateMul, splitQGate, swiglu,
} from '../gpu/ops.ts';
import type { FullLayerState, LinearLayerState, SequenceState } from './state.ts';

export interface Mlp { gate: GpuLinear; up: GpuLinear; down: GpuLinear }

/** Gated DeltaNet layer (spec §3.5). Norm gains, conv weights [C, Kc], A_log and dt_bias are f32 buffers. */
export interface LinearAttnWeights {
  kind: 'linear';
  inputNorm: GPUBuffer; postNorm: GPUBuffer;
  inProjQkv: GpuLinear; inProjZ: GpuLinear; inProjB: GpuLinear; inProjA: GpuLinear;
  conv: GPUBuffer; aLog: GPUBuffer; dtBias: GPUBuffer; norm: GPUBuffer; outProj: GpuLinear;
  mlp: Mlp;
}

/** Gated full attention layer (spec §3.4). */
export interface FullAttnWeights {
  kind: 'full';
  inputNorm: GPUBuffer; postNorm: GPUBuffer;
  q: GpuLinear; k: GpuLinear; v: GpuLinear; o: GpuLinear; qNorm: GPUBuffer; kNorm: GPUBuffer;
  mlp: Mlp;
}

export interface ModelWeights {
  embed: GpuLinear;
  /** The embedding itself when tied (spec §3.3). */
  lmHead: GpuLinear;
  finalNorm: GPUBuffer;
  layers: (LinearAttnWeights | FullAttnWeights)[];
}

/** Activation buffers for up to `maxTokens` tokens per forward call; reused across calls. */
export interface Scratch {
  maxTokens: number;
  ids: GPUBuffer;
  h: GPUBuffer; x: GPUBuffer; blockOut: GPUBuffer;
  // GDN
  m: GPUBuffer; u: GPUBuffer; z: GPUBuffer; a: GPUBuffer; b: GPUBuffer; o: GPUBuffer; oNorm: GPUBuffer;
  // attention
  qg: GPUBuffer; q: GPUBuffer; gate: GPUBuffer; k: GPUBuffer; v: GPUBuffer; qNormed: GPUBuffer; kNormed: GPUBuffer;
  attn: GPUBuffer;
  // MLP
  mlpGate: GPUBuffer; mlpUp: GPUBuffer; mlpAct: GPUBuffer;
  logits: GPUBuffer;
}

export function createScratch(ctx: GpuContext, cfg: ModelConfig, maxTokens: number, logitRows = 1): Scratch {
  const { convDim, valueDim } = dims(cfg);
  const T = maxTokens;
  const f = (n: number, label: string) => ctx.storage(n * 4, label);
  const attnWidth = cfg.numHeads * cfg.headDim;
  return {
    maxTokens,
    ids: f(T, 'ids'),
    h: f(T * cfg.hiddenSize, 'h'), x: f(T * cfg.hiddenSize, 'x'), blockOut: f(T * cfg.hiddenSize, 'block_out'),
    m: f(T * convDim, 'gdn_m'), u: f(T * convDim, 'gdn_u'), z: f(T * valueDim, 'gdn_z'),
    a: f(T * cfg.linearNumValueHeads, 'gdn_a'), b: f(T * cfg.linearNumValueHeads, 'gdn_b'),
    o: f(T * valueDim, 'gdn_o'), oNorm: f(T * valueDim, 'gdn_o_norm'),
    qg: f(T * 2 * attnWidth, 'attn_qg'), q: f(T * attnWidth, 'attn_q'), gate: f(T * attnWidth, 'attn_gate'),
    k: f(T * cfg.numKvHeads * cfg.headDim, 'attn_k'), v: f(T * cfg.numKvHeads * cfg.headDim, 'attn_v'),
    qNormed: f(T * attnWidth, 'attn_q_normed'), kNormed: f(T * cfg.numKvHeads * cfg.headDim, 'attn_k_normed'),
    attn: f(T * attnWidth, 'attn_out'),
    mlpGate: f(T * cfg.intermediateSize, 'mlp_gate'), mlpUp: f(T * cfg.intermediateSize, 'mlp_up'),
    mlpAct: f(T * cfg.intermediateSize, 'mlp_act'),
    logits: f(Math.max(1, logitRows) * cfg.vocabSize, 'logits'),
  };
}

export function destroyScratch(s: Scratch): void {
  for (const v of Object.values(s)) if (typeof v === 'object' && 'destroy' in v) (v as GPUBuffer).destroy();
}

export interface ForwardPass {
  ctx: GpuContext; enc: GPUCommandEncoder; cfg: ModelConfig; w: ModelWeights; state: SequenceState; s: Scratch;
  /** Tokens in this call. */
  T: number;
  /** Position of the first of them. */
  p0: number;
}

/**
 * Encodes the forward of `T` tokens whose ids are already in s.ids, starting at state.position.
 * Writes the logits of the last token (or of every token when `allLogits`) into s.logits.
 */
export function encodeForward(
  ctx: GpuContext, enc: GPUCommandEncoder, cfg: ModelConfig, w: ModelWeights, state: SequenceState, s: Scratch,
  T: number, allLogits = false,
): void {
  const f: ForwardPass = { ctx, enc, cfg, w, state, s, T, p0: state.position };
  const d = cfg.hiddenSize;
  embedGather(ctx, enc, w.embed, s.ids, s.h, T);
  w.layers.forEach((layer, i) => {
    rmsNorm(ctx, enc, s.h, layer.inputNorm, s.x, T, d, cfg.rmsNormEps);
    if (layer.kind === 'linear') gatedDeltaNet(f, layer, state.layers[i] as LinearLayerState);
    else gatedAttention(f, layer, state.layers[i] as FullLayerState);
    add(ctx, enc, s.h, s.blockOut, T * d);
    rmsNorm(ctx, enc, s.h, layer.postNorm, s.x, T, d, cfg.rmsNormEps);
    mlp(f, layer.mlp);
    add(ctx, enc, s.h, s.blockOut, T * d);
  });
  const rows = allLogits ? T : 1;
  const first = T - rows;
  rmsNorm(ctx, enc, s.h, w.finalNorm, s.x, T, d, cfg.rmsNormEps);
  linear(ctx, enc, w.lmHead, s.x, s.logits, rows, { xOffset: first * d });
}

/** Spec §3.5: projections → causal conv + SiLU → gated delta rule → gated RMSNorm → out_proj, into s.blockOut. */
function gatedDeltaNet(f: ForwardPass, l: LinearAttnWeights, st: LinearLayerState): void {
  const { ctx, enc, cfg, s, T } = f;
  const { convDim } = dims(cfg);
  linear(ctx, enc, l.inProjQkv, s.x, s.m, T);
  linear(ctx, enc, l.inProjZ, s.x, s.z, T);
  linear(ctx, enc, l.inProjB, s.x, s.b, T);
  linear(ctx, enc, l.inProjA, s.x, s.a, T);
  conv1dCausal(ctx, enc, s.m, st.conv, l.conv, s.u, T, convDim, cfg.convKernel);
  gatedDelta(ctx, enc, s.u, s.a, s.b, l.aLog, l.dtBias, st.recurrent, s.o, T, {
    Hk: cfg.linearNumKeyHeads, Hv: cfg.linearNumValueHeads, Dk: cfg.linearKeyHeadDim, Dv: cfg.linearValueHeadDim,
  });
  rmsNormGated(ctx, enc, s.o, s.z, l.norm, s.oNorm, T * cfg.linearNumValueHeads, cfg.linearValueHeadDim, cfg.rmsNormEps);
  linear(ctx, enc, l.outProj, s.oNorm, s.blockOut, T);
}

/** Spec §3.4: q/gate split → q_norm/k_norm → partial RoPE → KV append → causal GQA → σ(gate) → o_proj. */
function gatedAttention(f: ForwardPass, l: FullAttnWeights, st: FullLayerState): void {
  const { ctx, enc, cfg, s, T, p0, state } = f;
  const { numHeads: H, numKvHeads: Hkv, headDim: D, rotaryDim: R, ropeTheta, rmsNormEps: eps } = cfg;
  linear(ctx, enc, l.q, s.x, s.qg, T);
  linear(ctx, enc, l.k, s.x, s.k, T);
  linear(ctx, enc, l.v, s.x, s.v, T);
  splitQGate(ctx, enc, s.qg, s.q, s.gate, T, H, D);
  rmsNorm(ctx, enc, s.q, l.qNorm, s.qNormed, T * H, D, eps);
  rmsNorm(ctx, enc, s.k, l.kNorm, s.kNormed, T * Hkv, D, eps);
  rope(ctx, enc, s.qNormed, T, H, D, R, p0, ropeTheta);
  rope(ctx, enc, s.kNormed, T, Hkv, D, R, p0, ropeTheta);
  kvAppend(ctx, enc, s.kNormed, s.v, st.k, st.v, T, Hkv, D, p0, state.maxContext);
  attention(ctx, enc, s.qNormed, st.k, st.v, s.attn, T, H, Hkv, D, p0, state.maxContext);
  sigmoidGateMul(ctx, enc, s.attn, s.gate, T * H * D);
  linear(ctx, enc, l.o, s.attn, s.blockOut, T);
}

/** Spec §3.6: down(silu(gate(x)) ⊙ up(x)), into s.blockOut. */
function mlp(f: ForwardPass, m: Mlp): void {
  const { ctx, enc, cfg, s, T } = f;
  linear(ctx, enc, m.gate, s.x, s.mlpGate, T);
  linear(ctx, enc, m.up, s.x, s.mlpUp, T);
  swiglu(ctx, enc, s.mlpGate, s.mlpUp, s.mlpAct, T * cfg.intermediateSize);
  linear(ctx, enc, m.down, s.mlpAct, s.blockOut, T);
}
