// MLX affine quantization on the CPU (spec §5.2) and the LSB-first bit-stream packing (spec §5.3).
// The quantizer reproduces MLX's CPU kernel step by step in f32 (Math.fround after every operation), so the
// codes, scales and biases it produces are what `mx.quantize` on the CPU stream would store.

import { decodeFloats, encodeFloats, type FloatDType } from './dtype.ts';

export const AFFINE_BITS = [2, 3, 4, 5, 6, 8] as const;
export const AFFINE_GROUPS = [32, 64, 128] as const;

export type ScaleDtype = 'bf16' | 'f16' | 'f32';

export interface AffineQuantized {
  /** Packed codes, row-major [rows, cols·bits/32]. */
  weight: Uint32Array;
  /** Raw little-endian bytes of [rows, cols/groupSize] values in the scale dtype. */
  scales: Uint8Array;
  biases: Uint8Array;
  /** The unpacked codes [rows, cols], for tests and diagnostics. */
  codes: Uint8Array;
}

const fr = Math.fround;

/** Round half to even, like C's rint in the default rounding mode. */
export function rint(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  const r = d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
  return r === 0 && x < 0 ? -0 : r; // C keeps the sign of a negative input that rounds to zero
}

/** Accepts the lower-case option names and the safetensors dtype names. */
export function toFloatDType(d: ScaleDtype | FloatDType | string): FloatDType {
  switch (d) {
    case 'bf16': case 'BF16': return 'BF16';
    case 'f16': case 'F16': return 'F16';
    case 'f32': case 'F32': return 'F32';
  }
  throw new Error(`scale dtype "${d}" is not supported (expected bf16, f16 or f32)`);
}

export function toScaleDtype(d: FloatDType | ScaleDtype | string): ScaleDtype {
  return toFloatDType(d).toLowerCase() as ScaleDtype;
}

function checkBits(bits: number): void {
  if (!(AFFINE_BITS as readonly number[]).includes(bits)) {
    throw new Error(`unsupported bits ${bits} (expected one of ${AFFINE_BITS.join(', ')})`);
  }
}

function checkShape(rows: number, cols: number, bits: number): void {
  checkBits(bits);
  if (!Number.isInteger(rows) || rows < 0 || !Number.isInteger(cols) || cols < 0) {
    throw new Error(`rows and cols must be non-negative integers, found rows=${rows} cols=${cols}`);
  }
  if ((cols * bits) % 32 !== 0) {
    throw new Error(`a row of ${cols} ${bits}-bit values is not a whole number of 32-bit words (cols·bits = ${cols * bits})`);
  }
}

function checkGroup(cols: number, groupSize: number): void {
  if (!(AFFINE_GROUPS as readonly number[]).includes(groupSize)) {
    throw new Error(`unsupported group size ${groupSize} (expected one of ${AFFINE_GROUPS.join(', ')})`);
  }
  if (cols % groupSize !== 0) throw new Error(`cols ${cols} is not a multiple of the group size ${groupSize}`);
}

/** Words per row of packed codes. */
export function packedCols(cols: number, bits: number): number {
  return (cols * bits) / 32;
}

/**
 * Pack codes [rows, cols] into per-row LSB-first bit streams (spec §5.3): element j of a row occupies stream
 * bits [j·bits, (j+1)·bits), stream bit p being bit p%32 of word p/32 of that row.
 */
export function packBits(codes: Uint8Array | ArrayLike<number>, rows: number, cols: number, bits: number): Uint32Array {
  checkShape(rows, cols, bits);
  if (codes.length !== rows * cols) throw new Error(`packBits: expected ${rows}·${cols} = ${rows * cols} codes, found ${codes.length}`);
  const wpr = packedCols(cols, bits);
  const out = new Uint32Array(rows * wpr);
  const max = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    const base = r * wpr;
    for (let j = 0; j < cols; j++) {
      const q = codes[r * cols + j];
      if (!(q >= 0 && q <= max && Number.isInteger(q))) {
        throw new Error(`packBits: code ${q} at row ${r}, column ${j} does not fit in ${bits} bits`);
      }
      const p = j * bits;
      const w = base + (p >>> 5);
      const off = p & 31;
      out[w] |= q << off;
      if (off + bits > 32) out[w + 1] |= q >>> (32 - off);
    }
  }
  return out;
}

/** Inverse of packBits. */
export function unpackBits(words: Uint32Array, rows: number, cols: number, bits: number): Uint8Array {
  checkShape(rows, cols, bits);
  const wpr = packedCols(cols, bits);
  if (words.length !== rows * wpr) {
    throw new Error(`unpackBits: expected ${rows}·${wpr} = ${rows * wpr} words for [${rows}, ${cols}] at ${bits} bits, found ${words.length}`);
  }
  const out = new Uint8Array(rows * cols);
  const mask = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    const base = r * wpr;
    for (let j = 0; j < cols; j++) {
      const p = j * bits;
      const w = base + (p >>> 5);
      const off = p & 31;
      let v = words[w] >>> off;
      if (off + bits > 32) v |= words[w + 1] << (32 - off);
      out[r * cols + j] = v & mask;
    }
  }
  return out;
}

/** Scale and bias of one group, exactly as MLX's CPU kernel computes them (all f32). */
export function affineGroupParams(group: ArrayLike<number>, bits: number): { scale: number; bias: number } {
  const nBins = (1 << bits) - 1;
  const eps = fr(1e-7);
  let wmin = Infinity;
  let wmax = -Infinity;
  for (let j = 0; j < group.length; j++) {
    const v = fr(group[j]);
    if (v > wmax) wmax = v;
    if (v < wmin) wmin = v;
  }
  // The grid is anchored at the extreme with the larger magnitude; anchoring at wmax makes the scale negative.
  const anchorMin = Math.abs(wmin) > Math.abs(wmax);
  let scale = Math.max(fr(fr(wmax - wmin) / nBins), eps);
  if (!anchorMin) scale = -scale;
  const edge = anchorMin ? wmin : wmax;
  const q0 = rint(fr(edge / scale));
  let bias = 0;
  if (q0 !== 0) {
    scale = fr(edge / q0);
    bias = edge;
  }
  return { scale, bias };
}

/**
 * MLX affine quantization of a row-major f32 matrix [rows, cols] along its last axis (spec §5.2). Codes are
 * computed from the f32 scale/bias; the stored scale/bias are then rounded to `scaleDtype`, as MLX does.
 */
export function quantizeAffine(
  w: Float32Array, rows: number, cols: number, bits: number, groupSize: number, scaleDtype: ScaleDtype = 'bf16',
): AffineQuantized {
  checkShape(rows, cols, bits);
  checkGroup(cols, groupSize);
  if (w.length !== rows * cols) throw new Error(`quantizeAffine: expected ${rows}·${cols} = ${rows * cols} weights, found ${w.length}`);
  const nBins = (1 << bits) - 1;
  const groups = (rows * cols) / groupSize;
  const scales = new Float32Array(groups);
  const biases = new Float32Array(groups);
  const codes = new Uint8Array(rows * cols);
  for (let g = 0; g < groups; g++) {
    const start = g * groupSize;
    const group = w.subarray(start, start + groupSize);
    for (let j = 0; j < groupSize; j++) {
      if (!Number.isFinite(group[j])) {
        throw new Error(`quantizeAffine: non-finite weight ${group[j]} at row ${Math.floor((start + j) / cols)}, column ${(start + j) % cols}`);
      }
    }
    const { scale, bias } = affineGroupParams(group, bits);
    for (let j = 0; j < groupSize; j++) {
      const q = rint(fr(fr(group[j] - bias) / scale));
      codes[start + j] = Math.min(Math.max(q, 0), nBins);
    }
    scales[g] = scale;
    biases[g] = bias;
  }
  const dt = toFloatDType(scaleDtype);
  return { weight: packBits(codes, rows, cols, bits), scales: encodeFloats(scales, dt), biases: encodeFloats(biases, dt), codes };
}

/** w[r, c] = s[r, c/G] · q[r, c] + b[r, c/G] in f32, with s and b decoded from their stored dtype. */
export function dequantizeAffine(
  weight: Uint32Array, scales: Uint8Array, biases: Uint8Array,
  rows: number, cols: number, bits: number, groupSize: number, scaleDtype: ScaleDtype | FloatDType = 'bf16',
): Float32Array {
  checkShape(rows, cols, bits);
  checkGroup(cols, groupSize);
  const dt = toFloatDType(scaleDtype);
  const s = decodeFloats(scales, dt);
  const b = decodeFloats(biases, dt);
  const groups = (rows * cols) / groupSize;
  if (s.length !== groups || b.length !== groups) {
    throw new Error(`dequantizeAffine: expected ${groups} scales and biases for [${rows}, ${cols}] with group ${groupSize}, found ${s.length} scales and ${b.length} biases`);
  }
  const q = unpackBits(weight, rows, cols, bits);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const g = Math.floor(i / groupSize);
    out[i] = fr(fr(s[g] * q[i]) + b[g]);
  }
  return out;
}
