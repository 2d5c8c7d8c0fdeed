// Element types of safetensors files and the float conversions the loader and the quantizer need.
// All multi-byte data is little-endian on disk; typed arrays are only used on copies that are known to be
// aligned, because tensor data inside a file can start at any byte offset.

/** Every dtype string the safetensors format defines, with its element size in bytes. */
export const DTYPE_BYTES = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
} as const;

export type DType = keyof typeof DTYPE_BYTES;
export type FloatDType = 'BF16' | 'F16' | 'F32';

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_BYTES, s);
}

export function isFloatDType(s: unknown): s is FloatDType {
  return s === 'BF16' || s === 'F16' || s === 'F32';
}

export function dtypeBytes(d: DType): number {
  return DTYPE_BYTES[d];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** bf16 bit pattern of x rounded to nearest, ties to even. NaN stays NaN (quiet bit forced, sign kept). */
export function f32ToBf16Bits(x: number): number {
  const b = f32Bits(x);
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x007fffff) !== 0) {
    // Truncating a NaN whose payload sits only in the low 16 bits would give an infinity.
    return ((b >>> 16) | 0x0040) & 0xffff;
  }
  const lsb = (b >>> 16) & 1;
  // Overflow of the addition into the exponent is exactly the round-up-to-infinity case.
  return ((b + 0x7fff + lsb) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

/** x rounded to the nearest bf16 value, returned as a number. */
export function roundBf16(x: number): number {
  return bf16BitsToF32(f32ToBf16Bits(x));
}

/** IEEE binary16 bit pattern of x, round to nearest even, with subnormals, overflow to ±inf, NaN kept. */
export function f32ToF16Bits(x: number): number {
  const b = f32Bits(x);
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const man = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man !== 0 ? 0x200 | (man >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the full significand (implicit 1 included) right and round.
    if (e < -10) return sign;
    const m = man | 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let h = m >>> shift;
    if (rest > half || (rest === half && (h & 1) === 1)) h += 1;
    return sign | h; // a carry into bit 10 correctly yields the smallest normal
  }
  let h = (e << 10) | (man >>> 13);
  const rest = man & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h += 1; // carry may reach infinity: correct
  return sign | h;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const man = h & 0x3ff;
  if (exp === 0) return sign * man * 2 ** -24;
  if (exp === 0x1f) return man ? NaN : sign * Infinity;
  return sign * (1 + man / 1024) * 2 ** (exp - 15);
}

/** A copy of `bytes` whose start is aligned for any typed-array view. */
function aligned(bytes: Uint8Array, align: number): Uint8Array {
  return bytes.byteOffset % align === 0 ? bytes : bytes.slice();
}

/** Decode raw little-endian BF16 / F16 / F32 bytes into f32 values. */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDType | string): Float32Array {
  const size = dtype === 'F32' ? 4 : dtype === 'BF16' || dtype === 'F16' ? 2 : 0;
  if (size === 0) throw new Error(`decodeFloats: dtype ${dtype} is not a float type (expected BF16, F16 or F32)`);
  if (bytes.byteLength % size !== 0) {
    throw new Error(`decodeFloats: ${bytes.byteLength} bytes is not a whole number of ${dtype} values (${size} bytes each)`);
  }
  const a = aligned(bytes, size);
  if (dtype === 'F32') return new Float32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
  const h = new Uint16Array(a.buffer, a.byteOffset, a.byteLength / 2);
  const out = new Float32Array(h.length);
  if (dtype === 'BF16') {
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < h.length; i++) o[i] = h[i] << 16;
  } else {
    for (let i = 0; i < h.length; i++) out[i] = f16BitsToF32(h[i]);
  }
  return out;
}

/** Encode f32 values (rounded to nearest even where narrowing) as raw little-endian bytes of `dtype`. */
export function encodeFloats(values: ArrayLike<number>, dtype: FloatDType | string): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(Float32Array.from(values).buffer);
  if (dtype !== 'BF16' && dtype !== 'F16') {
    throw new Error(`encodeFloats: dtype ${dtype} is not a float type (expected BF16, F16 or F32)`);
  }
  const h = new Uint16Array(values.length);
  const enc = dtype === 'BF16' ? f32ToBf16Bits : f32ToF16Bits;
  for (let i = 0; i < values.length; i++) h[i] = enc(values[i]);
  return new Uint8Array(h.buffer);
}

/** Raw little-endian U32 bytes → Uint32Array (copying when unaligned). */
export function decodeU32(bytes: Uint8Array): Uint32Array {
  if (bytes.byteLength % 4 !== 0) throw new Error(`decodeU32: ${bytes.byteLength} bytes is not a multiple of 4`);
  const a = aligned(bytes, 4);
  return new Uint32Array(a.buffer, a.byteOffset, a.byteLength / 4);
}
