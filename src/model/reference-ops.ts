// CPU reference of every GPU kernel, one function per kernel with the same name as its wrapper in src/gpu
// (llm.c style). f64 accumulation throughout; inputs/outputs are Float32Array unless stated otherwise.
// Layouts are row-major and token-major: an activation [T, n] stores token t at [t*n, (t+1)*n).
// These functions define the semantics the WGSL kernels must reproduce; spec section references are to
// ../shared/spec/qwen35-mlx.md.
//
// Each op exists twice: `name64` computes in f64 end to end (inputs any numeric array, output Float64Array) so the
// CPU reference model can keep its activations in f64; `name` is the f32-in/f32-out kernel contract, which is the
// f64 computation rounded once at the end (an f32 state is read into f64 and rounded back once per call).

/** Any numeric array; f64 ops read Float32Array and Float64Array alike. */
export type Nums = ArrayLike<number>;
/** A mutable state buffer (the GPU keeps f32, the reference model may keep f64). */
export type StateArray = Float32Array | Float64Array;

const f32 = (x: Float64Array): Float32Array => new Float32Array(x);
const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
const silu = (x: number): number => x * sigmoid(x);
// PyTorch's threshold: above 20 softplus(x) equals x to f32 precision, and the HF reference returns x exactly.
const softplus = (x: number): number => (x > 20 ? x : Math.log1p(Math.exp(x)));

// ---------------------------------------------------------------------------------------------------------------
// f64 forms

export function linear64(x: Nums, w: Nums, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const xo = m * K;
    for (let n = 0; n < N; n++) {
      const wo = n * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += x[xo + k] * w[wo + k];
      y[m * N + n] = s;
    }
  }
  return y;
}

export function embedGather64(table: Nums, ids: ArrayLike<number>, cols: number): Float64Array {
  const out = new Float64Array(ids.length * cols);
  for (let t = 0; t < ids.length; t++) {
    const base = ids[t] * cols;
    for (let c = 0; c < cols; c++) out[t * cols + c] = table[base + c];
  }
  return out;
}

/** 1 / sqrt(mean(x²) + eps) over x[off, off+n). */
function rmsScale(x: Nums, off: number, n: number, eps: number): number {
  let ss = 0;
  for (let j = 0; j < n; j++) ss += x[off + j] * x[off + j];
  return 1 / Math.sqrt(ss / n + eps);
}

export function rmsNorm64(x: Nums, gain: Nums, rows: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const s = rmsScale(x, o, n, eps);
    for (let j = 0; j < n; j++) y[o + j] = gain[j] * (x[o + j] * s);
  }
  return y;
}

export function rmsNormGated64(x: Nums, z: Nums, gain: Nums, rows: number, n: number, eps: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    const o = r * n;
    const s = rmsScale(x, o, n, eps);
    for (let j = 0; j < n; j++) y[o + j] = gain[j] * (x[o + j] * s) * silu(z[o + j]);
  }
  return y;
}

export function splitQGate64(qg: Nums, T: number, H: number, D: number): { q: Float64Array; gate: Float64Array } {
  const q = new Float64Array(T * H * D);
  const gate = new Float64Array(T * H * D);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const src = (t * H + h) * 2 * D;
      const dst = (t * H + h) * D;
      for (let j = 0; j < D; j++) {
        q[dst + j] = qg[src + j];
        gate[dst + j] = qg[src + D + j];
      }
    }
  }
  return { q, gate };
}

export function rope64(x: Nums, T: number, heads: number, D: number, R: number, p0: number, theta: number): Float64Array {
  const y = Float64Array.from(x);
  const half = R / 2;
  for (let t = 0; t < T; t++) {
    const pos = p0 + t;
    for (let i = 0; i < half; i++) {
      const ang = pos * Math.pow(theta, (-2 * i) / R);
      const c = Math.cos(ang);
      const s = Math.sin(ang);
      for (let h = 0; h < heads; h++) {
        const o = (t * heads + h) * D;
        const a = x[o + i];
        const b = x[o + i + half];
        y[o + i] = a * c - b * s;
        y[o + i + half] = b * c + a * s;
      }
    }
  }
  return y;
}

export function attention64(
  q: Nums, kCache: Nums, vCache: Nums,
  T: number, H: number, Hkv: number, D: number, p0: number, maxCtx: number,
): Float64Array {
  const out = new Float64Array(T * H * D);
  const group = H / Hkv;
  const scale = 1 / Math.sqrt(D);
  const scores = new Float64Array(p0 + T);
  for (let t = 0; t < T; t++) {
    const n = p0 + t + 1;
    for (let h = 0; h < H; h++) {
      const g = Math.floor(h / group);
      const qo = (t * H + h) * D;
      let max = -Infinity;
      for (let tau = 0; tau < n; tau++) {
        const ko = (g * maxCtx + tau) * D;
        let s = 0;
        for (let j = 0; j < D; j++) s += q[qo + j] * kCache[ko + j];
        scores[tau] = s * scale;
        if (scores[tau] > max) max = scores[tau];
      }
      let sum = 0;
      for (let tau = 0; tau < n; tau++) {
        scores[tau] = Math.exp(scores[tau] - max);
        sum += scores[tau];
      }
      for (let tau = 0; tau < n; tau++) {
        const p = scores[tau] / sum;
        const vo = (g * maxCtx + tau) * D;
        for (let j = 0; j < D; j++) out[qo + j] += p * vCache[vo + j];
      }
    }
  }
  return out;
}

export function sigmoidGateMul64(a: Nums, gate: Nums): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] * sigmoid(gate[i]);
  return out;
}

export function conv1dCausal64(
  m: Nums, state: Nums, w: Nums, T: number, C: number, Kc: number,
): { out: Float64Array; state: Float64Array } {
  const P = Kc - 1;
  // Rows of cat(state, m): row r < P is state row r, row r ≥ P is token r − P.
  const row = (r: number, c: number): number => (r < P ? state[r * C + c] : m[(r - P) * C + c]);
  const out = new Float64Array(T * C);
  for (let t = 0; t < T; t++) {
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let j = 0; j < Kc; j++) s += w[c * Kc + j] * row(t + j, c);
      out[t * C + c] = silu(s);
    }
  }
  const next = new Float64Array(P * C);
  for (let r = 0; r < P; r++) {
    for (let c = 0; c < C; c++) next[r * C + c] = row(T + r, c);
  }
  return { out, state: next };
}

export interface GdnDims { Hk: number; Hv: number; Dk: number; Dv: number }

/** Per-token inputs of the delta rule after normalisation and gating (spec §3.5 steps 3-5). */
interface GdnInputs {
  q: Float64Array; // [T, Hk, Dk]  q̂ (includes Dk^−½)
  k: Float64Array; // [T, Hk, Dk]  k̂
  v: Float64Array; // [T, Hv, Dv]
  beta: Float64Array; // [T, Hv]
  g: Float64Array; // [T, Hv]  log-decay, ≤ 0
}

function gdnInputs(u: Nums, a: Nums, b: Nums, aLog: Nums, dtBias: Nums, T: number, dims: GdnDims): GdnInputs {
  const { Hk, Hv, Dk, Dv } = dims;
  const keyDim = Hk * Dk;
  const convDim = 2 * keyDim + Hv * Dv;
  const q = new Float64Array(T * keyDim);
  const k = new Float64Array(T * keyDim);
  const v = new Float64Array(T * Hv * Dv);
  const beta = new Float64Array(T * Hv);
  const g = new Float64Array(T * Hv);
  const qScale = 1 / Math.sqrt(Dk);
  for (let t = 0; t < T; t++) {
    const row = t * convDim;
    for (let h = 0; h < Hk; h++) {
      const qo = row + h * Dk;
      const ko = row + keyDim + h * Dk;
      let qq = 0;
      let kk = 0;
      for (let i = 0; i < Dk; i++) {
        qq += u[qo + i] * u[qo + i];
        kk += u[ko + i] * u[ko + i];
      }
      const qn = qScale / Math.sqrt(qq + 1e-6);
      const kn = 1 / Math.sqrt(kk + 1e-6);
      const dst = (t * Hk + h) * Dk;
      for (let i = 0; i < Dk; i++) {
        q[dst + i] = u[qo + i] * qn;
        k[dst + i] = u[ko + i] * kn;
      }
    }
    for (let i = 0; i < Hv * Dv; i++) v[t * Hv * Dv + i] = u[row + 2 * keyDim + i];
    for (let h = 0; h < Hv; h++) {
      beta[t * Hv + h] = sigmoid(b[t * Hv + h]);
      g[t * Hv + h] = -Math.exp(aLog[h]) * softplus(a[t * Hv + h] + dtBias[h]);
    }
  }
  return { q, k, v, beta, g };
}

export function gatedDelta64(
  u: Nums, a: Nums, b: Nums, aLog: Nums, dtBias: Nums,
  state: StateArray, T: number, dims: GdnDims,
): Float64Array {
  const { Hk, Hv, Dk, Dv } = dims;
  const r = Hv / Hk;
  const { q, k, v, beta, g } = gdnInputs(u, a, b, aLog, dtBias, T, dims);
  const S = Float64Array.from(state);
  const o = new Float64Array(T * Hv * Dv);
  const e = new Float64Array(Dv);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < Hv; h++) {
      const s0 = h * Dk * Dv;
      const kq = (t * Hk + Math.floor(h / r)) * Dk;
      const vo = (t * Hv + h) * Dv;
      const alpha = Math.exp(g[t * Hv + h]);
      const bt = beta[t * Hv + h];
      // S ← α S;  e = Sᵀ k̂
      e.fill(0);
      for (let i = 0; i < Dk; i++) {
        const ki = k[kq + i];
        for (let j = 0; j < Dv; j++) {
          const sij = (S[s0 + i * Dv + j] *= alpha);
          e[j] += sij * ki;
        }
      }
      // δ = β (v − e), kept in e;  S ← S + k̂ δᵀ;  o = Sᵀ q̂
      for (let j = 0; j < Dv; j++) e[j] = bt * (v[vo + j] - e[j]);
      for (let i = 0; i < Dk; i++) {
        const ki = k[kq + i];
        const qi = q[kq + i];
        for (let j = 0; j < Dv; j++) {
          const sij = (S[s0 + i * Dv + j] += ki * e[j]);
          o[vo + j] += sij * qi;
        }
      }
    }
  }
  state.set(S);
  return o;
}

export function gatedDeltaChunked64(
  u: Nums, a: Nums, b: Nums, aLog: Nums, dtBias: Nums,
  state: StateArray, T: number, dims: GdnDims, chunk = 64,
): Float64Array {
  const { Hk, Hv, Dk, Dv } = dims;
  const r = Hv / Hk;
  const C = chunk;
  if (!Number.isInteger(C) || C < 1) throw new Error(`gatedDeltaChunked: chunk must be a positive integer, got ${C}`);
  const { q, k, v, beta, g } = gdnInputs(u, a, b, aLog, dtBias, T, dims);
  const S = Float64Array.from(state);
  const o = new Float64Array(T * Hv * Dv);

  // Per-chunk work buffers; padded rows (token ≥ T) stay zero with β = g = 0, so they change nothing.
  const K = new Float64Array(C * Dk);
  const Q = new Float64Array(C * Dk);
  const Vc = new Float64Array(C * Dv);
  const bc = new Float64Array(C);
  const G = new Float64Array(C); // Γ
  const gam = new Float64Array(C); // γ = exp(Γ)
  const toEnd = new Float64Array(C); // exp(Γ_C − Γ_i)
  const A = new Float64Array(C * C);
  const Tm = new Float64Array(C * C);
  const W = new Float64Array(C * Dk);
  const U = new Float64Array(C * Dv);
  const Vn = new Float64Array(C * Dv);
  const QK = new Float64Array(C * C);

  for (let h = 0; h < Hv; h++) {
    const hk = Math.floor(h / r);
    const S0 = S.subarray(h * Dk * Dv, (h + 1) * Dk * Dv);
    for (let c0 = 0; c0 < T; c0 += C) {
      K.fill(0); Q.fill(0); Vc.fill(0); bc.fill(0);
      let acc = 0;
      for (let i = 0; i < C; i++) {
        const t = c0 + i;
        if (t < T) {
          K.set(k.subarray((t * Hk + hk) * Dk, (t * Hk + hk + 1) * Dk), i * Dk);
          Q.set(q.subarray((t * Hk + hk) * Dk, (t * Hk + hk + 1) * Dk), i * Dk);
          Vc.set(v.subarray((t * Hv + h) * Dv, (t * Hv + h + 1) * Dv), i * Dv);
          bc[i] = beta[t * Hv + h];
          acc += g[t * Hv + h];
        }
        // Step A: Γ_i = Σ_{j≤i} g_j, γ_i = exp(Γ_i)
        G[i] = acc;
        gam[i] = Math.exp(acc);
      }

      // Step B: A_ij = β_i (k̂_i·k̂_j) exp(Γ_i − Γ_j) for i > j; QK_ij = (q̂_i·k̂_j) exp(Γ_i − Γ_j) for j ≤ i (mask M).
      A.fill(0); QK.fill(0);
      for (let i = 0; i < C; i++) {
        for (let j = 0; j <= i; j++) {
          const decay = Math.exp(G[i] - G[j]);
          let kk = 0;
          let qk = 0;
          for (let d = 0; d < Dk; d++) {
            kk += K[i * Dk + d] * K[j * Dk + d];
            qk += Q[i * Dk + d] * K[j * Dk + d];
          }
          if (j < i) A[i * C + j] = bc[i] * kk * decay;
          QK[i * C + j] = qk * decay;
        }
      }

      // Step C: T = (I + A)^−1 by rows, T_i = e_i − Σ_{m<i} A_im T_m (T_m is zero beyond column m).
      Tm.fill(0);
      for (let i = 0; i < C; i++) {
        Tm[i * C + i] = 1;
        for (let m = 0; m < i; m++) {
          const aim = A[i * C + m];
          if (aim === 0) continue;
          for (let j = 0; j <= m; j++) Tm[i * C + j] -= aim * Tm[m * C + j];
        }
      }

      // Step D: W = T diag(βγ) K̂,  U = T diag(β) V
      W.fill(0); U.fill(0);
      for (let i = 0; i < C; i++) {
        for (let j = 0; j <= i; j++) {
          const tij = Tm[i * C + j];
          if (tij === 0) continue;
          const wk = tij * bc[j] * gam[j];
          const wv = tij * bc[j];
          for (let d = 0; d < Dk; d++) W[i * Dk + d] += wk * K[j * Dk + d];
          for (let d = 0; d < Dv; d++) U[i * Dv + d] += wv * Vc[j * Dv + d];
        }
      }

      // Step E: Vn = U − W S₀
      for (let i = 0; i < C; i++) {
        for (let d = 0; d < Dv; d++) {
          let ws = 0;
          for (let e = 0; e < Dk; e++) ws += W[i * Dk + e] * S0[e * Dv + d];
          Vn[i * Dv + d] = U[i * Dv + d] - ws;
        }
      }
      // O = diag(γ) Q̂ S₀ + (Q̂K̂ᵀ ⊙ M) Vn, kept for real rows only
      for (let i = 0; i < C && c0 + i < T; i++) {
        const oo = ((c0 + i) * Hv + h) * Dv;
        for (let d = 0; d < Dv; d++) {
          let inter = 0;
          for (let e = 0; e < Dk; e++) inter += Q[i * Dk + e] * S0[e * Dv + d];
          let intra = 0;
          for (let j = 0; j <= i; j++) intra += QK[i * C + j] * Vn[j * Dv + d];
          o[oo + d] = gam[i] * inter + intra;
        }
      }
      // S₁ = γ_C S₀ + (diag(exp(Γ_C − Γ)) K̂)ᵀ Vn
      const gC = gam[C - 1];
      for (let i = 0; i < C; i++) toEnd[i] = Math.exp(G[C - 1] - G[i]);
      for (let e = 0; e < Dk; e++) {
        for (let d = 0; d < Dv; d++) {
          let s = 0;
          for (let i = 0; i < C; i++) s += toEnd[i] * K[i * Dk + e] * Vn[i * Dv + d];
          S0[e * Dv + d] = gC * S0[e * Dv + d] + s;
        }
      }
    }
  }
  state.set(S);
  return o;
}

export function swiglu64(gate: Nums, up: Nums): Float64Array {
  const out = new Float64Array(gate.length);
  for (let i = 0; i < gate.length; i++) out[i] = silu(gate[i]) * up[i];
  return out;
}

export function add64(a: Nums, b: Nums): Float64Array {
  const out = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// f32 kernel contracts

/** y[M, N] = x[M, K] · Wᵀ with W row-major [N, K] (already dequantised to f32). f64 accumulation. */
export function linear(x: Float32Array, w: Float32Array, M: number, N: number, K: number): Float32Array {
  return f32(linear64(x, w, M, N, K));
}

/** out[T, cols] = table row ids[t] (table is a dequantised [rows, cols] matrix). */
export function embedGather(table: Float32Array, ids: ArrayLike<number>, cols: number): Float32Array {
  return f32(embedGather64(table, ids, cols));
}

/** Per row of length n: y = gain ⊙ x / sqrt(mean(x²) + eps) (spec §3.2; gain is the effective gain). */
export function rmsNorm(x: Float32Array, gain: Float32Array, rows: number, n: number, eps: number): Float32Array {
  return f32(rmsNorm64(x, gain, rows, n, eps));
}

/** Per row of length n: y = gain ⊙ x / sqrt(mean(x²) + eps) ⊙ silu(z) (spec §3.5 step 8; norm first, then gate). */
export function rmsNormGated(x: Float32Array, z: Float32Array, gain: Float32Array, rows: number, n: number, eps: number): Float32Array {
  return f32(rmsNormGated64(x, z, gain, rows, n, eps));
}

/**
 * q_proj output [T, H, 2D] → q [T, H, D] and gate [T, H, D] (spec §3.4 step 1: per head the first D rows are the
 * query, the next D its gate).
 */
export function splitQGate(qg: Float32Array, T: number, H: number, D: number): { q: Float32Array; gate: Float32Array } {
  const { q, gate } = splitQGate64(qg, T, H, D);
  return { q: f32(q), gate: f32(gate) };
}

/**
 * Partial rotate-half RoPE on x [T, heads, D] (spec §3.4 step 4): for token t at position p0 + t, for i < R/2,
 * θ = pos · theta^(−2i/R), pairs (i, i + R/2); dims ≥ R unchanged. Returns a new array.
 */
export function rope(x: Float32Array, T: number, heads: number, D: number, R: number, p0: number, theta: number): Float32Array {
  return f32(rope64(x, T, heads, D, R, p0, theta));
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
  return f32(attention64(q, kCache, vCache, T, H, Hkv, D, p0, maxCtx));
}

/** out = a ⊙ sigmoid(gate), elementwise (spec §3.4 step 7). */
export function sigmoidGateMul(a: Float32Array, gate: Float32Array): Float32Array {
  return f32(sigmoidGateMul64(a, gate));
}

/**
 * Causal depthwise conv + SiLU (spec §3.5 step 2). m [T, C] pre-conv rows; state [Kc−1, C] the previous Kc−1
 * pre-conv rows, oldest first (zeros at sequence start); w [C, Kc] with w[c, Kc−1] multiplying the current token.
 * out[t, c] = silu(Σ_j w[c, j] · m_{t−(Kc−1)+j}[c]). Returns out and the new state (last Kc−1 rows of cat(state, m)).
 */
export function conv1dCausal(
  m: Float32Array, state: Float32Array, w: Float32Array, T: number, C: number, Kc: number,
): { out: Float32Array; state: Float32Array } {
  const r = conv1dCausal64(m, state, w, T, C, Kc);
  return { out: f32(r.out), state: f32(r.state) };
}

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
  return f32(gatedDelta64(u, a, b, aLog, dtBias, state, T, dims));
}

/** Same inputs, outputs and in-place state update as gatedDelta, computed with the chunked form of spec §4. */
export function gatedDeltaChunked(
  u: Float32Array, a: Float32Array, b: Float32Array, aLog: Float32Array, dtBias: Float32Array,
  state: Float32Array, T: number, dims: GdnDims, chunk?: number,
): Float32Array {
  return f32(gatedDeltaChunked64(u, a, b, aLog, dtBias, state, T, dims, chunk));
}

/** out = silu(gate) ⊙ up, elementwise. */
export function swiglu(gate: Float32Array, up: Float32Array): Float32Array {
  return f32(swiglu64(gate, up));
}

/** out = a + b, elementwise. */
export function add(a: Float32Array, b: Float32Array): Float32Array {
  return f32(add64(a, b));
}
