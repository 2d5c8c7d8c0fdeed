// Linear layers on the GPU: MLX affine-quantised or raw float weights, kept exactly as packed on disk (spec §5.2-5.3),
// multiplied by f32 activations. Decode (small M) runs a matvec that reads every weight word once per token;
// prefill (larger M) runs a 64 × 64 tiled GEMM that dequantises each weight tile once per 64 tokens.
import { dispatch, grid2d, uploadBytes, type GpuContext } from './context.ts';
import { shader } from './shaders.ts';

export type ScaleDtype = 'bf16' | 'f16' | 'f32';
export type LinearFormat =
  | { kind: 'affine'; bits: 2 | 3 | 4 | 5 | 6 | 8; groupSize: 32 | 64 | 128; scaleDtype: ScaleDtype }
  | { kind: 'float'; dtype: ScaleDtype };
/** W[rows, cols], y = x·Wᵀ */
export interface LinearSpec { name: string; rows: number; cols: number; format: LinearFormat }
export interface LinearPart { rowStart: number; rows: number; weight: GPUBuffer; scales?: GPUBuffer; biases?: GPUBuffer }
export interface GpuLinear extends LinearSpec { parts: LinearPart[]; bytes: number }

/** Up to this many tokens the matvec (weights re-read per token, but no tile waste) beats the 64-token tile. */
export const MATVEC_MAX_M = 4;

const DTYPE_CODE: Record<ScaleDtype, number> = { bf16: 0, f16: 1, f32: 2 };
const DTYPE_BYTES: Record<ScaleDtype, number> = { bf16: 2, f16: 2, f32: 4 };

const ceil4 = (n: number): number => Math.ceil(n / 4) * 4;

/** Bytes per row of each stored tensor, in upload order (weight, then scales and biases for affine). */
function rowBytes(spec: LinearSpec): number[] {
  const f = spec.format;
  if (f.kind === 'float') return [spec.cols * DTYPE_BYTES[f.dtype]];
  const sb = (spec.cols / f.groupSize) * DTYPE_BYTES[f.scaleDtype];
  return [(spec.cols * f.bits) / 8, sb, sb];
}

function checkSpec(spec: LinearSpec): void {
  const { name, rows, cols, format: f } = spec;
  if (!Number.isInteger(rows) || rows <= 0 || !Number.isInteger(cols) || cols <= 0) {
    throw new Error(`linear "${name}": rows and cols must be positive integers, found [${rows}, ${cols}]`);
  }
  if (f.kind === 'affine') {
    if (![2, 3, 4, 5, 6, 8].includes(f.bits)) throw new Error(`linear "${name}": unsupported affine bits ${f.bits}`);
    if (![32, 64, 128].includes(f.groupSize)) throw new Error(`linear "${name}": unsupported group size ${f.groupSize}`);
    if (cols % f.groupSize !== 0) throw new Error(`linear "${name}": cols ${cols} is not a multiple of the group size ${f.groupSize}`);
    if (!(f.scaleDtype in DTYPE_CODE)) throw new Error(`linear "${name}": unsupported scale dtype ${String(f.scaleDtype)}`);
  } else if (!(f.dtype in DTYPE_CODE)) {
    throw new Error(`linear "${name}": unsupported float dtype ${String(f.dtype)}`);
  }
}

/**
 * Uploads the tensor bytes exactly as stored in the safetensors file (packed U32 weight; scales/biases raw in
 * scaleDtype; or raw float weight). Splits by rows into several parts when one buffer would exceed
 * maxBytesPerBuffer (default: the device's storage binding and buffer size limits); throws naming the tensor if
 * even one row does not fit. Pads buffers to 4 bytes.
 */
export function createGpuLinear(
  ctx: GpuContext,
  spec: LinearSpec,
  data: { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array },
  maxBytesPerBuffer?: number,
): GpuLinear {
  checkSpec(spec);
  const { name, rows, cols, format } = spec;
  const limit = maxBytesPerBuffer ?? Math.min(ctx.limits.maxStorageBufferBindingSize, ctx.limits.maxBufferSize);
  const perRow = rowBytes(spec);
  const tensors = format.kind === 'affine' ? [data.weight, data.scales, data.biases] : [data.weight];
  const labels = ['weight', 'scales', 'biases'];
  tensors.forEach((t, i) => {
    if (!t) throw new Error(`linear "${name}": missing ${labels[i]} for ${format.kind} format`);
    const want = rows * perRow[i];
    if (t.byteLength !== want) {
      throw new Error(`linear "${name}": ${labels[i]} has ${t.byteLength} bytes, expected ${want} for [${rows}, ${cols}] ${describe(format)}`);
    }
  });

  // Parts need the same row count for every tensor, so the widest row decides.
  const widest = Math.max(...perRow);
  let rowsPerPart = Math.min(rows, Math.floor(limit / widest));
  while (rowsPerPart > 0 && ceil4(rowsPerPart * widest) > limit) rowsPerPart--;
  if (rowsPerPart < 1) {
    throw new Error(`linear "${name}": one row needs ${widest} bytes, more than the ${limit}-byte limit per GPU buffer`);
  }

  const parts: LinearPart[] = [];
  let bytes = 0;
  for (let rowStart = 0; rowStart < rows; rowStart += rowsPerPart) {
    const n = Math.min(rowsPerPart, rows - rowStart);
    const bufs = tensors.map((t, i) => {
      const slice = t!.subarray(rowStart * perRow[i], (rowStart + n) * perRow[i]);
      bytes += ceil4(slice.byteLength);
      return uploadBytes(ctx, slice, `${name}.${labels[i]}[${rowStart}:${rowStart + n}]`);
    });
    parts.push({ rowStart, rows: n, weight: bufs[0], scales: bufs[1], biases: bufs[2] });
  }
  return { ...spec, parts, bytes };
}

function describe(f: LinearFormat): string {
  return f.kind === 'affine' ? `affine ${f.bits}-bit gs${f.groupSize} ${f.scaleDtype}` : `float ${f.dtype}`;
}

export function destroyGpuLinear(lin: GpuLinear): void {
  for (const p of lin.parts) {
    p.weight.destroy();
    p.scales?.destroy();
    p.biases?.destroy();
  }
  lin.parts = [];
}

function affineConstants(f: Extract<LinearFormat, { kind: 'affine' }>): Record<string, number> {
  return { BITS: f.bits, GS: f.groupSize, SDT: DTYPE_CODE[f.scaleDtype] };
}

const ROWS_PER_SLOT = 4; // R in the matvec shaders
const MATVEC_THREADS = 128;
const TILE = 64;

/** Lanes per row: enough to cover the row's work items once, capped at 32, a power of two for the tree reduction. */
function lanesFor(items: number): number {
  let t = 1;
  while (t < 32 && t < items) t *= 2;
  return t;
}

const quantText = new Map<string, string>();
/** qcommon.wgsl + the kernel (WGSL has no includes), joined once so the pipeline cache sees one stable text. */
function quantShader(name: string): string {
  let code = quantText.get(name);
  if (code === undefined) {
    code = shader('qcommon') + '\n' + shader(name);
    quantText.set(name, code);
  }
  return code;
}

/**
 * y[M, rows] = x[M, cols] · Wᵀ (f32 activations). xOffset/yOffset in floats. M ≤ MATVEC_MAX_M runs the decode
 * matvec; larger M the tiled GEMM.
 */
export function linear(
  ctx: GpuContext,
  enc: GPUCommandEncoder,
  lin: GpuLinear,
  x: GPUBuffer,
  y: GPUBuffer,
  M: number,
  opts: { xOffset?: number; yOffset?: number } = {},
): void {
  if (M <= 0) return;
  const xOff = opts.xOffset ?? 0;
  const yOff = opts.yOffset ?? 0;
  const f = lin.format;
  const tiled = M > MATVEC_MAX_M;
  const items = f.kind === 'affine' ? lin.cols / 32 : Math.ceil(lin.cols / 8);
  const tpr = lanesFor(items);
  const slots = MATVEC_THREADS / tpr;

  let pipeline: GPUComputePipeline;
  if (f.kind === 'affine') {
    pipeline = tiled
      ? ctx.pipeline(quantShader('qmatmul'), affineConstants(f))
      : ctx.pipeline(quantShader('qmatvec'), { ...affineConstants(f), TPR: tpr, SLOTS: slots });
  } else {
    pipeline = tiled
      ? ctx.pipeline(shader('matvec_float'), { WDT: DTYPE_CODE[f.dtype] }, 'matmul')
      : ctx.pipeline(shader('matvec_float'), { WDT: DTYPE_CODE[f.dtype], TPR: tpr, SLOTS: slots }, 'matvec');
  }
  const rowsPerGroup = tiled ? TILE : slots * ROWS_PER_SLOT;
  const zGroups = tiled ? Math.ceil(M / TILE) : M;
  if (zGroups > ctx.limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`linear "${lin.name}": M = ${M} exceeds what one dispatch covers`);
  }

  for (const p of lin.parts) {
    const params = ctx.uniform(new Uint32Array([p.rows, lin.cols, M, xOff, yOff + p.rowStart, lin.rows, 0, 0]));
    const buffers = f.kind === 'affine' ? [params, p.weight, p.scales!, p.biases!, x, y] : [params, p.weight, x, y];
    const [gx, gy] = grid2d(ctx, Math.ceil(p.rows / rowsPerGroup));
    dispatch(ctx, enc, pipeline, buffers, [gx, gy, zGroups], `${lin.name}${tiled ? ' gemm' : ' matvec'}`);
  }
}

/** out[T, cols] = dequantised rows ids[t] of lin (the embedding table); ids is a u32 storage buffer. */
export function embedGather(ctx: GpuContext, enc: GPUCommandEncoder, lin: GpuLinear, ids: GPUBuffer, out: GPUBuffer, T: number): void {
  if (T <= 0) return;
  const f = lin.format;
  const pipeline = f.kind === 'affine'
    ? ctx.pipeline(quantShader('qembed'), affineConstants(f))
    : ctx.pipeline(shader('embed'), { WDT: DTYPE_CODE[f.dtype] });
  const threads = T * (f.kind === 'affine' ? lin.cols / 32 : lin.cols);
  for (const p of lin.parts) {
    const params = ctx.uniform(new Uint32Array([p.rows, lin.cols, T, p.rowStart]));
    const buffers = f.kind === 'affine' ? [params, p.weight, p.scales!, p.biases!, ids, out] : [params, p.weight, ids, out];
    dispatch(ctx, enc, pipeline, buffers, grid2d(ctx, Math.ceil(threads / 64)), `${lin.name} embed`);
  }
}
