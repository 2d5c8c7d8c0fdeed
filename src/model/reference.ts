// The whole Qwen3.5 forward pass (spec §3) on the CPU, built from the f64 forms of the reference ops so that every
// GPU kernel and the GPU model as a whole can be checked against one unambiguous implementation. Activations and
// all state (conv, recurrent, KV) stay in f64; only the logits handed out are rounded to f32.

import type { ModelConfig } from '../format/config.ts';
import { dims as derivedDims } from '../format/config.ts';
import {
  add64, attention64, conv1dCausal64, embedGather64, gatedDelta64, gatedDeltaChunked64, linear64, rmsNorm64,
  rmsNormGated64, rope64, sigmoidGateMul64, splitQGate64, swiglu64,
} from './reference-ops.ts';
import type { GdnDims } from './reference-ops.ts';

/** Normalised module path → dequantised f32 tensor (effective norm gains, conv1d as [C·Kc]). */
export type RefWeights = Map<string, Float32Array>;

export interface ReferenceModel {
  /** Feeds ids after whatever was fed before; returns the logits [V] at every one of those positions. */
  prefill(ids: number[]): Float32Array[];
  /** Feeds one token; returns the logits [V] that follow it. */
  decode(id: number): Float32Array;
  /** Starts a new sequence (all state zero). */
  reset(): void;
  /** Number of tokens fed since the last reset. */
  readonly position: number;
}

/**
 * Optional tap on intermediate activations ([T, n] row-major f64), named as in the golden diagnostics.json:
 * layer −1 for 'embed' and 'final_norm'; per layer input_norm, mixer_out, resid_mid, post_norm, mlp_out, layer_out,
 * plus conv_out and core_out (linear layers) or attn_out (full layers, before the sigmoid gate).
 */
export type TraceFn = (layer: number, name: string, x: Float64Array, T: number) => void;

export interface ReferenceOptions {
  tied: boolean;
  /** Delta-rule form used by prefill (decode is always one recurrent step); both are exact. Default 'recurrent'. */
  gdn?: 'recurrent' | 'chunked';
  trace?: TraceFn;
}

interface LinearLayer {
  kind: 'linear_attention';
  inProjQkv: Float32Array; inProjZ: Float32Array; inProjB: Float32Array; inProjA: Float32Array;
  conv1d: Float32Array; aLog: Float32Array; dtBias: Float32Array; norm: Float32Array; outProj: Float32Array;
  convState: Float64Array; // [Kc−1, convDim] pre-conv rows, oldest first
  recState: Float64Array; // [Hv, Dk, Dv]
}

interface FullLayer {
  kind: 'full_attention';
  qProj: Float32Array; kProj: Float32Array; vProj: Float32Array; oProj: Float32Array;
  qNorm: Float32Array; kNorm: Float32Array;
  kCache: Float64Array; vCache: Float64Array; // [Hkv, maxCtx, D], post-RoPE keys
}

type Layer = (LinearLayer | FullLayer) & {
  inputNorm: Float32Array; postNorm: Float32Array;
  gateProj: Float32Array; upProj: Float32Array; downProj: Float32Array;
};

export function createReferenceModel(cfg: ModelConfig, weights: RefWeights, opts: ReferenceOptions): ReferenceModel {
  const d = cfg.hiddenSize;
  const V = cfg.vocabSize;
  const I = cfg.intermediateSize;
  const eps = cfg.rmsNormEps;
  const H = cfg.numHeads, Hkv = cfg.numKvHeads, D = cfg.headDim;
  const gdn: GdnDims = {
    Hk: cfg.linearNumKeyHeads, Hv: cfg.linearNumValueHeads, Dk: cfg.linearKeyHeadDim, Dv: cfg.linearValueHeadDim,
  };
  const { convDim, valueDim } = derivedDims(cfg);
  const Kc = cfg.convKernel;
  const trace: TraceFn = opts.trace ?? (() => {});
  const prefillDelta = opts.gdn === 'chunked' ? gatedDeltaChunked64 : gatedDelta64;

  const weight = (name: string, size: number): Float32Array => {
    const w = weights.get(name);
    if (!w) throw new Error(`reference model: missing weight "${name}"`);
    if (w.length !== size) throw new Error(`reference model: "${name}" has ${w.length} elements, expected ${size}`);
    return w;
  };

  const embed = weight('embed_tokens', V * d);
  const lmHead = opts.tied ? embed : weight('lm_head', V * d);
  const finalNorm = weight('norm', d);

  let maxCtx = 0;
  const layers: Layer[] = cfg.layerTypes.map((type, i) => {
    const p = `layers.${i}.`;
    const common = {
      inputNorm: weight(`${p}input_layernorm`, d),
      postNorm: weight(`${p}post_attention_layernorm`, d),
      gateProj: weight(`${p}mlp.gate_proj`, I * d),
      upProj: weight(`${p}mlp.up_proj`, I * d),
      downProj: weight(`${p}mlp.down_proj`, d * I),
    };
    if (type === 'linear_attention') {
      const la = `${p}linear_attn.`;
      return {
        ...common,
        kind: type,
        inProjQkv: weight(`${la}in_proj_qkv`, convDim * d),
        inProjZ: weight(`${la}in_proj_z`, valueDim * d),
        inProjB: weight(`${la}in_proj_b`, gdn.Hv * d),
        inProjA: weight(`${la}in_proj_a`, gdn.Hv * d),
        conv1d: weight(`${la}conv1d`, convDim * Kc),
        aLog: weight(`${la}A_log`, gdn.Hv),
        dtBias: weight(`${la}dt_bias`, gdn.Hv),
        norm: weight(`${la}norm`, gdn.Dv),
        outProj: weight(`${la}out_proj`, d * valueDim),
        convState: new Float64Array((Kc - 1) * convDim),
        recState: new Float64Array(gdn.Hv * gdn.Dk * gdn.Dv),
      };
    }
    const sa = `${p}self_attn.`;
    return {
      ...common,
      kind: type,
      qProj: weight(`${sa}q_proj`, 2 * H * D * d),
      kProj: weight(`${sa}k_proj`, Hkv * D * d),
      vProj: weight(`${sa}v_proj`, Hkv * D * d),
      oProj: weight(`${sa}o_proj`, d * H * D),
      qNorm: weight(`${sa}q_norm`, D),
      kNorm: weight(`${sa}k_norm`, D),
      kCache: new Float64Array(0),
      vCache: new Float64Array(0),
    };
  });

  let position = 0;

  /** Re-lays every KV cache out with room for at least `need` positions (the cache stride is maxCtx). */
  function ensureContext(need: number): void {
    if (need <= maxCtx) return;
    const next = Math.max(need, 2 * maxCtx, 64);
    for (const layer of layers) {
      if (layer.kind !== 'full_attention') continue;
      const grow = (old: Float64Array): Float64Array => {
        const fresh = new Float64Array(Hkv * next * D);
        for (let g = 0; g < Hkv; g++) fresh.set(old.subarray(g * maxCtx * D, (g * maxCtx + position) * D), g * next * D);
        return fresh;
      };
      layer.kCache = grow(layer.kCache);
      layer.vCache = grow(layer.vCache);
    }
    maxCtx = next;
  }

  // Spec §3.4
  function gatedAttention(i: number, L: FullLayer, x: Float64Array, T: number): Float64Array {
    const p0 = position;
    const qg = linear64(x, L.qProj, T, 2 * H * D, d);
    const split = splitQGate64(qg, T, H, D);
    let q = split.q;
    let k = linear64(x, L.kProj, T, Hkv * D, d);
    const v = linear64(x, L.vProj, T, Hkv * D, d);
    q = rmsNorm64(q, L.qNorm, T * H, D, eps);
    k = rmsNorm64(k, L.kNorm, T * Hkv, D, eps);
    q = rope64(q, T, H, D, cfg.rotaryDim, p0, cfg.ropeTheta);
    k = rope64(k, T, Hkv, D, cfg.rotaryDim, p0, cfg.ropeTheta);
    for (let t = 0; t < T; t++) {
      for (let g = 0; g < Hkv; g++) {
        const src = (t * Hkv + g) * D;
        const dst = (g * maxCtx + p0 + t) * D;
        L.kCache.set(k.subarray(src, src + D), dst);
        L.vCache.set(v.subarray(src, src + D), dst);
      }
    }
    const o = attention64(q, L.kCache, L.vCache, T, H, Hkv, D, p0, maxCtx);
    trace(i, 'attn_out', o, T);
    return linear64(sigmoidGateMul64(o, split.gate), L.oProj, T, d, H * D);
  }

  // Spec §3.5; `delta` is the recurrent or chunked rule (identical results).
  function gatedDeltaNet(i: number, L: LinearLayer, x: Float64Array, T: number, delta: typeof gatedDelta64): Float64Array {
    const mix = linear64(x, L.inProjQkv, T, convDim, d);
    const z = linear64(x, L.inProjZ, T, valueDim, d);
    const b = linear64(x, L.inProjB, T, gdn.Hv, d);
    const a = linear64(x, L.inProjA, T, gdn.Hv, d);
    const conv = conv1dCausal64(mix, L.convState, L.conv1d, T, convDim, Kc);
    L.convState = conv.state;
    trace(i, 'conv_out', conv.out, T);
    const o = delta(conv.out, a, b, L.aLog, L.dtBias, L.recState, T, gdn);
    trace(i, 'core_out', o, T);
    const y = rmsNormGated64(o, z, L.norm, T * gdn.Hv, gdn.Dv, eps);
    return linear64(y, L.outProj, T, d, valueDim);
  }

  // Spec §3.6
  function mlp(L: Layer, x: Float64Array, T: number): Float64Array {
    const gate = linear64(x, L.gateProj, T, I, d);
    const up = linear64(x, L.upProj, T, I, d);
    return linear64(swiglu64(gate, up), L.downProj, T, d, I);
  }

  // Spec §3.1: logits [T, V] for ids fed at positions position .. position+T−1.
  function forward(ids: number[], delta: typeof gatedDelta64): Float64Array {
    const T = ids.length;
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`reference model: token id ${id} outside [0, ${V})`);
    }
    ensureContext(position + T);
    let h = embedGather64(embed, ids, d);
    trace(-1, 'embed', h, T);
    layers.forEach((L, i) => {
      const x = rmsNorm64(h, L.inputNorm, T, d, eps);
      trace(i, 'input_norm', x, T);
      const mixed = L.kind === 'full_attention' ? gatedAttention(i, L, x, T) : gatedDeltaNet(i, L, x, T, delta);
      trace(i, 'mixer_out', mixed, T);
      h = add64(h, mixed);
      trace(i, 'resid_mid', h, T);
      const post = rmsNorm64(h, L.postNorm, T, d, eps);
      trace(i, 'post_norm', post, T);
      const m = mlp(L, post, T);
      trace(i, 'mlp_out', m, T);
      h = add64(h, m);
      trace(i, 'layer_out', h, T);
    });
    const y = rmsNorm64(h, finalNorm, T, d, eps);
    trace(-1, 'final_norm', y, T);
    position += T;
    return linear64(y, lmHead, T, V, d);
  }

  const rows = (logits: Float64Array, T: number): Float32Array[] =>
    Array.from({ length: T }, (_, t) => new Float32Array(logits.subarray(t * V, (t + 1) * V)));

  return {
    prefill(ids: number[]): Float32Array[] {
      if (ids.length === 0) return [];
      return rows(forward(ids, prefillDelta), ids.length);
    },
    decode(id: number): Float32Array {
      return rows(forward([id], gatedDelta64), 1)[0];
    },
    reset(): void {
      position = 0;
      for (const L of layers) {
        if (L.kind === 'linear_attention') {
          L.convState.fill(0);
          L.recState.fill(0);
        }
        // KV entries at or beyond `position` are never read, so the caches need no clearing.
      }
    },
    get position(): number {
      return position;
    },
  };
}
