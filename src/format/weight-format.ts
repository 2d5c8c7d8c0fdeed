// The one table of how a linear or embedding weight is stored (spec §5.2-5.4, §6). The checkpoint plan, the
// loader, the memory estimate and pre-flight, the kernels' override constants and the CPU reference all read it:
// adding a format touches this table, one shader function (qcommon.wgsl), one reference function and one test.

/** Storage of a float tensor, or of the scales/biases of an affine or fp8 weight. */
export type FloatStorage = 'bf16' | 'f16' | 'f32';
/** Storage of a quantized weight's scales: a float type, or one byte per group (E8M0 or E4M3). */
export type ScaleStorage = FloatStorage | 'e8m0' | 'e4m3';

/**
 * affine: MLX uint codes, w = s·q + b (§5.2); mxfp4 / nvfp4 / mxfp8: MLX microscaling, w = S·E (§5.4);
 * fp8: E4M3 elements with float scales per group of a row (compressed-tensors and Qwen FP8, §6, with channel,
 * tensor and 128×128 block scales brought to per-row groups by the loader).
 */
export type QuantMode = 'affine' | 'mxfp4' | 'nvfp4' | 'mxfp8' | 'fp8';

export type LinearFormat =
  | { kind: 'float'; dtype: FloatStorage }
  | { kind: QuantMode; bits: number; groupSize: number; scaleDtype: ScaleStorage };
export type QuantFormat = Extract<LinearFormat, { bits: number }>;

export interface ModeInfo {
  /** MODE of qcommon.wgsl: how an element code decodes (0 = unsigned integer, 1 = FP4 E2M1, 2 = FP8 E4M3). */
  element: 0 | 1 | 2;
  bits: readonly number[];
  /** Allowed group sizes; 'row' = any multiple of 32 that divides the row (fp8 channel / block / group scales). */
  groups: readonly number[] | 'row';
  scales: readonly ScaleStorage[];
  /** Whether a .biases tensor is stored (and added, b·Σx, by the kernels). */
  biases: boolean;
  /** MLX's defaults for a per-module dict that omits bits or group_size (mlx.nn `_defaults_for_mode`). */
  defaults: { bits: number; groupSize: number } | null;
}

export const QUANT_MODES: Readonly<Record<QuantMode, ModeInfo>> = {
  affine: { element: 0, bits: [2, 3, 4, 5, 6, 8], groups: [32, 64, 128], scales: ['bf16', 'f16', 'f32'], biases: true, defaults: { bits: 4, groupSize: 64 } },
  mxfp4: { element: 1, bits: [4], groups: [32], scales: ['e8m0'], biases: false, defaults: { bits: 4, groupSize: 32 } },
  nvfp4: { element: 1, bits: [4], groups: [16], scales: ['e4m3'], biases: false, defaults: { bits: 4, groupSize: 16 } },
  mxfp8: { element: 2, bits: [8], groups: [32], scales: ['e8m0'], biases: false, defaults: { bits: 8, groupSize: 32 } },
  fp8: { element: 2, bits: [8], groups: 'row', scales: ['bf16', 'f16', 'f32'], biases: false, defaults: null },
};

/** The modes an MLX config.json may name (fp8 comes from compressed-tensors / Qwen FP8 configs instead). */
export const MLX_MODES = ['affine', 'mxfp4', 'nvfp4', 'mxfp8'] as const;

/** SDT of qcommon.wgsl and bytes per stored value. */
export const SCALE_STORAGE: Readonly<Record<ScaleStorage, { code: number; bytes: number }>> = {
  bf16: { code: 0, bytes: 2 }, f16: { code: 1, bytes: 2 }, f32: { code: 2, bytes: 4 }, e8m0: { code: 3, bytes: 1 }, e4m3: { code: 4, bytes: 1 },
};

export function isQuant(f: LinearFormat): f is QuantFormat {
  return f.kind !== 'float';
}

/** The stored tensors of a weight in upload order, with bytes per row of the logical [rows, cols] matrix. */
export function storedTensors(f: LinearFormat, cols: number): { label: 'weight' | 'scales' | 'biases'; rowBytes: number }[] {
  if (!isQuant(f)) return [{ label: 'weight', rowBytes: cols * SCALE_STORAGE[f.dtype].bytes }];
  const s = (cols / f.groupSize) * SCALE_STORAGE[f.scaleDtype].bytes;
  const out: { label: 'weight' | 'scales' | 'biases'; rowBytes: number }[] = [
    { label: 'weight', rowBytes: (cols * f.bits) / 8 }, { label: 'scales', rowBytes: s },
  ];
  if (QUANT_MODES[f.kind].biases) out.push({ label: 'biases', rowBytes: s });
  return out;
}

/** Bytes of a [rows, cols] weight as stored (and as uploaded, before padding). */
export function formatBytes(f: LinearFormat, rows: number, cols: number): number {
  return storedTensors(f, cols).reduce((n, t) => n + rows * t.rowBytes, 0);
}

/** Why `f` cannot hold a [rows, cols] weight, or null when it can. */
export function formatProblem(f: LinearFormat, cols: number): string | null {
  if (!isQuant(f)) return ['bf16', 'f16', 'f32'].includes(f.dtype) ? null : `unsupported float dtype ${String(f.dtype)}`;
  const m = QUANT_MODES[f.kind];
  if (!m) return `unknown quantization mode ${String(f.kind)}`;
  if (!m.bits.includes(f.bits)) return `unsupported bits ${f.bits} for ${f.kind} (expected ${m.bits.join(', ')})`;
  if (m.groups === 'row') {
    if (!(f.groupSize >= 32 && f.groupSize % 32 === 0)) return `${f.kind} scale groups must be a multiple of 32 values of a row, found ${f.groupSize}`;
  } else if (!m.groups.includes(f.groupSize)) {
    return `unsupported group size ${f.groupSize} for ${f.kind} (expected ${m.groups.join(', ')})`;
  }
  if (!m.scales.includes(f.scaleDtype)) return `${f.kind} scales are ${m.scales.join(' or ')}, found ${String(f.scaleDtype)}`;
  // The kernels walk a row in chunks of 32 values (f.bits words each).
  if (cols % 32 !== 0) return `the row length ${cols} is not a multiple of 32`;
  if (cols % f.groupSize !== 0) return `the row length ${cols} is not a multiple of the group size ${f.groupSize}`;
  return null;
}

/** Override constants of the quantized kernels (qcommon.wgsl) for a format. */
export function formatConstants(f: QuantFormat): Record<string, number> {
  return { MODE: QUANT_MODES[f.kind].element, BITS: f.bits, GS: f.groupSize, SDT: SCALE_STORAGE[f.scaleDtype].code };
}

export function sameFormat(a: LinearFormat, b: LinearFormat): boolean {
  if (!isQuant(a) || !isQuant(b)) return !isQuant(a) && !isQuant(b) && a.dtype === b.dtype;
  return a.kind === b.kind && a.bits === b.bits && a.groupSize === b.groupSize && a.scaleDtype === b.scaleDtype;
}

export function describeFormat(f: LinearFormat): string {
  if (!isQuant(f)) return `float ${f.dtype}`;
  return f.kind === 'affine' ? `affine ${f.bits}-bit gs${f.groupSize} ${f.scaleDtype}` : `${f.kind} gs${f.groupSize} ${f.scaleDtype} scales`;
}

/** A short label for summaries and the memory table: "affine 4-bit g64", "mxfp4", "fp8 g128", "float BF16". */
export function formatLabel(f: LinearFormat): string {
  if (!isQuant(f)) return `float ${f.dtype.toUpperCase()}`;
  if (f.kind === 'affine') return `affine ${f.bits}-bit g${f.groupSize}`;
  return f.kind === 'fp8' ? `fp8 g${f.groupSize}` : f.kind;
}
