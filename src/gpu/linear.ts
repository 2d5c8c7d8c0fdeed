// Linear layers on the GPU: MLX affine-quantised or raw float weights, kept exactly as packed on disk (spec §5.2-5.3),
// multiplied by f32 activations. Decode (small M) runs a matvec that reads every weight word once per token;
// short prompts run the same matvec over up to 8 tokens per workgroup (weights fetched once per 8 tokens); longer
// prefills a 64 × 64 tiled GEMM that dequantises each weight tile once per 64 tokens.
import { grid2d, type GpuContext } from './context.ts';
import type { Binding, Kernel, Recorder } from './plan.ts';
import { shader, shaderText } from './shaders.ts';
import { bufferWriter, streamPieces, uploadOptions, type BufferWriter, type StagingRing } from './upload.ts';
import {
  describeFormat, formatConstants, formatProblem, isQuant, sameFormat, SCALE_STORAGE, storedTensors as storedLayout,
  type FloatStorage, type LinearFormat,
} from '../format/weight-format.ts';

export type { LinearFormat, QuantFormat } from '../format/weight-format.ts';
/** Storage of a float weight or of affine scales/biases (kept for callers that build affine formats). */
export type ScaleDtype = FloatStorage;
/** W[rows, cols], y = x·Wᵀ */
export interface LinearSpec { name: string; rows: number; cols: number; format: LinearFormat }
export interface LinearPart { rowStart: number; rows: number; weight: GPUBuffer; scales?: GPUBuffer; biases?: GPUBuffer }
/**
 * Linears that share their input, concatenated by rows at load into one weight (createFusedLinear) so one
 * dispatch reads x once: 'split' writes each member's rows to its own output (in_proj_qkv/z/b/a, q/k/v);
 * 'swiglu' holds [gate; up] and writes silu(gate) ⊙ up (the MLP). `segments` are the members' row counts.
 */
export interface Fusion { kind: 'split' | 'swiglu'; segments: number[]; names: string[] }
export interface GpuLinear extends LinearSpec { parts: LinearPart[]; bytes: number; fused?: Fusion }

/**
 * Where the matvec hands over to the GEMM, and the matvec's lane cap: the defaults suit 32-wide SIMD GPUs; the
 * autotune (src/gpu/autotune.ts) measures both per adapter and sets them with setLinearTuning.
 */
export interface LinearTuning {
  /** Up to this many tokens the multi-token matvec (no tile waste) runs; above it the 64-token GEMM tile. */
  matvecMaxM: number;
  /** Upper bound on lanes per row in the matvec (a power of two, 1..32). */
  maxLanes: number;
  /**
   * How a matvec row's lanes are summed: 'subgroup' shuffles (where the adapter has subgroups; lanes then at most
   * its minimum subgroup size) or 'workgroup' memory (any lane count, barriers).
   */
  reduce: 'subgroup' | 'workgroup';
}
export const DEFAULT_LINEAR_TUNING: Readonly<LinearTuning> = { matvecMaxM: 16, maxLanes: 32, reduce: 'subgroup' };
const tunings = new WeakMap<GpuContext, LinearTuning>();

export function linearTuning(ctx: GpuContext): LinearTuning {
  return tunings.get(ctx) ?? DEFAULT_LINEAR_TUNING;
}

/** Throws naming the field unless `t` is a usable tuning. */
export function checkLinearTuning(t: LinearTuning): LinearTuning {
  if (!Number.isInteger(t.matvecMaxM) || t.matvecMaxM < 1) throw new Error(`linear tuning: matvecMaxM must be a positive integer, got ${t.matvecMaxM}`);
  if (![1, 2, 4, 8, 16, 32].includes(t.maxLanes)) throw new Error(`linear tuning: maxLanes must be a power of two in 1..32, got ${t.maxLanes}`);
  if (t.reduce !== 'subgroup' && t.reduce !== 'workgroup') throw new Error(`linear tuning: reduce must be 'subgroup' or 'workgroup', got ${String(t.reduce)}`);
  return t;
}

/** Kernels recorded after this call use `t` (over the current tuning); plans recorded before keep theirs. */
export function setLinearTuning(ctx: GpuContext, t: Partial<LinearTuning>): LinearTuning {
  const next = checkLinearTuning({ ...linearTuning(ctx), ...t });
  tunings.set(ctx, next);
  return next;
}

/** Runs `fn` (a recording) under tuning `t`, then puts back what ctx had: engines sharing a device keep their own. */
export function withLinearTuning<R>(ctx: GpuContext, t: LinearTuning, fn: () => R): R {
  const saved = tunings.get(ctx);
  tunings.set(ctx, t);
  try {
    return fn();
  } finally {
    if (saved) tunings.set(ctx, saved);
    else tunings.delete(ctx);
  }
}

/** Tokens per workgroup of the affine matvec (MT in qmatvec.wgsl): a power of two up to 8, so few variants exist. */
export function matvecTokens(M: number): number {
  let mt = 1;
  while (mt < M && mt < 8) mt *= 2;
  return mt;
}

const floatCode = (d: FloatStorage): number => SCALE_STORAGE[d].code;

const ceil4 = (n: number): number => Math.ceil(n / 4) * 4;
// Affine weights are read as vec4<u32>: the buffer must hold whole 16-byte words.
const ceil16 = (n: number): number => Math.ceil(n / 16) * 16;

/** Storage buffer holding `pieces` back to back, zero-padded to `size` bytes (at least 16). */
function upload(ctx: GpuContext, pieces: Uint8Array[], size: number, label: string): GPUBuffer {
  const buf = ctx.device.createBuffer({
    label,
    size: Math.max(16, size),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  const bytes = pieces.reduce((n, p) => n + p.byteLength, 0);
  const dst = new Uint8Array(buf.getMappedRange(0, ceil4(bytes)));
  let at = 0;
  for (const p of pieces) {
    dst.set(p, at);
    at += p.byteLength;
  }
  buf.unmap();
  return buf;
}

/** The same buffer as upload's, left empty (WebGPU zero-fills it) for the streaming path to copy into. */
function emptyStorage(ctx: GpuContext, size: number, label: string): GPUBuffer {
  return ctx.device.createBuffer({
    label,
    size: Math.max(16, size),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
}

const labels = ['weight', 'scales', 'biases'];

type LinearData = { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array };

/** Bytes per row of each stored tensor, in upload order (the format table's storedTensors). */
function rowBytes(spec: LinearSpec): number[] {
  return storedLayout(spec.format, spec.cols).map((t) => t.rowBytes);
}

/** The stored tensors of a linear in upload order (weight, then scales and biases where the format has them), sizes checked. */
function storedTensors(spec: LinearSpec, data: LinearData): Uint8Array[] {
  const { name, rows, cols, format } = spec;
  return storedLayout(format, cols).map(({ label, rowBytes: perRow }) => {
    const t = data[label];
    if (!t) throw new Error(`linear "${name}": missing ${label} for ${describeFormat(format)}`);
    const want = rows * perRow;
    if (t.byteLength !== want) {
      throw new Error(`linear "${name}": ${label} has ${t.byteLength} bytes, expected ${want} for [${rows}, ${cols}] ${describeFormat(format)}`);
    }
    return t;
  });
}

function checkSpec(spec: LinearSpec): void {
  const { name, rows, cols, format: f } = spec;
  if (!Number.isInteger(rows) || rows <= 0 || !Number.isInteger(cols) || cols <= 0) {
    throw new Error(`linear "${name}": rows and cols must be positive integers, found [${rows}, ${cols}]`);
  }
  const problem = formatProblem(f, cols);
  if (problem) throw new Error(`linear "${name}": ${problem}`);
}

/** Buffers of a part, by tensor: a format without biases binds its scales in the biases slot (never read there). */
function partOf(rowStart: number, rows: number, bufs: GPUBuffer[]): LinearPart {
  return { rowStart, rows, weight: bufs[0], scales: bufs[1], biases: bufs[2] ?? bufs[1] };
}

/** Rows [rowStart, rowStart + rows) of every stored tensor, one buffer each, of `sizes` bytes (padded). */
interface PartLayout { rowStart: number; rows: number; sizes: number[] }

/**
 * How createGpuLinear and uploadGpuLinear split a linear by rows: parts as large as maxBytesPerBuffer allows
 * (default: the device's storage binding and buffer size limits), buffers padded to 4 bytes (affine weights to 16:
 * the kernels read them as vec4<u32>). Throws naming the tensor if even one row does not fit.
 */
function partLayout(ctx: GpuContext, spec: LinearSpec, maxBytesPerBuffer?: number): PartLayout[] {
  const { name, rows, format } = spec;
  const limit = maxBytesPerBuffer ?? Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const perRow = rowBytes(spec);
  // Parts need the same row count for every tensor, so the widest row decides.
  const widest = Math.max(...perRow);
  const pad = isQuant(format) ? ceil16 : ceil4;
  let rowsPerPart = Math.min(rows, Math.floor(limit / widest));
  while (rowsPerPart > 0 && pad(rowsPerPart * widest) > limit) rowsPerPart--;
  if (rowsPerPart < 1) {
    throw new Error(`linear "${name}": one row needs ${widest} bytes, more than the ${limit}-byte limit per GPU buffer`);
  }
  const parts: PartLayout[] = [];
  for (let rowStart = 0; rowStart < rows; rowStart += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - rowStart);
    parts.push({ rowStart, rows: n, sizes: perRow.map((b, i) => (i === 0 ? pad(n * b) : ceil4(n * b))) });
  }
  return parts;
}

/**
 * Uploads the tensor bytes exactly as stored in the safetensors file (packed U32 weight; scales/biases raw in
 * scaleDtype; or raw float weight), from memory: the kernel tests, the autotune and the benchmarks use it. The
 * loader streams instead (uploadGpuLinear); both make the same parts (partLayout) holding the same bytes.
 */
export function createGpuLinear(
  ctx: GpuContext,
  spec: LinearSpec,
  data: { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array },
  maxBytesPerBuffer?: number,
): GpuLinear {
  checkSpec(spec);
  const { name } = spec;
  const perRow = rowBytes(spec);
  const tensors = storedTensors(spec, data);
  const parts: LinearPart[] = [];
  let bytes = 0;
  for (const { rowStart, rows: n, sizes } of partLayout(ctx, spec, maxBytesPerBuffer)) {
    const bufs = tensors.map((t, i) => {
      bytes += sizes[i];
      const slice = t.subarray(rowStart * perRow[i], (rowStart + n) * perRow[i]);
      return upload(ctx, [slice], sizes[i], `${name}.${labels[i]}[${rowStart}:${rowStart + n}]`);
    });
    parts.push(partOf(rowStart, n, bufs));
  }
  return { ...spec, parts, bytes };
}

/** Linears with these specs can be fused: one format, one width, at most 4 members, one buffer per tensor. */
export function canFuse(ctx: GpuContext, specs: LinearSpec[], kind: Fusion['kind'], maxBytesPerBuffer?: number): boolean {
  if (specs.length < 2 || specs.length > 4) return false;
  if (kind === 'swiglu' && (specs.length !== 2 || specs[0].rows !== specs[1].rows)) return false;
  if (!specs.every((s) => s.cols === specs[0].cols && sameFormat(s.format, specs[0].format))) return false;
  const limit = maxBytesPerBuffer ?? Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const rows = specs.reduce((n, s) => n + s.rows, 0);
  return ceil16(Math.max(...rowBytes(specs[0])) * rows) <= limit;
}

/** The one part of a fused linear: every member's rows back to back, one buffer per stored tensor. */
function fusedLayout(ctx: GpuContext, name: string, kind: Fusion['kind'], specs: LinearSpec[], maxBytesPerBuffer?: number) {
  specs.forEach(checkSpec);
  if (!canFuse(ctx, specs, kind, maxBytesPerBuffer)) throw new Error(`linear "${name}": ${specs.map((s) => s.name).join(', ')} cannot be fused (${kind})`);
  const { format, cols } = specs[0];
  const rows = specs.reduce((n, s) => n + s.rows, 0);
  const sizes = rowBytes(specs[0]).map((b, i) => (i === 0 && isQuant(format) ? ceil16(rows * b) : ceil4(rows * b)));
  const fused: Fusion = { kind, segments: specs.map((s) => s.rows), names: specs.map((s) => s.name) };
  return { name, rows, cols, format, sizes, fused, bytes: sizes.reduce((a, b) => a + b, 0) };
}

/**
 * One GpuLinear holding the rows of every member in order (see Fusion), uploaded without an intermediate copy:
 * each member's bytes go straight to their row offset in the mapped buffers. Throws unless canFuse holds.
 */
export function createFusedLinear(
  ctx: GpuContext,
  name: string,
  kind: Fusion['kind'],
  members: { spec: LinearSpec; data: { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array } }[],
  maxBytesPerBuffer?: number,
): GpuLinear {
  const { sizes, ...lin } = fusedLayout(ctx, name, kind, members.map((m) => m.spec), maxBytesPerBuffer);
  const tensors = members.map((m) => storedTensors(m.spec, m.data));
  const bufs = sizes.map((size, i) => upload(ctx, tensors.map((t) => t[i]), size, `${name}.${labels[i]}`));
  return { ...lin, parts: [partOf(0, lin.rows, bufs)] };
}

/**
 * Rows [from, to) of some stored tensors of one linear (indices in upload order: 0 weight, 1 scales, 2 biases), as
 * stored, one array per index asked: the streaming path asks for them a piece at a time.
 */
export type RowReader = (tensors: readonly number[], from: number, to: number) => Promise<Uint8Array[]>;

export interface StreamOptions {
  /** Bytes per piece asked of a RowReader (whole rows, at least one; default uploadOptions.pieceBytes). */
  pieceBytes?: number;
  maxBytesPerBuffer?: number;
  /** Called as each piece is staged, with its member (0 unless fused) and its bytes: upload progress. */
  onPiece?: (member: number, bytes: number) => void;
}

/**
 * Which tensors a piece reads together: the weight alone, then scales with biases (checked as pairs, one bias per
 * scale). Each module's file is then read front to back, one region at a time, which is what a source that keeps
 * its last chunk or two in memory (the IndexedDB cache) needs; three regions per piece would evict every chunk.
 */
function tensorGroups(count: number): number[][] {
  return count === 1 ? [[0]] : [[0], count === 3 ? [1, 2] : [1]];
}

/** A piece of a streamed upload: rows [from, to) of some tensors of one member, landing in `part`'s buffers. */
interface Piece { member: number; part: number; tensors: number[]; from: number; to: number }

/** Whole rows of at most pieceBytes (or one row) over [from, from + rows) of `tensors`, for one member and part. */
function piecesOf(out: Piece[], member: number, part: number, tensors: number[], perRow: number[], from: number, rows: number, pieceBytes: number): void {
  const step = Math.max(1, Math.floor(pieceBytes / tensors.reduce((n, i) => n + perRow[i], 0)));
  for (let r = from; r < from + rows; r += step) out.push({ member, part, tensors, from: r, to: Math.min(r + step, from + rows) });
}

/** Reads a piece, checking that every tensor came back with exactly its rows' bytes. */
async function readPiece(spec: LinearSpec, read: RowReader, p: Piece): Promise<Uint8Array[]> {
  const perRow = rowBytes(spec);
  const got = await read(p.tensors, p.from, p.to);
  if (got.length !== p.tensors.length) throw new Error(`linear "${spec.name}": ${got.length} tensors read, expected ${p.tensors.length}`);
  got.forEach((t, j) => {
    const i = p.tensors[j];
    if (t.byteLength !== (p.to - p.from) * perRow[i]) {
      throw new Error(`linear "${spec.name}": rows [${p.from}, ${p.to}) of ${labels[i]} have ${t.byteLength} bytes, expected ${(p.to - p.from) * perRow[i]}`);
    }
  });
  return got;
}

/**
 * Streams pieces into `writers[part][tensor]` through the ring, reading one piece ahead (streamPieces); each writer
 * receives its tensor's rows in order. On failure every buffer in `buffers` is destroyed (and its staged copies
 * dropped) before the error goes on.
 */
async function streamInto(
  ring: StagingRing, specs: LinearSpec[], reads: RowReader[], pieces: Piece[], writers: BufferWriter[][],
  buffers: GPUBuffer[], onPiece?: StreamOptions['onPiece'],
): Promise<void> {
  try {
    await streamPieces(pieces.length, (k) => readPiece(specs[pieces[k].member], reads[pieces[k].member], pieces[k]), async (data, k) => {
      const p = pieces[k];
      for (const [j, t] of data.entries()) await writers[p.part][p.tensors[j]].append(t);
      onPiece?.(p.member, data.reduce((n, t) => n + t.byteLength, 0));
    });
    for (const w of writers.flat()) await w.end();
  } catch (e) {
    ring.cancel(buffers);
    for (const b of buffers) b.destroy();
    throw e;
  }
}

/**
 * createGpuLinear's parts (partLayout), filled from `read` in pieces of whole rows through the staging ring: no
 * tensor is ever whole in memory. The bytes reach the GPU at the ring's next submit (or as its buffers fill).
 */
export async function uploadGpuLinear(ctx: GpuContext, ring: StagingRing, spec: LinearSpec, read: RowReader, opts: StreamOptions = {}): Promise<GpuLinear> {
  checkSpec(spec);
  const { name } = spec;
  const layout = partLayout(ctx, spec, opts.maxBytesPerBuffer);
  const perRow = rowBytes(spec);
  const pieces: Piece[] = [];
  for (const group of tensorGroups(perRow.length)) {
    for (const [part, { rowStart, rows }] of layout.entries()) {
      piecesOf(pieces, 0, part, group, perRow, rowStart, rows, opts.pieceBytes ?? uploadOptions.pieceBytes);
    }
  }
  const partBuffers = layout.map(({ rowStart, rows: n, sizes }) =>
    sizes.map((size, i) => emptyStorage(ctx, size, `${name}.${labels[i]}[${rowStart}:${rowStart + n}]`)));
  const writers = partBuffers.map((bufs) => bufs.map((b) => bufferWriter(ring, b)));
  await streamInto(ring, [spec], [read], pieces, writers, partBuffers.flat(), opts.onPiece);
  const parts = layout.map((p, i) => partOf(p.rowStart, p.rows, partBuffers[i]));
  return { ...spec, parts, bytes: layout.reduce((n, p) => n + p.sizes.reduce((a, b) => a + b, 0), 0) };
}

/** createFusedLinear's buffers, filled member after member from their readers, as uploadGpuLinear does. */
export async function uploadFusedLinear(
  ctx: GpuContext,
  ring: StagingRing,
  name: string,
  kind: Fusion['kind'],
  members: { spec: LinearSpec; read: RowReader }[],
  opts: StreamOptions = {},
): Promise<GpuLinear> {
  const specs = members.map((m) => m.spec);
  const { sizes, ...lin } = fusedLayout(ctx, name, kind, specs, opts.maxBytesPerBuffer);
  const perRow = rowBytes(specs[0]);
  const pieces: Piece[] = [];
  for (const [m, s] of specs.entries()) {
    for (const group of tensorGroups(perRow.length)) piecesOf(pieces, m, 0, group, perRow, 0, s.rows, opts.pieceBytes ?? uploadOptions.pieceBytes);
  }
  const buffers = sizes.map((size, i) => emptyStorage(ctx, size, `${name}.${labels[i]}`));
  await streamInto(ring, specs, members.map((m) => m.read), pieces, [buffers.map((b) => bufferWriter(ring, b))], buffers, opts.onPiece);
  return { ...lin, parts: [partOf(0, lin.rows, buffers)] };
}

export function destroyGpuLinear(lin: GpuLinear): void {
  for (const p of lin.parts) {
    p.weight.destroy();
    p.scales?.destroy();
    p.biases?.destroy();
  }
  lin.parts = [];
}

/** Knobs for tests and benchmarks; the defaults are what the model uses. */
export const linearOptions = {
  /** Reduce matvec rows with subgroup shuffles when the adapter reports a minimum subgroup size. */
  useSubgroups: true,
};

const ROWS_PER_SLOT = 4; // R in the matvec shaders
const MATVEC_THREADS = 128;
const TILE = 64;

/** The subgroup size every subgroup is guaranteed to have (a power of two), or 0 when shuffles are not usable. */
export function minSubgroupSize(ctx: GpuContext): number {
  if (!ctx.features.subgroups) return 0;
  const info = (ctx.device as { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
  const n = info?.subgroupMinSize ?? 0;
  return n >= 2 && (n & (n - 1)) === 0 ? n : 0;
}

export interface MatvecShape { tpr: number; slots: number; subgroups: boolean }

/**
 * Lanes per row: enough to cover the row's work items once, a power of two, at most maxLanes, and with subgroups at
 * most the minimum subgroup size so one slot never spans two subgroups.
 */
export function matvecShape(ctx: GpuContext, items: number): MatvecShape {
  const { maxLanes, reduce } = linearTuning(ctx);
  const sg = linearOptions.useSubgroups && reduce === 'subgroup' ? minSubgroupSize(ctx) : 0;
  const cap = sg > 0 ? Math.min(maxLanes, sg) : maxLanes;
  let tpr = 1;
  while (tpr < cap && tpr < items) tpr *= 2;
  return { tpr, slots: MATVEC_THREADS / tpr, subgroups: sg > 0 };
}

const kernelTexts = new Map<string, string>();
const X_BLOCK = /\/\/ x-binding-begin[^]*?\/\/ x-binding-end/;

/** The x loads of the kernels with scalar reads, for x that is not 16-byte aligned. */
function scalarX(binding: number): string {
  return `@group(0) @binding(${binding}) var<storage, read> X: array<f32>;
fn load_x4(i: u32) -> vec4<f32> { return vec4<f32>(X[i], X[i + 1u], X[i + 2u], X[i + 3u]); }
fn load_x(i: u32) -> f32 { return X[i]; }`;
}

/**
 * A linear kernel is shaderText(files) with `enable subgroups;` first when the subgroup reduction is used and the
 * vec4 x block swapped for scalar loads when asked; cached per variant so the pipeline cache sees one stable string.
 */
function kernelText(files: string[], opts: { subgroups?: boolean; scalarXBinding?: number } = {}): string {
  const key = `${files.join('+')}:${opts.subgroups ? 'sg' : ''}:${opts.scalarXBinding ?? ''}`;
  let code = kernelTexts.get(key);
  if (code === undefined) {
    code = (opts.subgroups ? 'enable subgroups;\n' : '') + shaderText(...files);
    if (opts.scalarXBinding !== undefined) {
      if (!X_BLOCK.test(code)) throw new Error(`shader ${files.join(' + ')} has no x-binding block`);
      code = code.replace(X_BLOCK, scalarX(opts.scalarXBinding));
    }
    kernelTexts.set(key, code);
  }
  return code;
}

// A dummy output for the unused fourth segment of a three-way split (the layout still wants it bound).
const spareOutputs = new WeakMap<GpuContext, GPUBuffer>();
function spareOutput(ctx: GpuContext): GPUBuffer {
  let b = spareOutputs.get(ctx);
  if (!b) spareOutputs.set(ctx, (b = ctx.storage(16, 'linear-spare-output')));
  return b;
}

/** The RMSNorm in front of a linear, folded into its matvec (qnorm.wgsl): x is the un-normed input. */
export interface LinearNorm { gain: GPUBuffer; eps: number }

/**
 * Whether linear(..., { norm }) can fold the RMSNorm in for M tokens: the affine matvec does (the GEMM and the float
 * matvec do not), so the caller normalises into a buffer first otherwise.
 */
export function canFoldNorm(ctx: GpuContext, lin: GpuLinear, M: number): boolean {
  // Storage buffers of the kernel with the gain: weight, scales, biases, x, y (+ 3 more outputs for a split) + gain.
  // A split needs 9, one more than WebGPU's default maxStorageBuffersPerShaderStage of 8.
  const storage = 6 + (lin.fused?.kind === 'split' ? 3 : 0);
  return isQuant(lin.format) && M <= linearTuning(ctx).matvecMaxM && storage <= ctx.limits.maxStorageBuffersPerShaderStage;
}

type Output =
  | { stage: 'write' | 'accumulate'; y: GPUBuffer; yOff: number }
  | { stage: 'split'; ys: GPUBuffer[] }
  | { stage: 'swiglu'; y: GPUBuffer };

/** The one place that picks a kernel, checks sizes and dispatches, for every output stage. */
function dispatchLinear(rec: Recorder, lin: GpuLinear, x: GPUBuffer, M: number, xOff: number, out: Output, norm?: LinearNorm): void {
  const { ctx } = rec;
  if (M <= 0) return;
  if (norm && !canFoldNorm(ctx, lin, M)) {
    throw new Error(`linear "${lin.name}": an RMSNorm folds only into the quantized matvec (${describeFormat(lin.format)}, M = ${M})`);
  }
  if (norm && norm.gain.size < lin.cols * 4) {
    throw new Error(`linear "${lin.name}": the norm gain holds ${norm.gain.size} bytes, needs ${lin.cols * 4}`);
  }
  // Out-of-range reads and writes are clamped silently by WebGPU: catch shape mistakes here instead.
  if (x.size < (xOff + M * lin.cols) * 4) {
    throw new Error(`linear "${lin.name}": x holds ${x.size} bytes, needs ${(xOff + M * lin.cols) * 4} for M=${M} × ${lin.cols} at offset ${xOff}`);
  }
  const outRows = out.stage === 'swiglu' ? lin.rows / 2 : lin.rows;
  const need = (y: GPUBuffer, floats: number, what: string) => {
    if (y.size < floats * 4) throw new Error(`linear "${lin.name}": ${what} holds ${y.size} bytes, needs ${floats * 4} for M=${M}`);
  };
  let segmentStarts = [0, 0, 0];
  if (out.stage === 'split' || out.stage === 'swiglu') {
    const kind = out.stage;
    if (lin.fused?.kind !== kind || lin.parts.length !== 1) throw new Error(`linear "${lin.name}": not a ${kind} fusion`);
  }
  if (out.stage === 'split') {
    const seg = lin.fused!.segments;
    if (out.ys.length !== seg.length) throw new Error(`linear "${lin.name}": ${seg.length} outputs expected, got ${out.ys.length}`);
    out.ys.forEach((y, i) => need(y, M * seg[i], `output ${lin.fused!.names[i]}`));
    // Where segments 1..3 start; one that does not exist starts at the end (its output is never written).
    let at = 0;
    segmentStarts = [1, 2, 3].map((i) => (i < seg.length ? (at += seg[i - 1]) : lin.rows));
  } else {
    const yOff = out.stage === 'swiglu' ? 0 : out.yOff;
    need(out.y, yOff + M * outRows, 'y');
  }
  const f = lin.format;
  const tiled = M > linearTuning(ctx).matvecMaxM;
  // Float weights keep one token per workgroup (their four vec4 accumulators per row would not fit MT tokens).
  const mt = !tiled && isQuant(f) ? matvecTokens(M) : 1;
  // The output stage comes last; SwiGLU's σ is gates.wgsl's, shared with every other kernel.
  const stage = out.stage === 'split' ? ['linear_out_split', 'linear_out_rows']
    : out.stage === 'swiglu' ? ['gates', 'linear_out_swiglu'] : ['linear_out', 'linear_out_rows'];
  const stageConstants: Record<string, number> = out.stage === 'swiglu'
    ? { PAIR: tiled ? TILE / 2 : 2 } : out.stage === 'split' ? {} : { ACC: out.stage === 'accumulate' ? 1 : 0 };

  // Float kernels read x as vec4 only when every row of x starts on a 16-byte boundary.
  const floatX = xOff % 4 === 0 && lin.cols % 4 === 0 ? undefined : 2;

  let kernel: Kernel;
  let rowsPerGroup = TILE;
  if (tiled) {
    kernel = isQuant(f)
      ? { code: kernelText(['qcommon', 'qmatmul', ...stage]), constants: { ...formatConstants(f), ...stageConstants } }
      : { code: kernelText(['matvec_float', 'qreduce_wg', ...stage], { scalarXBinding: floatX }), constants: { WDT: floatCode(f.dtype), ...stageConstants }, entry: 'matmul' };
  } else if (isQuant(f)) {
    const { tpr, slots, subgroups } = matvecShape(ctx, lin.cols / 32);
    const code = kernelText(['qcommon', 'qmatvec', norm ? 'qnorm' : 'qnorm_off', subgroups ? 'qreduce_sg' : 'qreduce_wg', ...stage], {
      subgroups,
      scalarXBinding: xOff % 4 === 0 ? undefined : 4,
    });
    kernel = { code, constants: { ...formatConstants(f), TPR: tpr, SLOTS: slots, MT: mt, ...stageConstants } };
    rowsPerGroup = slots * ROWS_PER_SLOT;
  } else {
    const { tpr, slots, subgroups } = matvecShape(ctx, Math.ceil(lin.cols / 8));
    const code = kernelText(['matvec_float', subgroups ? 'qreduce_sg' : 'qreduce_wg', ...stage], { subgroups, scalarXBinding: floatX });
    kernel = { code, constants: { WDT: floatCode(f.dtype), TPR: tpr, SLOTS: slots, ...stageConstants }, entry: 'matvec' };
    rowsPerGroup = slots * ROWS_PER_SLOT;
  }
  const zGroups = Math.ceil(M / (tiled ? TILE : mt));
  if (zGroups > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`linear "${lin.name}": M = ${M} needs more than ${ctx.limits.maxComputeWorkgroupsPerDimension} workgroups along z`);
  }
  const xBinding = isQuant(f) ? 4 : 2;
  const yBinding = isQuant(f) ? 5 : 3;

  for (const p of lin.parts) {
    // SwiGLU pairs gate rows with up rows: the grid covers blocks of 2·PAIR logical rows per PAIR outputs.
    const logicalRows = out.stage === 'swiglu'
      ? (tiled ? TILE * Math.ceil(outRows / (TILE / 2)) : ROWS_PER_SLOT * Math.ceil(outRows / 2))
      : p.rows;
    const yOff = out.stage === 'write' || out.stage === 'accumulate' ? out.yOff + p.rowStart : 0;
    const yStride = out.stage === 'write' || out.stage === 'accumulate' ? lin.rows : outRows;
    const words = new Uint32Array([p.rows, lin.cols, M, xOff, yOff, yStride, ...segmentStarts, 0, 0, 0]);
    new Float32Array(words.buffer)[9] = norm?.eps ?? 0;
    const params = rec.params(words);
    const bindings: Record<number, Binding> = { 0: params, 1: p.weight, [xBinding]: x };
    if (norm) bindings[6] = norm.gain;
    if (isQuant(f)) Object.assign(bindings, { 2: p.scales!, 3: p.biases! });
    if (out.stage === 'split') {
      const [y0, y1, y2, y3] = out.ys;
      Object.assign(bindings, { [yBinding]: y0, 8: y1, 9: y2 ?? spareOutput(ctx), 10: y3 ?? spareOutput(ctx) });
    } else {
      bindings[yBinding] = out.y;
    }
    const [gx, gy] = grid2d(ctx, Math.ceil(logicalRows / rowsPerGroup));
    rec.dispatch(kernel, bindings, [gx, gy, zGroups], `${lin.name}${tiled ? ' gemm' : ' matvec'}`);
  }
}

/**
 * y[M, rows] = x[M, cols] · Wᵀ (f32 activations), or with `accumulate` y += x · Wᵀ (the residual add done by the
 * projection). xOffset/yOffset in floats; x and y must be different buffers. M ≤ linearTuning(ctx).matvecMaxM runs
 * the matvec (weights read once per token, or once per 8 tokens for affine weights); larger M the 64 × 64 GEMM. x offsets that are multiples of 4 floats
 * get 16-byte x loads.
 */
export function linear(
  rec: Recorder,
  lin: GpuLinear,
  x: GPUBuffer,
  y: GPUBuffer,
  M: number,
  opts: { xOffset?: number; yOffset?: number; accumulate?: boolean; norm?: LinearNorm } = {},
): void {
  if (lin.fused) throw new Error(`linear "${lin.name}": a fused linear runs through linearSplit or linearSwiglu`);
  dispatchLinear(rec, lin, x, M, opts.xOffset ?? 0, { stage: opts.accumulate ? 'accumulate' : 'write', y, yOff: opts.yOffset ?? 0 }, opts.norm);
}

/** A 'split' fusion: outputs[i] [M, segments[i]] = x · W_iᵀ, one dispatch for all members. */
export function linearSplit(rec: Recorder, lin: GpuLinear, x: GPUBuffer, outputs: GPUBuffer[], M: number, opts: { norm?: LinearNorm } = {}): void {
  dispatchLinear(rec, lin, x, M, 0, { stage: 'split', ys: outputs }, opts.norm);
}

/** A 'swiglu' fusion of [gate; up]: out [M, I] = silu(x · W_gateᵀ) ⊙ (x · W_upᵀ), one dispatch. */
export function linearSwiglu(rec: Recorder, lin: GpuLinear, x: GPUBuffer, out: GPUBuffer, M: number, opts: { norm?: LinearNorm } = {}): void {
  dispatchLinear(rec, lin, x, M, 0, { stage: 'swiglu', y: out }, opts.norm);
}

/** out[T, cols] = dequantised rows ids[t] of lin (the embedding table); ids is a u32 storage buffer. */
export function embedGather(rec: Recorder, lin: GpuLinear, ids: GPUBuffer, out: GPUBuffer, T: number): void {
  const { ctx } = rec;
  if (T <= 0) return;
  if (ids.size < T * 4 || out.size < T * lin.cols * 4) {
    throw new Error(`embedGather "${lin.name}": ids (${ids.size} bytes) or out (${out.size} bytes) too small for T=${T} × ${lin.cols}`);
  }
  const f = lin.format;
  const kernel: Kernel = isQuant(f)
    ? { code: kernelText(['qcommon', 'qembed']), constants: formatConstants(f) }
    : { code: shader('embed'), constants: { WDT: floatCode(f.dtype) } };
  const threads = T * (isQuant(f) ? lin.cols / 32 : lin.cols);
  for (const p of lin.parts) {
    const params = rec.params(new Uint32Array([p.rows, lin.cols, T, p.rowStart]));
    const buffers: Binding[] = isQuant(f) ? [params, p.weight, p.scales!, p.biases!, ids, out] : [params, p.weight, ids, out];
    rec.dispatch(kernel, { ...buffers }, Math.ceil(threads / 64), `${lin.name} embed`);
  }
}
