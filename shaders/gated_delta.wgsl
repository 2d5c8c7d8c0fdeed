// Gated delta rule, recurrent form (spec §3.5 steps 3-7), the token loop inside the kernel.
//
// Mapping: one workgroup per (value head h, tile of BV state columns). Columns of S evolve independently given
// k̂, q̂, α, β, so tiles never talk to each other. Invocation (s, jl) owns column j = tile·BV + jl and rows
// i = s + NS·m (m < RPT) of S_h, in registers, for the whole token loop; the state is read and written once.
//
// Per token everything the column needs reduces to five sums over Dk, taken on the RAW q, k of the key head and
// the OLD (undecayed) state, so one workgroup reduction per token suffices:
//   SK_j = Σ_i S_ij k_i,  SQ_j = Σ_i S_ij q_i,  ‖k‖²,  ‖q‖²,  k·q
// With rk = 1/sqrt(‖k‖²+1e-6), rq = Dk^−½/sqrt(‖q‖²+1e-6) (k̂ = rk·k, q̂ = rq·q):
//   e_j = α·rk·SK_j,  δ_j = β(v_j − e_j),  S_ij ← α S_ij + rk k_i δ_j,
//   o_j = Σ_i S_ij(new) q̂_i = α·rq·SQ_j + δ_j·rk·rq·(k·q)
// which is the reference order (decay, read-out, delta, update, read-out after update) expanded algebraically.
// The reduction buffers are double-buffered by token parity, so one barrier per token is enough: token t + 2
// rewrites a buffer only after every invocation has passed token t + 1's barrier, i.e. finished reading it.

override DK: u32 = 128u;
override DV: u32 = 128u;
override BV: u32 = 32u;   // columns per workgroup
override NS: u32 = 8u;    // row slices; BV · NS invocations
override RPT: u32 = 16u;  // rows per invocation = ceil(DK / NS)
const MAXR: u32 = 32u;    // register budget for RPT (DK ≤ NS · 32)

struct Params {
  T: u32,
  Hv: u32,
  ratio: u32,   // Hv / Hk
  convDim: u32,
  keyDim: u32,  // Hk · Dk
  tiles: u32,   // ceil(DV / BV)
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> u: array<f32>;       // [T, convDim] = [q | k | v]
@group(0) @binding(2) var<storage, read> a_in: array<f32>;    // [T, Hv]
@group(0) @binding(3) var<storage, read> b_in: array<f32>;    // [T, Hv]
@group(0) @binding(4) var<storage, read> a_log: array<f32>;   // [Hv]
@group(0) @binding(5) var<storage, read> dt_bias: array<f32>; // [Hv]
@group(0) @binding(6) var<storage, read_write> state: array<f32>; // [Hv, DK, DV]
@group(0) @binding(7) var<storage, read_write> out: array<f32>;   // [T, Hv, DV]

var<workgroup> red_k: array<f32, 2u * NS * BV>;
var<workgroup> red_q: array<f32, 2u * NS * BV>;
var<workgroup> red_s: array<f32, 2u * 3u * NS>;

@compute @workgroup_size(BV * NS)
fn gated_delta(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) tid: u32) {
  let h = wid.x / P.tiles;
  let tile = wid.x - h * P.tiles;
  let jl = tid % BV;
  let s = tid / BV;
  let j = tile * BV + jl;
  let col_ok = j < DV;
  let hk = h / P.ratio;

  var S: array<f32, MAXR>;
  for (var mi = 0u; mi < RPT; mi++) {
    let i = s + NS * mi;
    S[mi] = 0.0;
    if (i < DK && col_ok) {
      S[mi] = state[(h * DK + i) * DV + j];
    }
  }

  let neg_a = -exp(a_log[h]);
  let dtb = dt_bias[h];
  let q_scale = inverseSqrt(f32(DK));
  var kr: array<f32, MAXR>;

  for (var t = 0u; t < P.T; t++) {
    let buf = t & 1u;
    let row = t * P.convDim;
    let qo = row + hk * DK;
    let ko = row + P.keyDim + hk * DK;

    var pk = 0.0;
    var pq = 0.0;
    var sqq = 0.0;
    var skk = 0.0;
    var sqk = 0.0;
    for (var mi = 0u; mi < RPT; mi++) {
      let i = s + NS * mi;
      var qi = 0.0;
      var ki = 0.0;
      if (i < DK) {
        qi = u[qo + i];
        ki = u[ko + i];
      }
      kr[mi] = ki;
      pk += S[mi] * ki;
      pq += S[mi] * qi;
      sqq += qi * qi;
      skk += ki * ki;
      sqk += qi * ki;
    }
    let rb = buf * NS * BV;
    red_k[rb + s * BV + jl] = pk;
    red_q[rb + s * BV + jl] = pq;
    if (jl == 0u) {
      let sb = buf * 3u * NS + s * 3u;
      red_s[sb] = sqq;
      red_s[sb + 1u] = skk;
      red_s[sb + 2u] = sqk;
    }
    workgroupBarrier();

    var SK = 0.0;
    var SQ = 0.0;
    var QQ = 0.0;
    var KK = 0.0;
    var QK = 0.0;
    for (var r = 0u; r < NS; r++) {
      SK += red_k[rb + r * BV + jl];
      SQ += red_q[rb + r * BV + jl];
      let sb = buf * 3u * NS + r * 3u;
      QQ += red_s[sb];
      KK += red_s[sb + 1u];
      QK += red_s[sb + 2u];
    }
    let rk = inverseSqrt(KK + 1e-6);
    let rq = inverseSqrt(QQ + 1e-6) * q_scale;

    let gi = t * P.Hv + h;
    let beta = sigmoid(b_in[gi]);
    let alpha = exp(neg_a * softplus(a_in[gi] + dtb));

    var v = 0.0;
    if (col_ok) {
      v = u[row + 2u * P.keyDim + h * DV + j];
    }
    let delta = beta * (v - alpha * rk * SK);
    let kd = rk * delta;
    for (var mi = 0u; mi < RPT; mi++) {
      S[mi] = alpha * S[mi] + kr[mi] * kd;
    }
    if (s == 0u && col_ok) {
      out[gi * DV + j] = alpha * rq * SQ + kd * rq * QK;
    }
  }

  for (var mi = 0u; mi < RPT; mi++) {
    let i = s + NS * mi;
    if (i < DK && col_ok) {
      state[(h * DK + i) * DV + j] = S[mi];
    }
  }
}
