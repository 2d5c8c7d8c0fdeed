// Wrappers for the non-matmul kernels of the forward pass (spec §3): norms, RoPE, attention, conv, gated delta,
// element-wise ops. Each describes its dispatches to a Recorder (src/gpu/plan.ts); nothing is submitted or read back
// here, and no GPU object is created per call except through the recorder. Kernels that depend on the position
// (RoPE, KV append, attention) read it from the recorder's step uniform, so one recording serves every position.
// Semantics are those of the same-named functions in src/model/reference-ops.ts. All tensors are f32.
import type { GpuContext } from './context.ts';
import { STEP_BINDING, type Binding, type Recorder } from './plan.ts';
import { shaderText } from './shaders.ts';

// ---------------------------------------------------------------------------------------------------------------
// plumbing

/** A uniform field written as f32 (everything else is u32). */
export interface F32 { f32: number }

/** A kernel's uniform: u32 fields (F32 ones as f32 bits), zero-padded to whole 16-byte rows. */
export function params(rec: Recorder, fields: Array<number | F32>): Binding {
  const words = Math.ceil(fields.length / 4) * 4;
  const buf = new ArrayBuffer(words * 4);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  fields.forEach((v, i) => {
    if (typeof v === 'number') u[i] = v;
    else f[i] = v.f32;
  });
  return rec.params(u);
}

/**
 * One dispatch. Bindings are given by number because each entry point of a multi-kernel .wgsl file uses its own
 * subset (the 'auto' layout only contains what the entry point touches). `groups` workgroups are laid out 2-D;
 * the kernels rebuild the flat index as x + y·num_workgroups.x.
 */
function run(
  rec: Recorder, code: string, entry: string, constants: Record<string, number>,
  bindings: Record<number, Binding>, groups: number, label: string,
): void {
  if (groups <= 0) return;
  rec.dispatch({ code, entry, constants }, bindings, groups, label);
}

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const ELEMENTWISE_WG = 256;
const CONV_MAX_K = 64; // MAXK in conv1d.wgsl // matches WG in elementwise.wgsl, rope.wgsl, conv1d.wgsl

function elementwise(
  rec: Recorder, entry: string, bindings: Record<number, Binding>, n: number, fields: number[] = [],
): void {
  if (n <= 0) return;
  const p = params(rec, [n, ...fields, 0, 0, 0, 0, 0, 0, 0].slice(0, 8));
  run(rec, shaderText('gates', 'step', 'elementwise'), entry, {}, { 0: p, ...bindings }, Math.ceil(n / ELEMENTWISE_WG), entry);
}

// ---------------------------------------------------------------------------------------------------------------
// norms

function normWorkgroup(n: number): number {
  return Math.min(256, pow2ceil(Math.max(32, n)));
}

/** Per row of n: y = gain ⊙ x / sqrt(mean(x²) + eps). y may be x. */
export function rmsNorm(
  rec: Recorder, x: GPUBuffer, gain: GPUBuffer, y: GPUBuffer,
  rows: number, n: number, eps: number,
): void {
  const p = params(rec, [rows, n, { f32: eps }, 0]);
  const constants = { WG: normWorkgroup(n) };
  if (x === y) {
    run(rec, shaderText('gates', 'norm'), 'rms_norm_inplace', constants, { 0: p, 2: gain, 3: y }, rows, 'rmsNorm');
  } else {
    run(rec, shaderText('gates', 'norm'), 'rms_norm', constants, { 0: p, 1: x, 2: gain, 3: y }, rows, 'rmsNorm');
  }
}

/** Per row of n: y = gain ⊙ x / sqrt(mean(x²) + eps) ⊙ silu(z). y may be x. */
export function rmsNormGated(
  rec: Recorder, x: GPUBuffer, z: GPUBuffer, gain: GPUBuffer, y: GPUBuffer,
  rows: number, n: number, eps: number,
): void {
  const p = params(rec, [rows, n, { f32: eps }, 0]);
  const constants = { WG: normWorkgroup(n) };
  if (x === y) {
    run(rec, shaderText('gates', 'norm'), 'rms_norm_gated_inplace', constants,
      { 0: p, 2: gain, 3: y, 4: z }, rows, 'rmsNormGated');
  } else {
    run(rec, shaderText('gates', 'norm'), 'rms_norm_gated', constants,
      { 0: p, 1: x, 2: gain, 3: y, 4: z }, rows, 'rmsNormGated');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// element-wise

/** out = silu(gate) ⊙ up. */
export function swiglu(rec: Recorder, gate: GPUBuffer, up: GPUBuffer, out: GPUBuffer, n: number): void {
  elementwise(rec, 'swiglu', { 2: gate, 3: up, 4: out }, n);
}

/** a ← a + b. */
export function add(rec: Recorder, a: GPUBuffer, b: GPUBuffer, n: number): void {
  elementwise(rec, 'add', { 1: a, 2: b }, n);
}

// ---------------------------------------------------------------------------------------------------------------
// RoPE

// Per (R, theta): inv_freq_i / 2π as 64-bit binary fractions (hi, lo u32 words), see rope.wgsl for why.
const ropeTables = new WeakMap<GpuContext, Map<string, GPUBuffer>>();

function ropeTable(ctx: GpuContext, R: number, theta: number): GPUBuffer {
  let perCtx = ropeTables.get(ctx);
  if (!perCtx) ropeTables.set(ctx, (perCtx = new Map()));
  const key = `${R}:${theta}`;
  let buf = perCtx.get(key);
  if (!buf) {
    const half = R / 2;
    const words = new Uint32Array(2 * half);
    for (let i = 0; i < half; i++) {
      // c < 1/(2π) < 1, so c·2^32 < 2^32; both scalings by 2^32 are exact in f64.
      const c = Math.pow(theta, (-2 * i) / R) / (2 * Math.PI);
      const scaled = c * 2 ** 32;
      const hi = Math.floor(scaled);
      const lo = Math.floor((scaled - hi) * 2 ** 32);
      words[2 * i] = hi;
      words[2 * i + 1] = Math.min(lo, 2 ** 32 - 1);
    }
    buf = ctx.storage(words.byteLength, `rope-freq-${key}`);
    ctx.device.queue.writeBuffer(buf, 0, words);
    perCtx.set(key, buf);
  }
  return buf;
}

/**
 * In place on x [T, heads, D]: token t at position p0 + t (p0 from the step uniform), rotate-half pairs
 * (i, i + R/2), i < R/2, θ = pos · theta^(−2i/R). Dims ≥ R untouched.
 */
export function rope(
  rec: Recorder, x: GPUBuffer, T: number, heads: number, D: number, rotaryDim: number, theta: number,
): void {
  if (rotaryDim % 2 !== 0 || rotaryDim > D) throw new Error(`rope: rotaryDim ${rotaryDim} must be even and ≤ D ${D}`);
  const half = rotaryDim / 2;
  const n = T * heads * half;
  if (n === 0) return;
  const p = params(rec, [n, heads, D, half, 0, 0, 0, 0]);
  run(rec, shaderText('rope_angle', 'step', 'rope'), 'rope', {}, { 0: p, 1: x, 2: ropeTable(rec.ctx, rotaryDim, theta), [STEP_BINDING]: rec.step },
    Math.ceil(n / ELEMENTWISE_WG), 'rope');
}

// ---------------------------------------------------------------------------------------------------------------
// attention

/**
 * k, v [T, Hkv, D] → caches [Hkv, maxCtx, D] at positions p0 .. p0+T−1 (p0 from the step uniform; the engine
 * checks p0 + T ≤ maxCtx before every call).
 */
export function kvAppend(
  rec: Recorder, k: GPUBuffer, v: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer,
  T: number, Hkv: number, D: number, maxCtx: number,
): void {
  if (T > maxCtx) throw new Error(`kvAppend: ${T} tokens exceed the cache (${maxCtx})`);
  elementwise(rec, 'kv_append', { 2: k, 3: v, 4: kCache, 5: vCache, [STEP_BINDING]: rec.step }, T * Hkv * D, [T, Hkv, D, 0, maxCtx]);
}

/** v [T, Hkv, D] → vCache [Hkv, maxCtx, D] at positions p0 .. p0+T−1 (K is written by normRope). */
export function cacheAppend(
  rec: Recorder, v: GPUBuffer, vCache: GPUBuffer, T: number, Hkv: number, D: number, maxCtx: number,
): void {
  if (T > maxCtx) throw new Error(`cacheAppend: ${T} tokens exceed the cache (${maxCtx})`);
  elementwise(rec, 'cache_append', { 2: v, 4: vCache, [STEP_BINDING]: rec.step }, T * Hkv * D, [T, Hkv, D, 0, maxCtx]);
}

const NORM_ROPE_MAX_D = 512; // MAXD in norm_rope.wgsl

/**
 * rmsNorm of each head row (gain [D]) then RoPE (as `rope`), in one dispatch: x holds T·heads head rows of D,
 * `inStride` floats apart (2D: the q half of q_proj's output; D: k). Writes y [T, heads, D], or with `cacheRows`
 * the K cache [heads, maxCtx, D] at positions p0 + t; `copyV` then also copies v [T, heads, D] into the V cache at
 * the same rows (what cacheAppend does, without its dispatch).
 */
export function normRope(
  rec: Recorder, x: GPUBuffer, gain: GPUBuffer, y: GPUBuffer, T: number, heads: number, D: number,
  rotaryDim: number, theta: number, eps: number,
  opts: { inStride?: number; cacheRows?: number; copyV?: { v: GPUBuffer; vCache: GPUBuffer } } = {},
): void {
  if (T === 0) return;
  if (rotaryDim % 2 !== 0 || rotaryDim > D) throw new Error(`normRope: rotaryDim ${rotaryDim} must be even and ≤ D ${D}`);
  if (D > NORM_ROPE_MAX_D) throw new Error(`normRope: head dim ${D} > ${NORM_ROPE_MAX_D} is not supported`);
  const rows = T * heads;
  const p = params(rec, [rows, D, { f32: eps }, 0]);
  const cache = opts.cacheRows !== undefined;
  if (opts.copyV && !cache) throw new Error('normRope: copyV needs cacheRows (it writes into the V cache)');
  const rp = params(rec, [heads, rotaryDim / 2, opts.inStride ?? D, cache ? 1 : 0, opts.cacheRows ?? 0, 0, 0, 0]);
  const bindings: Record<number, Binding> = {
    0: p, 1: x, 2: gain, 3: y, 5: ropeTable(rec.ctx, rotaryDim, theta), 6: rp, [STEP_BINDING]: rec.step,
  };
  if (opts.copyV) Object.assign(bindings, { 7: opts.copyV.v, 8: opts.copyV.vCache });
  run(rec, shaderText('gates', 'norm', 'rope_angle', 'step', 'norm_rope'), opts.copyV ? 'norm_rope_kv' : 'norm_rope',
    { WG: normWorkgroup(D) }, bindings, rows, opts.copyV ? 'normRope+v' : 'normRope');
}

const ATTN_TPR = 32;
const ATTN_BK = 8;
const ATTN_MAX_D = 8 * ATTN_TPR; // MAXE · TPR in attention.wgsl
const ATTN_MAX_SPLITS = 256; // MAX_SPLITS in attention.wgsl
// Enough workgroups to fill a large GPU during decode; a split is never shorter than this many keys.
const ATTN_TARGET_WORKGROUPS = 256;
const ATTN_MIN_SPLIT_KEYS = 128;

// Grow-only scratch for split partials; reuse across calls is safe because dispatches in a queue are ordered.
const attnScratch = new WeakMap<GpuContext, { acc: GPUBuffer; ml: GPUBuffer }>();

function scratch(ctx: GpuContext, accFloats: number, mlFloats: number): { acc: GPUBuffer; ml: GPUBuffer } {
  let s = attnScratch.get(ctx);
  if (!s || s.acc.size < accFloats * 4 || s.ml.size < mlFloats * 4) {
    // The old buffers may still be referenced by encoded work, so they are dropped, not destroyed.
    s = {
      acc: ctx.storage(Math.max(accFloats * 4, s?.acc.size ?? 0), 'attn-split-acc'),
      ml: ctx.storage(Math.max(mlFloats * 4, s?.ml.size ?? 0), 'attn-split-ml'),
    };
    attnScratch.set(ctx, s);
  }
  return s;
}

/**
 * The key splits of attention for T query tokens of a cache of maxCtx rows: enough workgroups to fill a large GPU
 * at the longest context, each split at least ATTN_MIN_SPLIT_KEYS keys there. Fixed per recording, so it depends
 * on the capacity, not on the position; at short positions the trailing splits are empty and cost little.
 */
export function attentionSplits(T: number, H: number, Hkv: number, maxCtx: number): number {
  const rows = T * (H / Hkv);
  const base = Math.ceil(rows / Math.min(8, pow2ceil(rows))) * Hkv;
  const n = Math.min(Math.ceil(ATTN_TARGET_WORKGROUPS / base), Math.ceil(maxCtx / ATTN_MIN_SPLIT_KEYS));
  return Math.max(1, Math.min(n, ATTN_MAX_SPLITS, Math.ceil(maxCtx / ATTN_BK)));
}

/**
 * Causal GQA attention. q [T, H, D]; caches [Hkv, maxCtx, D] holding positions 0..p0+T−1 (p0 from the step
 * uniform); out [T, H, D]. `splits` overrides attentionSplits (tests; 1 = no split pass).
 */
export function attention(
  rec: Recorder, q: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer, out: GPUBuffer,
  T: number, H: number, Hkv: number, D: number, maxCtx: number, splits?: number, opts: { gate?: GPUBuffer } = {},
): void {
  if (T === 0) return;
  if (H % Hkv !== 0) throw new Error(`attention: H ${H} is not a multiple of Hkv ${Hkv}`);
  if (D > ATTN_MAX_D) throw new Error(`attention: head dim ${D} > ${ATTN_MAX_D} is not supported`);
  if (T > maxCtx) throw new Error(`attention: ${T} tokens exceed the cache (${maxCtx})`);
  const group = H / Hkv;
  const rows = T * group;
  const BQ = Math.min(8, pow2ceil(rows));
  const rowBlocks = Math.ceil(rows / BQ);
  const base = rowBlocks * Hkv;
  const nsplit = Math.max(1, Math.min(splits ?? attentionSplits(T, H, Hkv, maxCtx), ATTN_MAX_SPLITS));

  const p = params(rec, [T, H, Hkv, group, 0, maxCtx, 0, nsplit, rowBlocks, { f32: 1 / Math.sqrt(D) }, 0, 0]);
  const split = nsplit > 1;
  const GATE = opts.gate ? 1 : 0;
  const constants = { D, BQ, TPR: ATTN_TPR, BK: ATTN_BK, E: Math.ceil(D / ATTN_TPR), SPLIT: split ? 1 : 0, GATE };
  const text = shaderText('gates', 'step', 'attention');
  // Without a gate the binding is still in the layout (its use sits under a constant-false branch): bind q.
  const gate = opts.gate ?? q;
  const groups = base * nsplit;
  const s = scratch(rec.ctx, split ? nsplit * T * H * D : 1, split ? nsplit * T * H * 2 : 1);
  const common = { 0: p, 1: q, 2: kCache, 3: vCache, 5: s.ml, 10: gate, [STEP_BINDING]: rec.step };
  if (!split) {
    // `ml` is referenced (under a constant-false branch) so the layout still wants it bound.
    run(rec, text, 'attn', constants, { ...common, 4: out }, groups, 'attention');
    return;
  }
  run(rec, text, 'attn', { ...constants, GATE: 0 }, { ...common, 4: s.acc }, groups, 'attention');
  const cp = params(rec, [T * H, nsplit, D, 0]);
  run(rec, text, 'attn_combine', { GATE }, { 6: cp, 7: s.acc, 8: s.ml, 9: out, 10: gate }, T * H, 'attention-combine');
}

// ---------------------------------------------------------------------------------------------------------------
// Gated DeltaNet

/**
 * Causal depthwise conv + SiLU. m [T, C]; state [Kc−1, C] oldest first, updated in place to the last Kc−1 rows of
 * cat(state, m); w [C, Kc] (w[c, Kc−1] multiplies the current token); out [T, C].
 */
export function conv1dCausal(
  rec: Recorder, m: GPUBuffer, state: GPUBuffer, w: GPUBuffer, out: GPUBuffer,
  T: number, C: number, Kc: number,
): void {
  if (T === 0) return;
  if (Kc < 1 || Kc > CONV_MAX_K) throw new Error(`conv1dCausal: kernel size ${Kc} outside [1, ${CONV_MAX_K}]`);
  const p = params(rec, [T, C, Kc, 0]);
  run(rec, shaderText('gates', 'conv1d'), 'conv', {}, { 0: p, 1: m, 2: w, 3: out, 4: state }, Math.ceil(C / ELEMENTWISE_WG), 'conv1d');
}

export interface GdnDims { Hk: number; Hv: number; Dk: number; Dv: number }

const GDN_THREADS = 256;
const GDN_MAXR = 32; // MAXR in gated_delta.wgsl

/**
 * Gated delta rule over T tokens, token loop inside the kernel. u [T, 2·Hk·Dk + Hv·Dv] = [q | k | v];
 * a, b [T, Hv]; aLog, dtBias [Hv]; state [Hv, Dk, Dv] updated in place; out [T, Hv, Dv].
 * `columnsPerWorkgroup` overrides the state tile width (tests).
 */
export function gatedDelta(
  rec: Recorder, u: GPUBuffer, a: GPUBuffer, b: GPUBuffer, aLog: GPUBuffer,
  dtBias: GPUBuffer, state: GPUBuffer, out: GPUBuffer, T: number, dims: GdnDims, columnsPerWorkgroup?: number,
): void {
  const { Hk, Hv, Dk, Dv } = dims;
  if (T === 0) return;
  if (Hv % Hk !== 0) throw new Error(`gatedDelta: Hv ${Hv} is not a multiple of Hk ${Hk}`);
  // 16 columns → 16 row slices: twice the workgroups of 32-wide tiles (decode has only Hv·Dv/BV of them) and
  // Dk/16 state rows per invocation, well inside the register budget.
  const BV = columnsPerWorkgroup ?? Math.min(16, pow2ceil(Dv));
  const NS = GDN_THREADS / BV;
  const RPT = Math.ceil(Dk / NS);
  if (!Number.isInteger(NS) || RPT > GDN_MAXR) throw new Error(`gatedDelta: unsupported Dk ${Dk} with ${BV} columns per workgroup`);
  const tiles = Math.ceil(Dv / BV);
  const keyDim = Hk * Dk;
  const p = params(rec, [T, Hv, Hv / Hk, 2 * keyDim + Hv * Dv, keyDim, tiles, 0, 0]);
  run(rec, shaderText('gates', 'gated_delta'), 'gated_delta', { DK: Dk, DV: Dv, BV, NS, RPT }, { 0: p, 1: u, 2: a, 3: b, 4: aLog, 5: dtBias, 6: state, 7: out }, Hv * tiles, 'gatedDelta');
}
