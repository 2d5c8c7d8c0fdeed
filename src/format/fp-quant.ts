// Floating-point weight formats on the CPU: MLX microscaling mxfp4 / nvfp4 / mxfp8 (spec §5.4) and FP8 E4M3 with
// float scales per group of a row (compressed-tensors, Qwen FP8: spec §6). The decoders are the reference the
// kernels (qcommon.wgsl e2m1 / e4m3 / load_sdt) are tested against; the encoders write the tiny test checkpoints
// the way MLX chooses its scales (amax / 6 or / 448, E8M0 rounded to the nearest power of two).

import { decodeFloats, encodeFloats, type FloatDType } from './dtype.ts';
import { packBits, rint, unpackBits } from './quant.ts';

const fr = Math.fround;

/** FP4 E2M1 code → value (bit 3 the sign), spec §5.4. */
export const E2M1_VALUES: readonly number[] = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

export function decodeE2M1(code: number): number {
  return E2M1_VALUES[code & 15];
}

/** FP8 E4M3 "fn" code → value: e = 0 → ±m/8·2^-6, else ±(1 + m/8)·2^(e−7). 0x7f/0xff decode to ±480 as in MLX. */
export function decodeE4M3(code: number): number {
  const e = (code >> 3) & 15;
  const m = code & 7;
  const mag = e === 0 ? (m / 8) * 2 ** -6 : (1 + m / 8) * 2 ** (e - 7);
  return code & 0x80 ? -mag : mag;
}

/** E8M0 scale code → 2^(code − 127) (code 0 → 2^-127); 255 is NaN. */
export function decodeE8M0(code: number): number {
  return code === 255 ? NaN : 2 ** (code - 127);
}

/** Nearest E4M3 code to x, ties to even, saturating at ±448 (the PyTorch-style encoder of spec §5.4). */
export function encodeE4M3(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x80 : 0;
  const a = Math.abs(x);
  if (!(a < Infinity)) throw new Error(`encodeE4M3: ${x} has no E4M3 code`);
  if (a >= 448) return sign | 0x7e;
  if (a < 2 ** -6) return sign | rint(a * 512); // subnormals: m/8·2^-6 = m·2^-9 (m = 8 is the smallest normal, code 8)
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 rounding at exact powers of two
  const m = rint((a / 2 ** e - 1) * 8);
  return m === 8 ? sign | ((e + 8) << 3) : sign | ((e + 7) << 3) | m;
}

/** E2M1 code of x with MLX's thresholds (>5→6, ≥3.5→4, >2.5→3, ≥1.75→2, >1.25→1.5, ≥0.75→1, >0.25→0.5). */
export function encodeE2M1(x: number): number {
  const a = Math.abs(x);
  const k = a > 5 ? 7 : a >= 3.5 ? 6 : a > 2.5 ? 5 : a >= 1.75 ? 4 : a > 1.25 ? 3 : a >= 0.75 ? 2 : a > 0.25 ? 1 : 0;
  return (x < 0 ? 8 : 0) | k;
}

export type MxMode = 'mxfp4' | 'nvfp4' | 'mxfp8';
const MX: Record<MxMode, { bits: 4 | 8; groupSize: number; elementMax: number }> = {
  mxfp4: { bits: 4, groupSize: 32, elementMax: 6 },
  nvfp4: { bits: 4, groupSize: 16, elementMax: 6 },
  mxfp8: { bits: 8, groupSize: 32, elementMax: 448 },
};

export interface MxQuantized {
  /** Packed codes [rows, cols·bits/32] (LSB-first, code i of a word in nibble / byte i). */
  weight: Uint32Array;
  /** One byte per group [rows, cols/G]: E8M0 (mxfp4, mxfp8) or E4M3 (nvfp4). */
  scales: Uint8Array;
}

function checkMx(mode: MxMode, rows: number, cols: number): { bits: 4 | 8; groupSize: number; elementMax: number } {
  const m = MX[mode];
  if (!m) throw new Error(`unknown microscaling mode "${mode}" (expected mxfp4, nvfp4 or mxfp8)`);
  if (cols % 32 !== 0) throw new Error(`${mode}: the row length ${cols} is not a multiple of 32`);
  if (!Number.isInteger(rows) || rows < 0) throw new Error(`${mode}: rows must be a non-negative integer, found ${rows}`);
  return m;
}

export function quantizeMx(w: Float32Array, rows: number, cols: number, mode: MxMode): MxQuantized {
  const { bits, groupSize, elementMax } = checkMx(mode, rows, cols);
  if (w.length !== rows * cols) throw new Error(`quantizeMx: expected ${rows * cols} weights, found ${w.length}`);
  const groups = (rows * cols) / groupSize;
  const scales = new Uint8Array(groups);
  const codes = new Uint8Array(rows * cols);
  for (let g = 0; g < groups; g++) {
    let amax = 0;
    for (let j = 0; j < groupSize; j++) {
      const v = w[g * groupSize + j];
      if (!Number.isFinite(v)) throw new Error(`quantizeMx: non-finite weight ${v} at index ${g * groupSize + j}`);
      amax = Math.max(amax, Math.abs(v));
    }
    let scale: number;
    if (mode === 'nvfp4') {
      scales[g] = encodeE4M3(amax / elementMax);
      scale = decodeE4M3(scales[g]);
    } else {
      const e = amax === 0 ? -127 : Math.min(127, Math.max(-127, Math.round(Math.log2(amax / elementMax))));
      scales[g] = e + 127;
      scale = decodeE8M0(scales[g]);
    }
    for (let j = 0; j < groupSize; j++) {
      const v = scale === 0 ? 0 : w[g * groupSize + j] / scale;
      codes[g * groupSize + j] = bits === 4 ? encodeE2M1(v) : encodeE4M3(Math.max(-448, Math.min(448, v)));
    }
  }
  return { weight: packBits(codes, rows, cols, bits), scales };
}

/** w[r, c] = S(scale[r, c/G]) · E(code[r, c]) in f32 (exact: both factors are short binary floats). */
export function dequantizeMx(weight: Uint32Array, scales: Uint8Array, rows: number, cols: number, mode: MxMode): Float32Array {
  const { bits, groupSize } = checkMx(mode, rows, cols);
  const groups = (rows * cols) / groupSize;
  if (scales.length !== groups) throw new Error(`dequantizeMx: expected ${groups} scales for [${rows}, ${cols}] ${mode}, found ${scales.length}`);
  const codes = unpackBits(weight, rows, cols, bits);
  const s = Float64Array.from(scales, (c) => (mode === 'nvfp4' ? decodeE4M3(c) : decodeE8M0(c)));
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const e = bits === 4 ? decodeE2M1(codes[i]) : decodeE4M3(codes[i]);
    out[i] = fr(s[Math.floor(i / groupSize)] * e);
  }
  return out;
}

export interface Fp8Quantized {
  /** E4M3 codes, one byte per element, row-major [rows, cols] (safetensors F8_E4M3). */
  weight: Uint8Array;
  /** [rows, cols/G] float scales in their stored dtype (G = cols: one per output channel). */
  scales: Uint8Array;
}

/** Symmetric FP8 with scale amax/448 per group of G values of a row (compressed-tensors "float-quantized"). */
export function quantizeFp8(w: Float32Array, rows: number, cols: number, groupSize: number, scaleDtype: FloatDType): Fp8Quantized {
  if (cols % groupSize !== 0) throw new Error(`quantizeFp8: cols ${cols} is not a multiple of the group size ${groupSize}`);
  const groups = (rows * cols) / groupSize;
  const s = new Float32Array(groups);
  for (let g = 0; g < groups; g++) {
    let amax = 0;
    for (let j = 0; j < groupSize; j++) amax = Math.max(amax, Math.abs(w[g * groupSize + j]));
    s[g] = amax / 448;
  }
  const scales = encodeFloats(s, scaleDtype);
  const stored = decodeFloats(scales, scaleDtype);
  const weight = new Uint8Array(rows * cols);
  for (let i = 0; i < weight.length; i++) {
    const sc = stored[Math.floor(i / groupSize)];
    weight[i] = encodeE4M3(sc === 0 ? 0 : Math.max(-448, Math.min(448, w[i] / sc)));
  }
  return { weight, scales };
}

/** w[r, c] = E4M3(weight[r, c]) · scale[r, c/G] in f32 (compressed-tensors `_dequantize`, spec §6.1). */
export function dequantizeFp8(weight: Uint8Array, scales: Uint8Array, rows: number, cols: number, groupSize: number, scaleDtype: FloatDType): Float32Array {
  if (weight.length !== rows * cols) throw new Error(`dequantizeFp8: expected ${rows * cols} codes, found ${weight.length}`);
  const s = decodeFloats(scales, scaleDtype);
  if (s.length !== (rows * cols) / groupSize) throw new Error(`dequantizeFp8: expected ${(rows * cols) / groupSize} scales, found ${s.length}`);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = fr(decodeE4M3(weight[i]) * s[Math.floor(i / groupSize)]);
  return out;
}

/**
 * FP8 with one scale per block of br × bc values (Qwen FP8 `weight_scale_inv`, compressed-tensors "block"), scale
 * amax/448: scales [ceil(rows/br), ceil(cols/bc)] in their stored dtype.
 */
export function quantizeFp8Blocks(w: Float32Array, rows: number, cols: number, br: number, bc: number, scaleDtype: FloatDType): Fp8Quantized {
  const sr = Math.ceil(rows / br);
  const sc = Math.ceil(cols / bc);
  const s = new Float32Array(sr * sc);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const k = Math.floor(r / br) * sc + Math.floor(c / bc);
      s[k] = Math.max(s[k], Math.abs(w[r * cols + c]) / 448);
    }
  }
  const scales = encodeFloats(s, scaleDtype);
  const stored = decodeFloats(scales, scaleDtype);
  const weight = new Uint8Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = stored[Math.floor(r / br) * sc + Math.floor(c / bc)];
      weight[r * cols + c] = encodeE4M3(v === 0 ? 0 : Math.max(-448, Math.min(448, w[r * cols + c] / v)));
    }
  }
  return { weight, scales };
}
