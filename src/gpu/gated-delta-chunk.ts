// Chunked (WY form, C = 64) gated delta rule for prefill (spec §4): a drop-in alternative to `gatedDelta` of
// src/gpu/ops.ts, with the same arguments, semantics and in-place state update. The recurrent kernel walks the
// tokens one by one with a workgroup barrier each; here the per-chunk work (Gram matrices, the triangular solve, W
// and U) runs in parallel over chunks and only a chunk-level scan is sequential (shaders/gated_delta_chunk.wgsl).
// CPU references: gatedDeltaChunked64 (same algebra) and gatedDelta64 (the recurrence) in src/model/reference-ops.ts.
import type { GpuContext } from './context.ts';
import { params, type GdnDims } from './ops.ts';
import type { Recorder } from './plan.ts';
import { shaderText } from './shaders.ts';

const C = 64; // C in gated_delta_chunk.wgsl (spec §4)
const WG = 256; // WG in gated_delta_chunk.wgsl
const SCAN_MAX_ROWS_PER_THREAD = 8; // MAXO in gated_delta_chunk.wgsl: C / NR with NR = WG / BV ≥ 8
/** Default tokens per segment: bounds the scratch (W, U: T·Hv·Dk floats each) whatever the prompt length. */
const DEFAULT_SEGMENT = 1024;

export interface GatedDeltaChunkOptions {
  /** Tokens per prep + scan pair (rounded down to a multiple of 64); the state carries between segments. */
  segmentTokens?: number;
  /** State columns per scan workgroup (4 to 32, a power of two); default the widest that fits 16 KiB. */
  columnsPerWorkgroup?: number;
}

interface Scratch { W: GPUBuffer; U: GPUBuffer; M: GPUBuffer; rs: GPUBuffer }

// Grow-only, shared by every call (layers run one after another in the queue, so one set suffices). A smaller
// set that a recorded plan still binds is dropped, not destroyed.
const scratchByCtx = new WeakMap<GpuContext, Scratch>();

function scratch(ctx: GpuContext, floats: { W: number; U: number; M: number; rs: number }): Scratch {
  let s = scratchByCtx.get(ctx);
  const small = (b: GPUBuffer | undefined, n: number): boolean => !b || b.size < n * 4;
  if (!s || small(s.W, floats.W) || small(s.U, floats.U) || small(s.M, floats.M) || small(s.rs, floats.rs)) {
    const grow = (b: GPUBuffer | undefined, n: number, label: string): GPUBuffer =>
      ctx.storage(Math.max(n * 4, b?.size ?? 0), label);
    s = {
      W: grow(s?.W, floats.W, 'gdn-chunk-W'),
      U: grow(s?.U, floats.U, 'gdn-chunk-U'),
      M: grow(s?.M, floats.M, 'gdn-chunk-Mq'),
      rs: grow(s?.rs, floats.rs, 'gdn-chunk-rs'),
    };
    scratchByCtx.set(ctx, s);
  }
  return s;
}

/** The scan's column tile: at most 16 wide, and S₀ tile + Vn tile (Dk·BV + C·BV floats) within workgroup storage. */
function scanColumns(ctx: GpuContext, Dk: number, Dv: number, want?: number): number {
  const budget = Math.min(ctx.limits.maxComputeWorkgroupStorageSize, 16384);
  const fits = (bv: number): boolean => (Dk + C) * bv * 4 <= budget;
  if (want !== undefined) {
    if (![4, 8, 16, 32].includes(want)) throw new Error(`gatedDeltaChunked: ${want} columns per workgroup is not 4, 8, 16 or 32`);
    if (!fits(want)) throw new Error(`gatedDeltaChunked: ${want} columns of Dk ${Dk} exceed ${budget} bytes of workgroup storage`);
    return want;
  }
  let bv = Math.min(16, Math.max(4, 2 ** Math.ceil(Math.log2(Dv))));
  while (bv > 4 && !fits(bv)) bv /= 2;
  if (!fits(bv)) throw new Error(`gatedDeltaChunked: Dk ${Dk} is too large for the scan's workgroup storage`);
  return bv;
}

/** Storage buffers of the prep kernel (u, a, b, A_log, dt_bias and the four per-chunk work arrays). */
const PREP_STORAGE_BUFFERS = 9;

/**
 * Whether this device can run the chunked form: the prep kernel binds 9 storage buffers, one more than WebGPU's
 * default maxStorageBuffersPerShaderStage; a device at the default limits runs the recurrent kernel instead.
 */
export function canRunChunked(ctx: GpuContext): boolean {
  return ctx.limits.maxStorageBuffersPerShaderStage >= PREP_STORAGE_BUFFERS;
}

/**
 * Gated delta rule over T tokens, chunked form. u [T, 2·Hk·Dk + Hv·Dv] = [q | k | v] (after conv + SiLU);
 * a, b [T, Hv]; aLog, dtBias [Hv]; state [Hv, Dk, Dv] updated in place; out [T, Hv, Dv]. Same contract as
 * `gatedDelta` (ops.ts): per-head L2 norm of q, k and the Dk^−½ scale are done here.
 * Two dispatches per segment of `segmentTokens` tokens.
 */
export function gatedDeltaChunked(
  rec: Recorder, u: GPUBuffer, a: GPUBuffer, b: GPUBuffer, aLog: GPUBuffer,
  dtBias: GPUBuffer, state: GPUBuffer, out: GPUBuffer, T: number, dims: GdnDims, opts: GatedDeltaChunkOptions = {},
): void {
  const { Hk, Hv, Dk, Dv } = dims;
  if (T === 0) return;
  if (Hv % Hk !== 0) throw new Error(`gatedDeltaChunked: Hv ${Hv} is not a multiple of Hk ${Hk}`);
  const BV = scanColumns(rec.ctx, Dk, Dv, opts.columnsPerWorkgroup);
  const NR = WG / BV;
  if (Math.ceil(C / NR) > SCAN_MAX_ROWS_PER_THREAD) throw new Error(`gatedDeltaChunked: ${BV} columns per workgroup is too wide`);
  const tiles = Math.ceil(Dv / BV);
  const keyDim = Hk * Dk;
  const convDim = 2 * keyDim + Hv * Dv;

  // Segment length: a multiple of C, no longer than the call, each scratch buffer within one storage binding.
  const perToken = Hv * Math.max(Dk, Dv, C) * 4;
  const bindable = Math.floor(rec.ctx.limits.maxStorageBufferBindingSize / perToken / C) * C;
  const want = Math.max(C, Math.floor((opts.segmentTokens ?? DEFAULT_SEGMENT) / C) * C);
  const seg = Math.min(want, Math.ceil(T / C) * C, bindable);
  if (seg < C) throw new Error(`gatedDeltaChunked: one chunk of Hv ${Hv} heads exceeds the storage binding limit`);
  const s = scratch(rec.ctx, { W: seg * Hv * Dk, U: seg * Hv * Dv, M: seg * Hv * C, rs: seg * Hv * 4 });

  const code = shaderText('gates', 'gated_delta_chunk');
  const constants = { DK: Dk, DV: Dv, BV, NR };
  for (let t0 = 0; t0 < T; t0 += seg) {
    const nch = Math.ceil(Math.min(seg, T - t0) / C);
    const p = params(rec, [T, t0, nch, Hv, Hv / Hk, convDim, keyDim, tiles]);
    rec.dispatch({ code, entry: 'gdn_chunk_prep', constants },
      { 0: p, 1: u, 2: a, 3: b, 4: aLog, 5: dtBias, 8: s.W, 9: s.U, 10: s.M, 11: s.rs }, nch * Hv, 'gatedDeltaChunked-prep');
    rec.dispatch({ code, entry: 'gdn_chunk_scan', constants },
      { 0: p, 1: u, 6: state, 7: out, 8: s.W, 9: s.U, 10: s.M, 11: s.rs }, Hv * tiles, 'gatedDeltaChunked-scan');
  }
}
