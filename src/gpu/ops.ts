// Wrappers for the non-matmul kernels of the forward pass (spec §3): norms, RoPE, attention, conv, gated delta,
// element-wise ops. Each encodes compute passes into `enc`; nothing is submitted or read back here.
// Semantics are those of the same-named functions in src/model/reference-ops.ts. All tensors are f32.
import { grid2d, type GpuContext } from './context.ts';
import { shader } from './shaders.ts';

// ---------------------------------------------------------------------------------------------------------------
// plumbing

/** A uniform field written as f32 (everything else is u32). */
interface F32 { f32: number }

function params(ctx: GpuContext, fields: Array<number | F32>): GPUBuffer {
  const words = Math.ceil(fields.length / 4) * 4;
  const buf = new ArrayBuffer(words * 4);
  const u = new Uint32Array(buf);
  const f = new Float32Array(buf);
  fields.forEach((v, i) => {
    if (typeof v === 'number') u[i] = v;
    else f[i] = v.f32;
  });
  return ctx.uniform(u);
}

/**
 * One compute pass with one dispatch. Bindings are given by number because each entry point of a multi-kernel
 * .wgsl file uses its own subset (the 'auto' layout only contains what the entry point touches).
 * `groups` workgroups are laid out 2-D; the kernels rebuild the flat index as x + y·num_workgroups.x.
 */
function run(
  ctx: GpuContext, enc: GPUCommandEncoder, pipeline: GPUComputePipeline,
  bindings: Record<number, GPUBuffer>, groups: number, label: string,
): void {
  if (groups <= 0) return;
  const [x, y] = grid2d(ctx, groups);
  const bindGroup = ctx.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: Object.entries(bindings).map(([binding, buffer]) => ({ binding: Number(binding), resource: { buffer } })),
  });
  const pass = enc.beginComputePass({ label });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(x, y);
  pass.end();
}

const pow2ceil = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const ELEMENTWISE_WG = 256; // matches WG in elementwise.wgsl, rope.wgsl, conv1d.wgsl

function elementwise(
  ctx: GpuContext, enc: GPUCommandEncoder, entry: string, bindings: Record<number, GPUBuffer>,
  n: number, fields: number[] = [],
): void {
  if (n <= 0) return;
  const p = params(ctx, [n, ...fields, 0, 0, 0, 0, 0, 0, 0].slice(0, 8));
  run(ctx, enc, ctx.pipeline(shader('elementwise'), {}, entry), { 0: p, ...bindings },
    Math.ceil(n / ELEMENTWISE_WG), entry);
}

// ---------------------------------------------------------------------------------------------------------------
// norms

function normWorkgroup(n: number): number {
  return Math.min(256, pow2ceil(Math.max(32, n)));
}

/** Per row of n: y = gain ⊙ x / sqrt(mean(x²) + eps). y may be x. */
export function rmsNorm(
  ctx: GpuContext, enc: GPUCommandEncoder, x: GPUBuffer, gain: GPUBuffer, y: GPUBuffer,
  rows: number, n: number, eps: number,
): void {
  const p = params(ctx, [rows, n, { f32: eps }, 0]);
  const constants = { WG: normWorkgroup(n) };
  if (x === y) {
    run(ctx, enc, ctx.pipeline(shader('norm'), constants, 'rms_norm_inplace'), { 0: p, 2: gain, 3: y }, rows, 'rmsNorm');
  } else {
    run(ctx, enc, ctx.pipeline(shader('norm'), constants, 'rms_norm'), { 0: p, 1: x, 2: gain, 3: y }, rows, 'rmsNorm');
  }
}

/** Per row of n: y = gain ⊙ x / sqrt(mean(x²) + eps) ⊙ silu(z). y may be x. */
export function rmsNormGated(
  ctx: GpuContext, enc: GPUCommandEncoder, x: GPUBuffer, z: GPUBuffer, gain: GPUBuffer, y: GPUBuffer,
  rows: number, n: number, eps: number,
): void {
  const p = params(ctx, [rows, n, { f32: eps }, 0]);
  const constants = { WG: normWorkgroup(n) };
  if (x === y) {
    run(ctx, enc, ctx.pipeline(shader('norm'), constants, 'rms_norm_gated_inplace'),
      { 0: p, 2: gain, 3: y, 4: z }, rows, 'rmsNormGated');
  } else {
    run(ctx, enc, ctx.pipeline(shader('norm'), constants, 'rms_norm_gated'),
      { 0: p, 1: x, 2: gain, 3: y, 4: z }, rows, 'rmsNormGated');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// element-wise

/** qg [T, H, 2D] → q [T, H, D] (first D of each head) and gate [T, H, D] (next D). */
export function splitQGate(
  ctx: GpuContext, enc: GPUCommandEncoder, qg: GPUBuffer, q: GPUBuffer, gate: GPUBuffer, T: number, H: number, D: number,
): void {
  elementwise(ctx, enc, 'split_q_gate', { 2: qg, 4: q, 5: gate }, T * H * D, [T, H, D]);
}

/** a ← a ⊙ sigmoid(gate). */
export function sigmoidGateMul(ctx: GpuContext, enc: GPUCommandEncoder, a: GPUBuffer, gate: GPUBuffer, n: number): void {
  elementwise(ctx, enc, 'sigmoid_gate_mul', { 1: a, 2: gate }, n);
}

/** out = silu(gate) ⊙ up. */
export function swiglu(ctx: GpuContext, enc: GPUCommandEncoder, gate: GPUBuffer, up: GPUBuffer, out: GPUBuffer, n: number): void {
  elementwise(ctx, enc, 'swiglu', { 2: gate, 3: up, 4: out }, n);
}

/** a ← a + b. */
export function add(ctx: GpuContext, enc: GPUCommandEncoder, a: GPUBuffer, b: GPUBuffer, n: number): void {
  elementwise(ctx, enc, 'add', { 1: a, 2: b }, n);
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
 * In place on x [T, heads, D]: token t at position p0 + t, rotate-half pairs (i, i + R/2), i < R/2,
 * θ = pos · theta^(−2i/R). Dims ≥ R untouched.
 */
export function rope(
  ctx: GpuContext, enc: GPUCommandEncoder, x: GPUBuffer, T: number, heads: number, D: number,
  rotaryDim: number, p0: number, theta: number,
): void {
  if (rotaryDim % 2 !== 0 || rotaryDim > D) throw new Error(`rope: rotaryDim ${rotaryDim} must be even and ≤ D ${D}`);
  const half = rotaryDim / 2;
  const n = T * heads * half;
  if (n === 0) return;
  const p = params(ctx, [n, heads, D, half, p0, 0, 0, 0]);
  run(ctx, enc, ctx.pipeline(shader('rope'), {}, 'rope'), { 0: p, 1: x, 2: ropeTable(ctx, rotaryDim, theta) },
    Math.ceil(n / ELEMENTWISE_WG), 'rope');
}

// ---------------------------------------------------------------------------------------------------------------
// attention

/** k, v [T, Hkv, D] → caches [Hkv, maxCtx, D] at positions p0 .. p0+T−1. */
export function kvAppend(
  ctx: GpuContext, enc: GPUCommandEncoder, k: GPUBuffer, v: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer,
  T: number, Hkv: number, D: number, p0: number, maxCtx: number,
): void {
  if (p0 + T > maxCtx) throw new Error(`kvAppend: positions up to ${p0 + T} exceed the cache (${maxCtx})`);
  elementwise(ctx, enc, 'kv_append', { 2: k, 3: v, 4: kCache, 5: vCache }, T * Hkv * D, [T, Hkv, D, p0, maxCtx]);
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
 * Causal GQA attention. q [T, H, D]; caches [Hkv, maxCtx, D] holding positions 0..p0+T−1; out [T, H, D].
 * `splits` overrides the key-split heuristic (tests; 1 = no split pass).
 */
export function attention(
  ctx: GpuContext, enc: GPUCommandEncoder, q: GPUBuffer, kCache: GPUBuffer, vCache: GPUBuffer, out: GPUBuffer,
  T: number, H: number, Hkv: number, D: number, p0: number, maxCtx: number, splits?: number,
): void {
  if (T === 0) return;
  if (H % Hkv !== 0) throw new Error(`attention: H ${H} is not a multiple of Hkv ${Hkv}`);
  if (D > ATTN_MAX_D) throw new Error(`attention: head dim ${D} > ${ATTN_MAX_D} is not supported`);
  if (p0 + T > maxCtx) throw new Error(`attention: positions up to ${p0 + T} exceed the cache (${maxCtx})`);
  const group = H / Hkv;
  const rows = T * group;
  const BQ = Math.min(8, pow2ceil(rows));
  const rowBlocks = Math.ceil(rows / BQ);
  const base = rowBlocks * Hkv;
  const kvLen = p0 + T;

  let nsplit = splits ?? Math.min(
    Math.ceil(ATTN_TARGET_WORKGROUPS / base),
    Math.ceil(kvLen / ATTN_MIN_SPLIT_KEYS),
  );
  nsplit = Math.max(1, Math.min(nsplit, ATTN_MAX_SPLITS, Math.ceil(kvLen / ATTN_BK)));
  const splitLen = Math.ceil(Math.ceil(kvLen / nsplit) / ATTN_BK) * ATTN_BK;
  nsplit = Math.ceil(kvLen / splitLen);

  const p = params(ctx, [T, H, Hkv, group, p0, maxCtx, splitLen, nsplit, rowBlocks, { f32: 1 / Math.sqrt(D) }, 0, 0]);
  const split = nsplit > 1;
  const constants = { D, BQ, TPR: ATTN_TPR, BK: ATTN_BK, E: Math.ceil(D / ATTN_TPR), SPLIT: split ? 1 : 0 };
  const pipeline = ctx.pipeline(shader('attention'), constants, 'attn');
  const groups = base * nsplit;
  const s = scratch(ctx, split ? nsplit * T * H * D : 1, split ? nsplit * T * H * 2 : 1);
  if (!split) {
    // `ml` is referenced (under a constant-false branch) so the layout still wants it bound.
    run(ctx, enc, pipeline, { 0: p, 1: q, 2: kCache, 3: vCache, 4: out, 5: s.ml }, groups, 'attention');
    return;
  }
  run(ctx, enc, pipeline, { 0: p, 1: q, 2: kCache, 3: vCache, 4: s.acc, 5: s.ml }, groups, 'attention');
  const cp = params(ctx, [T * H, nsplit, D, 0]);
  run(ctx, enc, ctx.pipeline(shader('attention'), {}, 'attn_combine'), { 6: cp, 7: s.acc, 8: s.ml, 9: out },
    T * H, 'attention-combine');
}

// ---------------------------------------------------------------------------------------------------------------
// Gated DeltaNet

/**
 * Causal depthwise conv + SiLU. m [T, C]; state [Kc−1, C] oldest first, updated in place to the last Kc−1 rows of
 * cat(state, m); w [C, Kc] (w[c, Kc−1] multiplies the current token); out [T, C].
 */
export function conv1dCausal(
  ctx: GpuContext, enc: GPUCommandEncoder, m: GPUBuffer, state: GPUBuffer, w: GPUBuffer, out: GPUBuffer,
  T: number, C: number, Kc: number,
): void {
  if (T === 0) return;
  const p = params(ctx, [T, C, Kc, 0]);
  run(ctx, enc, ctx.pipeline(shader('conv1d'), {}, 'conv_out'), { 0: p, 1: m, 2: w, 3: out, 5: state },
    Math.ceil((T * C) / ELEMENTWISE_WG), 'conv1d');
  if (Kc > 1) {
    run(ctx, enc, ctx.pipeline(shader('conv1d'), {}, 'conv_state'), { 0: p, 1: m, 4: state },
      Math.ceil(C / ELEMENTWISE_WG), 'conv1d-state');
  }
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
  ctx: GpuContext, enc: GPUCommandEncoder, u: GPUBuffer, a: GPUBuffer, b: GPUBuffer, aLog: GPUBuffer,
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
  const p = params(ctx, [T, Hv, Hv / Hk, 2 * keyDim + Hv * Dv, keyDim, tiles, 0, 0]);
  const pipeline = ctx.pipeline(shader('gated_delta'), { DK: Dk, DV: Dv, BV, NS, RPT }, 'gated_delta');
  run(ctx, enc, pipeline, { 0: p, 1: u, 2: a, 3: b, 4: aLog, 5: dtBias, 6: state, 7: out }, Hv * tiles, 'gatedDelta');
}
