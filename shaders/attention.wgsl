// Causal GQA attention over a [Hkv, maxCtx, D] KV cache (spec §3.4 step 6), flash style: online softmax over
// key tiles, so no per-query score array and any context length.
//
// Rows: for kv head g the query rows are ρ = t·group + j (head h = g·group + j), so the heads sharing a kv
// head share every K/V tile a workgroup stages. A workgroup takes BQ consecutive rows of one kv head and one
// split (a contiguous key range); invocation (r, lane) owns row r and dims d = lane + TPR·e, holding q and the
// output accumulator in registers. Per tile of BK keys: stage K → per-lane partial dots → reduce over lanes →
// stage V (same buffer) → online-softmax update. Decode (T = 1) gets its parallelism from splits (flash
// decoding); attn_combine then merges the per-split (m, l, acc) triples. Prefill usually runs with one split and
// writes the normalised output directly.

override D: u32 = 256u;
override BQ: u32 = 8u;    // query rows per workgroup
override TPR: u32 = 32u;  // invocations per row
override BK: u32 = 8u;    // keys per tile
override E: u32 = 8u;     // ceil(D / TPR) dims per invocation
override SPLIT: bool = false;
// Multiply the output by σ(gate) (spec §3.4 step 7), the gate read from q_proj's output [T, H, 2D] at offset D
// of each head row: the output gate needs no pass of its own.
override GATE: bool = false;
const MAXE: u32 = 8u;
// Finite "minus infinity": WGSL implementations may assume no infinities, so masking never relies on them.
const NEG: f32 = -1.0e30;
const LIVE: f32 = -1.0e29;

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  group: u32,     // H / Hkv
  _p0: u32,       // was p0: now S.p0
  maxCtx: u32,
  _splitLen: u32, // keys per split: derived from S.p0 below
  nsplit: u32,
  rowBlocks: u32, // ceil(T · group / BQ)
  scale: f32,
  _pad0: u32,
  _pad1: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;       // [T, H, D]
@group(0) @binding(2) var<storage, read> kc: array<f32>;      // [Hkv, maxCtx, D]
@group(0) @binding(3) var<storage, read> vc: array<f32>;      // [Hkv, maxCtx, D]
@group(0) @binding(4) var<storage, read_write> dst: array<f32>; // out [T, H, D], or acc [nsplit, T·H, D] when SPLIT
@group(0) @binding(5) var<storage, read_write> ml: array<f32>;  // SPLIT only: (m, l) [nsplit, T·H, 2]
@group(0) @binding(10) var<storage, read> qg: array<f32>;       // GATE only: q_proj output [T, H, 2D]

// The finished output row `row` = t·H + h at dim d, gated when GATE.
fn gated(v: f32, row: u32, d: u32, dim: u32) -> f32 {
  if (GATE) {
    return v * sigmoid(qg[row * 2u * dim + dim + d]);
  }
  return v;
}

var<workgroup> kv: array<f32, BK * D>;
// Lane partials of the q·k dots; after the lane reduction slot (r·BK + k)·TPR holds row r's score for key k.
var<workgroup> red: array<f32, BQ * BK * TPR>;

@compute @workgroup_size(BQ * TPR)
fn attn(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) tid: u32) {
  let wg = wid.x + wid.y * nwg.x;
  let blk = wg % P.rowBlocks;
  let rest = wg / P.rowBlocks;
  let g = rest % P.Hkv;
  let split = rest / P.Hkv;
  if (split >= P.nsplit) { return; } // grid padding

  let nthreads = BQ * TPR;
  let r = tid / TPR;
  let lane = tid % TPR;
  let rows = P.T * P.group;
  let rho = blk * BQ + r;
  let valid = rho < rows;
  let t = rho / P.group;
  let h = g * P.group + (rho % P.group);

  // Keys this workgroup may need: up to the last query row's position, within this split.
  let last_t = (min(blk * BQ + BQ, rows) - 1u) / P.group;
  // Keys 0 .. p0+T−1 in nsplit ranges of a multiple of BK keys; the trailing splits may be empty (they write
  // (NEG, 0, 0), which the combine drops), so one split count serves every position.
  let kv_len = S.p0 + P.T;
  let split_len = ((kv_len + P.nsplit - 1u) / P.nsplit + BK - 1u) / BK * BK;
  let k_start = split * split_len;
  let k_end = min(k_start + split_len, S.p0 + last_t + 1u);

  var qr: array<f32, MAXE>;
  var acc: array<f32, MAXE>;
  let qo = (t * P.H + h) * D;
  for (var e = 0u; e < E; e++) {
    let d = lane + TPR * e;
    qr[e] = 0.0;
    acc[e] = 0.0;
    if (valid && d < D) {
      qr[e] = q[qo + d] * P.scale;
    }
  }
  var m = NEG;
  var l = 0.0;
  let kv_base = g * P.maxCtx * D;

  for (var k0 = k_start; k0 < k_end; k0 += BK) {
    for (var i = tid; i < BK * D; i += nthreads) {
      let tau = k0 + i / D;
      var val = 0.0;
      if (tau < k_end) {
        val = kc[kv_base + tau * D + (i % D)];
      }
      kv[i] = val;
    }
    workgroupBarrier();

    for (var kk = 0u; kk < BK; kk++) {
      var p = 0.0;
      for (var e = 0u; e < E; e++) {
        let d = lane + TPR * e;
        if (d < D) {
          p += qr[e] * kv[kk * D + d];
        }
      }
      red[(r * BK + kk) * TPR + lane] = p;
    }
    workgroupBarrier();

    for (var i = tid; i < BK * D; i += nthreads) {
      let tau = k0 + i / D;
      var val = 0.0;
      if (tau < k_end) {
        val = vc[kv_base + tau * D + (i % D)];
      }
      kv[i] = val;
    }
    if (tid < BQ * BK) {
      // This invocation reads and then overwrites only its own TPR-slot segment, so no race.
      let base = tid * TPR;
      var sc = 0.0;
      for (var x = 0u; x < TPR; x++) {
        sc += red[base + x];
      }
      let rr = blk * BQ + tid / BK;
      let tau = k0 + tid % BK;
      let ok = rr < rows && tau < k_end && tau <= S.p0 + rr / P.group;
      red[base] = select(NEG, sc, ok);
    }
    workgroupBarrier();

    var mt = NEG;
    for (var kk = 0u; kk < BK; kk++) {
      mt = max(mt, red[(r * BK + kk) * TPR]);
    }
    let mn = max(m, mt);
    if (mn > LIVE) {
      // m may still be NEG here: exp(NEG − mn) underflows to exactly 0 and clears the empty accumulator.
      let corr = exp(m - mn);
      l *= corr;
      for (var e = 0u; e < E; e++) {
        acc[e] *= corr;
      }
      for (var kk = 0u; kk < BK; kk++) {
        let sc = red[(r * BK + kk) * TPR];
        if (sc > LIVE) {
          let pk = exp(sc - mn);
          l += pk;
          for (var e = 0u; e < E; e++) {
            let d = lane + TPR * e;
            if (d < D) {
              acc[e] += pk * kv[kk * D + d];
            }
          }
        }
      }
      m = mn;
    }
    workgroupBarrier();
  }

  if (!valid) { return; }
  let orow = t * P.H + h;
  if (SPLIT) {
    let prow = split * P.T * P.H + orow;
    for (var e = 0u; e < E; e++) {
      let d = lane + TPR * e;
      if (d < D) {
        dst[prow * D + d] = acc[e];
      }
    }
    if (lane == 0u) {
      ml[prow * 2u] = m;
      ml[prow * 2u + 1u] = l;
    }
  } else {
    // Without splits key 0 is always in range and unmasked, so l ≥ 1 here.
    let inv = 1.0 / l;
    for (var e = 0u; e < E; e++) {
      let d = lane + TPR * e;
      if (d < D) {
        dst[orow * D + d] = gated(acc[e] * inv, orow, d, D);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Merge of the per-split partial softmaxes: out = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s.
// One workgroup per output row (t, h). Splits that saw no visible key carry (NEG, 0, 0) and drop out.

const CWG: u32 = 64u;
const MAX_SPLITS: u32 = 256u;

struct CombineParams {
  rows: u32,   // T · H
  nsplit: u32,
  D: u32,
  _pad: u32,
}

@group(0) @binding(6) var<uniform> C: CombineParams;
@group(0) @binding(7) var<storage, read> pacc: array<f32>;
@group(0) @binding(8) var<storage, read> pml: array<f32>;
@group(0) @binding(9) var<storage, read_write> out: array<f32>;

var<workgroup> weight: array<f32, MAX_SPLITS>;

@compute @workgroup_size(CWG)
fn attn_combine(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= C.rows) { return; }
  var mx = NEG;
  for (var s = 0u; s < C.nsplit; s++) {
    mx = max(mx, pml[(s * C.rows + row) * 2u]);
  }
  for (var s = lid; s < C.nsplit; s += CWG) {
    weight[s] = exp(pml[(s * C.rows + row) * 2u] - mx);
  }
  workgroupBarrier();
  var den = 0.0;
  for (var s = 0u; s < C.nsplit; s++) {
    den += weight[s] * pml[(s * C.rows + row) * 2u + 1u];
  }
  let inv = 1.0 / den;
  for (var d = lid; d < C.D; d += CWG) {
    var a = 0.0;
    for (var s = 0u; s < C.nsplit; s++) {
      a += weight[s] * pacc[(s * C.rows + row) * C.D + d];
    }
    out[row * C.D + d] = gated(a * inv, row, d, C.D);
  }
}
