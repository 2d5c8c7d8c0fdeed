// CPU reference of every GPU kernel, one function per kernel with the same name as its wrapper in src/gpu
// (llm.c style). f64 accumulation throughout; inputs/outputs are Float32Array unless stated otherwise.
// Layouts are row-major and token-major: an activation [T, n] stores token t at [t*n, (t+1)*n).
// These functions define the semantics the WGSL kernels must reproduce; spec section references are to
// ../shared/spec/qwen35-mlx.md.
//
// SKELETON: signatures and semantics fixed here; bodies to be written (see each TODO).

/** y[M, N] = x[M, K] · Wᵀ with W row-major [N, K] (already dequantised to f32). f64 accumulation. */
export function linear(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  throw new Error('TODO');
}

/** out[T, cols] = table row ids[t] (table is a dequantised [rows, cols] matrix). */
export function embedGather(table: Float32Array, ids: ArrayLike<number>, cols: number): Float32Array {
  throw new Error('TODO');
}

/** Per row of length n: y = gain ⊙ x / sqrt(mean(x²) + eps) (spec §3.2; gain is the effective gain). */
export function rmsNorm(x: Float32Array, gain: Float32Array, rows: number, n: number, eps: number): Float32Array {
  throw new Error('TODO');
}

/** Per row of length n: y = gain ⊙ x / sqrt(mean(x²) + eps) ⊙ silu(z) (spec §3.5 step 8; norm first, then gate). */
export function rmsNormGated(x: Float32Array, z: Float32Array, gain: Float32Array, rows: number, n: number, eps: number): Float32Array {
  throw new Error('TODO');
}

/**
 * q_proj output [T, H, 2D] → q [T, H, D] and gate [T, H, D] (spec §3.4 step 1: per head the first D rows are the
 * query, the next D its gate).
 */
export function splitQGate(qg: Float32Array, T: number, H: number, D: number): { q: Float32Array; gate: Float32Array } {
  throw new Error('TODO');
}

/**
 * Partial rotate-half RoPE on x [T, heads, D] (spec §3.4 step 4): for token t at position p0 + t, for i < R/2,
 * θ = pos · theta^(−2i/R), pairs (i, i + R/2); dims ≥ R unchanged. Returns a new array.
 */
export function rope(x: Float32Array, T: number, heads: number, D: number, R: number, p0: number, theta: number): Float32Array {
  throw new Error('TODO');
}

/**
 * Causal GQA attention (spec §3.4 step 6). q [T, H, D]; kCache/vCache [Hkv, maxCtx, D] already holding positions
 * 0 .. p0+T−1 (post-RoPE keys). Query t (position p0+t) attends to positions 0..p0+t. Head h uses kv head
 * floor(h / (H/Hkv)). scale = 1/sqrt(D). Returns out [T, H, D].
 */
export function attention(
  q: Float32Array, kCache: Float32Array, vCache: Float32Array,
  T: number, H: number, Hkv: number, D: number, p0: number, maxCtx: number,
): Float32Array {
  throw new Error('TODO');
}

/** out = a ⊙ sigmoid(gate), elementwise (spec §3.4 step 7). */
export function sigmoidGateMul(a: Float32Array, gate: Float32Array): Float32Array {
  throw new Error('TODO');
}

/**
 * Causal depthwise conv + SiLU (spec §3.5 step 2). m [T, C] pre-conv rows; state [Kc−1, C] the previous Kc−1
 * pre-conv rows, oldest first (zeros at sequence start); w [C, Kc] with w[c, Kc−1] multiplying the current token.
 * out[t, c] = silu(Σ_j w[c, j] · m_{t−(Kc−1)+j}[c]). Returns out and the new state (last Kc−1 rows of cat(state, m)).
 */
export function conv1dCausal(
  m: Float32Array, state: Float32Array, w: Float32Array, T: number, C: number, Kc: number,
): { out: Float32Array; state: Float32Array } {
  throw new Error('TODO');
}

export interface GdnDims { Hk: number; Hv: number; Dk: number; Dv: number }

/**
 * The whole GDN core after the conv, recurrent form, for T tokens (spec §3.5 steps 3-7):
 * u [T, convDim] = conv output rows [q (Hk·Dk) | k (Hk·Dk) | v (Hv·Dv)]; a, b [T, Hv] projections;
 * aLog, dtBias [Hv]; state [Hv, Dk, Dv] f32 (element (h, i, j) at (h·Dk + i)·Dv + j), updated IN PLACE.
 * Per token and value head h (key head hk = floor(h / (Hv/Hk))):
 *   k̂ = k / sqrt(Σk² + 1e-6);  q̂ = q / sqrt(Σq² + 1e-6) · Dk^−½     (HF l2norm form, spec step 4)
 *   β = sigmoid(b[h]);  g = −exp(aLog[h]) · softplus(a[h] + dtBias[h])  (softplus(x) = x for x > 20);  α = exp(g)
 *   S ← α S;  e = Sᵀk̂;  δ = β (v − e);  S ← S + k̂ δᵀ;  o = Sᵀ q̂
 * Returns o [T, Hv, Dv].
 */
export function gatedDelta(
  u: Float32Array, a: Float32Array, b: Float32Array, aLog: Float32Array, dtBias: Float32Array,
  state: Float32Array, T: number, dims: GdnDims,
): Float32Array {
  throw new Error('TODO');
}

/** Same inputs, outputs and in-place state update as gatedDelta, computed with the chunked form of spec §4. */
export function gatedDeltaChunked(
  u: Float32Array, a: Float32Array, b: Float32Array, aLog: Float32Array, dtBias: Float32Array,
  state: Float32Array, T: number, dims: GdnDims, chunk?: number,
): Float32Array {
  throw new Error('TODO');
}

/** out = silu(gate) ⊙ up, elementwise. */
export function swiglu(gate: Float32Array, up: Float32Array): Float32Array {
  throw new Error('TODO');
}

/** out = a + b, elementwise. */
export function add(a: Float32Array, b: Float32Array): Float32Array {
  throw new Error('TODO');
}
