// Deterministic inputs for the benchmarks: random packed weights, bf16 scales and float activations, made fast
// enough for the 27B lm_head (636 MB at 4 bits) and reproducible, so a max-error figure can be re-run.
// Random bit patterns are valid affine codes; scales, biases and bf16 weights are drawn from bounded exponents so
// every output is finite and of order sqrt(K).

/** xorshift32 words; `seed` 0 is mapped to 1 (xorshift's fixed point). */
export function randomWords(n: number, seed: number): Uint32Array {
  const out = new Uint32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s >>> 0;
  }
  return out;
}

/** `n` random bytes (n rounded up to whole words internally). */
export function randomBytes(n: number, seed: number): Uint8Array {
  return new Uint8Array(randomWords(Math.ceil(n / 4), seed).buffer, 0, n);
}

/**
 * `n` bf16 values ±[2^e, 2^(e+1)) with e = exponent − 127 + (0..span−1): a random sign, a random mantissa and an
 * exponent drawn from `span` (a power of two ≤ 8) consecutive values.
 */
export function randomBf16(n: number, seed: number, exponent: number, span = 1): Uint8Array {
  const w = randomWords(Math.ceil(n / 2), seed);
  const out = new Uint16Array(n);
  const spanMask = span - 1;
  for (let i = 0; i < n; i++) {
    const r = (w[i >>> 1] >>> ((i & 1) * 16)) & 0xffff;
    const e = exponent + ((r >>> 7) & spanMask);
    out[i] = (r & 0x8000) | (e << 7) | (r & 0x7f);
  }
  return new Uint8Array(out.buffer);
}

/** Uniform f32 in [-a, a). */
export function randomFloats(n: number, seed: number, a = 1): Float32Array {
  const w = randomWords(n, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((w[i] / 4294967296) * 2 - 1) * a;
  return out;
}

/** bf16 bytes → f32 (bf16 is the top half of an f32). */
export function bf16ToF32(bytes: Uint8Array): Float32Array {
  const h = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const u = new Uint32Array(h.length);
  for (let i = 0; i < h.length; i++) u[i] = h[i] << 16;
  return new Float32Array(u.buffer);
}

/** `count` distinct indices in [0, n), spread evenly with both ends included (rows checked against the reference). */
export function sampleIndices(n: number, count: number): number[] {
  if (count >= n) return Array.from({ length: n }, (_, i) => i);
  const out = new Set<number>();
  for (let i = 0; i < count; i++) out.add(Math.round((i * (n - 1)) / (count - 1)));
  return [...out];
}

/** max |got − want| (NaN counts as infinite) and max(1, max |want|), the scale it is judged against. */
export function maxAbsError(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; scale: number } {
  if (got.length !== want.length) throw new Error(`maxAbsError: ${got.length} values against ${want.length}`);
  let err = 0;
  let scale = 1;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= err)) err = Number.isNaN(d) ? Infinity : d;
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return { err, scale };
}

/** max |got − want| / max(1, max |want|): the error every row reports (NaN counts as infinite). */
export function relativeMaxError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  const { err, scale } = maxAbsError(got, want);
  return err / scale;
}
