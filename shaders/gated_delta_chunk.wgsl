// Gated delta rule, chunked WY form for prefill (spec §4, C = 64), as two kernels over one segment of tokens:
//
//   gdn_chunk_prep  one workgroup per (chunk, value head), all chunks in parallel. Per chunk it builds
//                   A_ij = β_i (k̂_i·k̂_j) e^{Γ_i−Γ_j} (i > j) and Mq_ij = (q̂_i·k̂_j) e^{Γ_i−Γ_j} (j ≤ i), then
//                   W = (I + A)^−1 diag(βγ) K̂ and U = (I + A)^−1 diag(β) V, and per row the scales the scan needs.
//   gdn_chunk_scan  one workgroup per (value head, tile of BV state columns), chunks in order; the state tile
//                   S₀ (Dk × BV) stays in workgroup memory for the whole segment:
//                     Vn = U − W S₀,  O = diag(γ) Q̂ S₀ + Mq Vn,  S₁ = γ_C S₀ + (diag(e^{Γ_C−Γ}) K̂)ᵀ Vn.
//
// Why the norms never materialise: k̂ = rk·k and q̂ = rq·q with per-row scalars (rk = 1/sqrt(‖k‖²+1e-6),
// rq = Dk^−½/sqrt(‖q‖²+1e-6), as gated_delta.wgsl), so the Gram matrices are taken on the raw rows and scaled
// afterwards, and the scan reads raw q, k from u with the row scales qs_i = rq_i γ_i, ks_i = rk_i e^{Γ_C−Γ_i}.
//
// (I + A)^−1 is never formed: the right-hand sides B = [diag(βγ)K̂ | diag(β)V] (C × (Dk+Dv)) are solved by forward
// substitution, X_i = B_i − Σ_{m<i} A_im X_m, one invocation per column. Columns are independent, so the solve
// needs no barrier, and every invocation reads the same A_im at the same time (a broadcast). A is kept packed
// (strictly lower, C(C−1)/2 = 2016 floats) because the full 64 × 64 matrix alone would fill the default 16 KiB
// of workgroup storage; the Gram tiles that precede it share the same array.
//
// Padded rows (token ≥ T in the last chunk) behave as spec §4 says (k = q = v = 0, β = g = 0), but are simply
// skipped: their A row is zero, so they would not change any valid row, and their outputs are discarded.
// Scratch layout, per segment: hc = h·nch + c; W [hc, C, Dk], U [hc, C, Dv], Mq [hc, C, C], rs [hc, C, 4] =
// (qs, ks, γ_C, unused).

override DK: u32 = 128u;
override DV: u32 = 128u;
override BV: u32 = 16u;   // scan: state columns per workgroup
override NR: u32 = 16u;   // scan: row groups, BV · NR = 256 invocations
const C: u32 = 64u;       // chunk length (spec §4)
const WG: u32 = 256u;
const KT: u32 = 16u;      // prep: Dk slice per Gram pass; 2 · C · KT = 2048 floats = the A array's size
const MAXO: u32 = 8u;     // scan: output rows per invocation, ceil(C / NR) (NR ≥ 8)

struct Params {
  T: u32,       // tokens of the whole call
  t0: u32,      // first token of this segment (a multiple of C)
  nch: u32,     // chunks in this segment
  Hv: u32,
  ratio: u32,   // Hv / Hk
  convDim: u32,
  keyDim: u32,  // Hk · Dk
  tiles: u32,   // ceil(DV / BV)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;       // [T, convDim] = [q | k | v]
@group(0) @binding(2) var<storage, read> a_in: array<f32>;    // [T, Hv]
@group(0) @binding(3) var<storage, read> b_in: array<f32>;    // [T, Hv]
@group(0) @binding(4) var<storage, read> a_log: array<f32>;   // [Hv]
@group(0) @binding(5) var<storage, read> dt_bias: array<f32>; // [Hv]
@group(0) @binding(6) var<storage, read_write> state: array<f32>; // [Hv, DK, DV]
@group(0) @binding(7) var<storage, read_write> out: array<f32>;   // [T, Hv, DV]
@group(0) @binding(8) var<storage, read_write> Wm: array<f32>;    // [hc, C, DK]
@group(0) @binding(9) var<storage, read_write> Um: array<f32>;    // [hc, C, DV]
@group(0) @binding(10) var<storage, read_write> Mq: array<f32>;   // [hc, C, C]
@group(0) @binding(11) var<storage, read_write> rs: array<f32>;   // [hc, C, 4]

// ---------------------------------------------------------------------------------------------------------------
// prep

var<workgroup> sm: array<f32, 2048>;   // norm partials, then Gram tiles K | Q [C, KT], then A packed
var<workgroup> s_beta: array<f32, C>;
var<workgroup> s_g: array<f32, C>;
var<workgroup> s_G: array<f32, C>;     // Γ_i = Σ_{j≤i} g_j
var<workgroup> s_rk: array<f32, C>;
var<workgroup> s_rq: array<f32, C>;

@compute @workgroup_size(WG)
fn gdn_chunk_prep(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) tid: u32) {
  let hc = wid.x + wid.y * nwg.x;
  if (hc >= P.Hv * P.nch) { return; }
  let h = hc / P.nch;
  let c0 = P.t0 + (hc - h * P.nch) * C;
  let nrows = min(C, P.T - c0);
  let qoff = (h / P.ratio) * DK;
  let koff = P.keyDim + qoff;

  // ‖q_i‖², ‖k_i‖²: four invocations per row.
  {
    let i = tid / 4u;
    var qq = 0.0;
    var kk = 0.0;
    if (i < nrows) {
      let row = (c0 + i) * P.convDim;
      for (var d = tid % 4u; d < DK; d += 4u) {
        let qv = u[row + qoff + d];
        let kv = u[row + koff + d];
        qq += qv * qv;
        kk += kv * kv;
      }
    }
    sm[tid] = qq;
    sm[WG + tid] = kk;
  }
  workgroupBarrier();
  if (tid < C) {
    var beta = 0.0;
    var g = 0.0;
    var rk = 0.0;
    var rq = 0.0;
    if (tid < nrows) {
      let p = 4u * tid;
      let QQ = (sm[p] + sm[p + 1u]) + (sm[p + 2u] + sm[p + 3u]);
      let KK = (sm[WG + p] + sm[WG + p + 1u]) + (sm[WG + p + 2u] + sm[WG + p + 3u]);
      rk = inverseSqrt(KK + 1e-6);
      rq = inverseSqrt(QQ + 1e-6) * inverseSqrt(f32(DK));
      let gi = (c0 + tid) * P.Hv + h;
      beta = sigmoid(b_in[gi]);
      g = -exp(a_log[h]) * softplus(a_in[gi] + dt_bias[h]);
    }
    s_beta[tid] = beta;
    s_g[tid] = g;
    s_rk[tid] = rk;
    s_rq[tid] = rq;
  }
  workgroupBarrier();
  if (tid < C) {
    var G = 0.0;
    for (var j = 0u; j <= tid; j++) { G += s_g[j]; }
    s_G[tid] = G;
  }

  // Raw Gram matrices K Kᵀ and Q Kᵀ: invocation (ti, tj) owns rows ti + 16r, columns tj + 16c (r, c < 4).
  let ti = tid / 16u;
  let tj = tid % 16u;
  var gk: array<f32, 16>;
  var gq: array<f32, 16>;
  for (var e = 0u; e < 16u; e++) {
    gk[e] = 0.0;
    gq[e] = 0.0;
  }
  for (var d0 = 0u; d0 < DK; d0 += KT) {
    workgroupBarrier();   // the previous slice (or the norm partials) has been read
    for (var e = tid; e < C * KT; e += WG) {
      let i = e / KT;
      let d = d0 + e % KT;
      var kv = 0.0;
      var qv = 0.0;
      if (i < nrows && d < DK) {
        let row = (c0 + i) * P.convDim;
        kv = u[row + koff + d];
        qv = u[row + qoff + d];
      }
      sm[e] = kv;
      sm[C * KT + e] = qv;
    }
    workgroupBarrier();
    for (var dd = 0u; dd < KT; dd++) {
      var kj: array<f32, 4>;
      for (var c = 0u; c < 4u; c++) { kj[c] = sm[(tj + 16u * c) * KT + dd]; }
      for (var r = 0u; r < 4u; r++) {
        let ki = sm[(ti + 16u * r) * KT + dd];
        let qi = sm[C * KT + (ti + 16u * r) * KT + dd];
        for (var c = 0u; c < 4u; c++) {
          gk[4u * r + c] += ki * kj[c];
          gq[4u * r + c] += qi * kj[c];
        }
      }
    }
  }
  workgroupBarrier();   // every Gram read of sm is done before A overwrites it

  let mbase = hc * C;
  for (var r = 0u; r < 4u; r++) {
    let i = ti + 16u * r;
    for (var c = 0u; c < 4u; c++) {
      let j = tj + 16u * c;
      if (j <= i && i < nrows) {
        // Γ_i − Γ_j ≤ 0 for j ≤ i: the exponent never overflows.
        let decay = exp(s_G[i] - s_G[j]);
        Mq[(mbase + i) * C + j] = s_rq[i] * s_rk[j] * gq[4u * r + c] * decay;
        if (j < i) {
          sm[(i * (i - 1u)) / 2u + j] = s_beta[i] * s_rk[i] * s_rk[j] * gk[4u * r + c] * decay;
        }
      }
    }
  }
  workgroupBarrier();

  // Forward substitution, one column of [W | U] per invocation.
  for (var col = tid; col < DK + DV; col += WG) {
    var x: array<f32, C>;
    for (var i = 0u; i < nrows; i++) {
      let row = (c0 + i) * P.convDim;
      var acc: f32;
      if (col < DK) {
        acc = s_beta[i] * exp(s_G[i]) * s_rk[i] * u[row + koff + col];
      } else {
        acc = s_beta[i] * u[row + 2u * P.keyDim + h * DV + (col - DK)];
      }
      let abase = (i * (i - 1u)) / 2u;
      for (var m = 0u; m < i; m++) { acc -= sm[abase + m] * x[m]; }
      x[i] = acc;
      if (col < DK) {
        Wm[(mbase + i) * DK + col] = acc;
      } else {
        Um[(mbase + i) * DV + (col - DK)] = acc;
      }
    }
  }

  if (tid < nrows) {
    let GC = s_G[nrows - 1u];   // padded rows would add g = 0, so this is Γ_C
    let o = (mbase + tid) * 4u;
    rs[o] = s_rq[tid] * exp(s_G[tid]);
    rs[o + 1u] = s_rk[tid] * exp(GC - s_G[tid]);
    rs[o + 2u] = exp(GC);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// scan

var<workgroup> s_S: array<f32, DK * BV>;   // S₀[:, tile], row-major (d, jl)
var<workgroup> s_V: array<f32, C * BV>;    // Vn[:, tile]

@compute @workgroup_size(WG)
fn gdn_chunk_scan(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) tid: u32) {
  let flat = wid.x + wid.y * nwg.x;
  if (flat >= P.Hv * P.tiles) { return; }
  let h = flat / P.tiles;
  let tile = flat - h * P.tiles;
  let jl = tid % BV;
  let r0 = tid / BV;
  let j = tile * BV + jl;
  let col_ok = j < DV;
  let qoff = (h / P.ratio) * DK;
  let koff = P.keyDim + qoff;

  for (var d = r0; d < DK; d += NR) {
    var s = 0.0;
    if (col_ok) { s = state[(h * DK + d) * DV + j]; }
    s_S[d * BV + jl] = s;
  }
  workgroupBarrier();

  for (var c = 0u; c < P.nch; c++) {
    let c0 = P.t0 + c * C;
    let nrows = min(C, P.T - c0);
    let mbase = (h * P.nch + c) * C;

    // Vn_i = U_i − W_i S₀ and the inter-chunk part of o_i, qs_i · q_i S₀, in one pass over S₀.
    var o: array<f32, MAXO>;
    var m = 0u;
    for (var i = r0; i < C; i += NR) {
      var v = 0.0;
      var pq = 0.0;
      if (i < nrows && col_ok) {
        let wrow = (mbase + i) * DK;
        let qrow = (c0 + i) * P.convDim + qoff;
        v = Um[(mbase + i) * DV + j];
        for (var d = 0u; d < DK; d++) {
          let s = s_S[d * BV + jl];
          v -= Wm[wrow + d] * s;
          pq += u[qrow + d] * s;
        }
        pq *= rs[(mbase + i) * 4u];
      }
      s_V[i * BV + jl] = v;
      o[m] = pq;
      m++;
    }
    workgroupBarrier();

    // o_i += Σ_{m≤i} Mq_im Vn_m (intra-chunk, the current token included).
    m = 0u;
    for (var i = r0; i < C; i += NR) {
      if (i < nrows && col_ok) {
        var acc = o[m];
        let mrow = (mbase + i) * C;
        for (var mm = 0u; mm <= i; mm++) { acc += Mq[mrow + mm] * s_V[mm * BV + jl]; }
        out[((c0 + i) * P.Hv + h) * DV + j] = acc;
      }
      m++;
    }

    // S₁ = γ_C S₀ + Σ_i ks_i k_i Vn_iᵀ on the entries this invocation owns (S₀ reads above are behind the barrier).
    let gC = rs[mbase * 4u + 2u];
    for (var d = r0; d < DK; d += NR) {
      var s = gC * s_S[d * BV + jl];
      for (var i = 0u; i < nrows; i++) {
        s += rs[(mbase + i) * 4u + 1u] * u[(c0 + i) * P.convDim + koff + d] * s_V[i * BV + jl];
      }
      s_S[d * BV + jl] = s;
    }
    workgroupBarrier();
  }

  for (var d = r0; d < DK; d += NR) {
    if (col_ok) { state[(h * DK + d) * DV + j] = s_S[d * BV + jl]; }
  }
}
