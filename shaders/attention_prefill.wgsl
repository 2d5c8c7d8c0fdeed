// Causal GQA attention for prefill (spec §3.4 step 6, gate of step 7), FlashAttention style
// (Dao et al. 2022, "FlashAttention", Algorithm 1: tile Q and K/V, keep the running max m, sum l and the output
// accumulator per query row, rescale by e^(m_old − m_new) when the max grows). Same contract as `attn` in
// attention.wgsl; that kernel is shaped for decode (8 rows, 8 keys a tile, 32 invocations a row joined by a
// serial 32-way sum); this one is shaped for many query rows: 32 rows × 32 keys a tile, so every K/V element
// staged in workgroup memory feeds 32 rows and every q element 32 keys.
//
// Rows: for kv head g the query rows are ρ = t·group + j (head h = g·group + j), as in attention.wgsl, so the
// GQA heads sharing a kv head share each K/V tile. A workgroup owns BQ = 32 consecutive rows of one kv head and
// walks key tiles 0 .. p0 + t_last (p0 from the step uniform, so the grid never depends on the position; tiles
// past the block's last visible key are never visited). Invocation (r, c), r = tid / 16, c = tid % 16, owns
// rows r and r + 16 in both halves of a tile (two rows per invocation: each staged K or V word read feeds two
// FMAs, where one row per invocation read a word per FMA; 1.6× less SwiftShader CPU time at T = 256, H = 8,
// Hkv = 2, D = 256):
//   S = (scale·Q) Kᵀ   scores for keys c and c + 16, accumulated over D in chunks of DC dims, Q and K chunks
//                      staged transposed ([dim][row], [dim][key]) so the inner loop reads consecutive words;
//   O += P V           output dims c + 16e (e < E = ceil(D/16)), V staged in sub-tiles of KC keys.
// The 16 invocations of a row pair each redo the rows' max, sum and exps (64 exps a tile against 8·D FMAs),
// which costs fewer barriers than reducing them once and broadcasting.
//
// Workgroup memory (f32 words): region A holds the Q chunk (DC·BQ), then the scores (BQ·(BK+1), padded so the
// rows of a warp fall in different banks); region B the K chunk (DC·BK), then a V sub-tile (KC·D). With D = 256,
// DC = 64 and KC = 8 that is 2048 + 2048 words = 16 KiB, the WebGPU default limit.

override D: u32 = 256u;
override DC: u32 = 64u;   // dims per staged Q/K chunk, ≤ 64
override KC: u32 = 8u;    // keys per staged V sub-tile, a power of two dividing BK, KC·D ≤ 2048
override E: u32 = 16u;    // ceil(D / LPR) output dims per invocation and row
// Multiply the output by σ(gate) (spec §3.4 step 7), the gate read from q_proj's output [T, H, 2D] at offset D
// of each head row, as attention.wgsl does.
override GATE: bool = false;

const WG: u32 = 256u;
const LPR: u32 = 16u;     // invocations per pair of query rows
const BQ: u32 = 32u;      // 2 · WG / LPR query rows per workgroup
const HALF: u32 = 16u;    // BQ / 2: an invocation's second row is its first + HALF
const BK: u32 = 32u;      // keys per tile
const PS: u32 = 33u;      // BK + 1: row stride of the score tile
const MAXE: u32 = 16u;    // 256 / LPR
// Finite "minus infinity": WGSL implementations may assume no infinities, so masking never relies on them.
const NEG: f32 = -1.0e30;
const LIVE: f32 = -1.0e29;

override SA: u32 = max(DC * BQ, BQ * PS);
override SB: u32 = max(DC * BK, KC * D);

struct Params {
  T: u32,
  H: u32,
  Hkv: u32,
  group: u32,     // H / Hkv
  maxCtx: u32,
  rowBlocks: u32, // ceil(T · group / BQ)
  scale: f32,     // 1 / sqrt(D)
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // [T, H, D]
@group(0) @binding(2) var<storage, read> kc: array<f32>;         // [Hkv, maxCtx, D]
@group(0) @binding(3) var<storage, read> vc: array<f32>;         // [Hkv, maxCtx, D]
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;  // [T, H, D]
@group(0) @binding(10) var<storage, read> qg: array<f32>;        // GATE only: q_proj output [T, H, 2D]

var<workgroup> sm: array<f32, SA + SB>;

// Keys k0 .. k0+KC−1 of V into region B, row-major [key][dim]; keys at or past kEnd (unwritten cache rows,
// possibly NaN) are staged as 0 so a zero probability never meets a NaN.
fn stage_v(tid: u32, kvBase: u32, k0: u32, kEnd: u32) {
  for (var i = tid; i < KC * D; i += WG) {
    let tau = k0 + i / D;
    var val = 0.0;
    if (tau < kEnd) {
      val = vc[kvBase + tau * D + i % D];
    }
    sm[SA + i] = val;
  }
}

// Where query row `rr` of the block starts in q (row-major [T, H, D]).
fn q_row(row0: u32, rr: u32, g: u32) -> u32 {
  let rq = row0 + rr;
  return ((rq / P.group) * P.H + g * P.group + rq % P.group) * D;
}

@compute @workgroup_size(WG)
fn attention_prefill(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                     @builtin(local_invocation_index) tid: u32) {
  let wg = wid.x + wid.y * nwg.x;
  let blk = wg % P.rowBlocks;
  let g = wg / P.rowBlocks;
  if (g >= P.Hkv) { return; } // grid padding: the whole workgroup leaves

  let r0 = tid / LPR;     // rows r0 and r1 = r0 + HALF of the block
  let r1 = r0 + HALF;
  let c = tid % LPR;
  let rows = P.T * P.group;
  let row0 = blk * BQ;
  let valid0 = row0 + r0 < rows;
  let valid1 = row0 + r1 < rows;
  let q0 = q_row(row0, r0, g);
  let q1 = q_row(row0, r1, g);
  // Row r sees keys 0 ..= p0 + t(r).
  let limit0 = S.p0 + (row0 + r0) / P.group;
  let limit1 = S.p0 + (row0 + r1) / P.group;
  // Keys the block's last row sees: every tile at or past it is fully masked and skipped.
  let kEnd = S.p0 + (min(row0 + BQ, rows) - 1u) / P.group + 1u;
  let kvBase = g * P.maxCtx * D;

  var acc0: array<f32, MAXE>;
  var acc1: array<f32, MAXE>;
  for (var e = 0u; e < E; e++) {
    acc0[e] = 0.0;
    acc1[e] = 0.0;
  }
  var m0 = NEG;
  var m1 = NEG;
  var l0 = 0.0;
  var l1 = 0.0;

  for (var k0 = 0u; k0 < kEnd; k0 += BK) {
    // Scores of rows r0, r1 against keys c, c + 16 of the tile.
    var s00 = 0.0;
    var s01 = 0.0;
    var s10 = 0.0;
    var s11 = 0.0;
    for (var d0 = 0u; d0 < D; d0 += DC) {
      // Each invocation stages its own two rows (offsets computed once); the block's 16 invocations of a row
      // read consecutive dims.
      for (var dd = c; dd < DC; dd += LPR) {
        let d = d0 + dd;
        var v0 = 0.0;
        var v1 = 0.0;
        if (d < D) {
          if (valid0) {
            v0 = q[q0 + d] * P.scale;
          }
          if (valid1) {
            v1 = q[q1 + d] * P.scale;
          }
        }
        sm[dd * BQ + r0] = v0;
        sm[dd * BQ + r1] = v1;
      }
      for (var i = tid; i < DC * BK; i += WG) {
        let kk = i / DC;
        let d = d0 + i % DC;
        let tau = k0 + kk;
        var val = 0.0;
        if (tau < kEnd && d < D) {
          val = kc[kvBase + tau * D + d];
        }
        sm[SA + (i % DC) * BK + kk] = val;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < DC; dd++) {
        let qa = sm[dd * BQ + r0];
        let qb = sm[dd * BQ + r1];
        let ka = sm[SA + dd * BK + c];
        let kb = sm[SA + dd * BK + c + LPR];
        s00 += qa * ka;
        s01 += qa * kb;
        s10 += qb * ka;
        s11 += qb * kb;
      }
      workgroupBarrier();
    }

    // Everyone is done with the Q and K chunks: the scores take region A, the first V sub-tile region B.
    let ka = k0 + c;
    let kb = ka + LPR;
    sm[r0 * PS + c] = select(NEG, s00, valid0 && ka <= limit0);
    sm[r0 * PS + c + LPR] = select(NEG, s01, valid0 && kb <= limit0);
    sm[r1 * PS + c] = select(NEG, s10, valid1 && ka <= limit1);
    sm[r1 * PS + c + LPR] = select(NEG, s11, valid1 && kb <= limit1);
    stage_v(tid, kvBase, k0, kEnd);
    workgroupBarrier();

    var mt0 = NEG;
    var mt1 = NEG;
    for (var kk = 0u; kk < BK; kk++) {
      mt0 = max(mt0, sm[r0 * PS + kk]);
      mt1 = max(mt1, sm[r1 * PS + kk]);
    }
    // Tile 0 holds key 0, visible to every row, so m is live from the first tile on; exp(NEG − mn) is then an
    // exact 0 and clears the empty accumulator. Rows past the end stay at NEG and are never written.
    let mn0 = max(m0, mt0);
    let mn1 = max(m1, mt1);
    let corr0 = exp(m0 - mn0);
    let corr1 = exp(m1 - mn1);
    l0 *= corr0;
    l1 *= corr1;
    for (var e = 0u; e < E; e++) {
      acc0[e] *= corr0;
      acc1[e] *= corr1;
    }
    m0 = mn0;
    m1 = mn1;

    // Sub-tiles wholly past kEnd hold only masked keys.
    for (var j = 0u; j < BK && k0 + j < kEnd; j += KC) {
      if (j > 0u) {
        workgroupBarrier();
        stage_v(tid, kvBase, k0 + j, kEnd);
        workgroupBarrier();
      }
      for (var kk = 0u; kk < KC; kk++) {
        let sa = sm[r0 * PS + j + kk];
        let sb = sm[r1 * PS + j + kk];
        let pa = select(0.0, exp(sa - mn0), sa > LIVE);
        let pb = select(0.0, exp(sb - mn1), sb > LIVE);
        l0 += pa;
        l1 += pb;
        for (var e = 0u; e < E; e++) {
          let d = c + LPR * e;
          if (d < D) {
            let v = sm[SA + kk * D + d];
            acc0[e] += pa * v;
            acc1[e] += pb * v;
          }
        }
      }
    }
    workgroupBarrier(); // before the next tile's Q/K chunks overwrite the scores and V
  }

  // Key 0 is visible and counted, so l ≥ 1 for every row that exists.
  if (valid0) {
    write_row(row0 + r0, g, c, &acc0, 1.0 / l0);
  }
  if (valid1) {
    write_row(row0 + r1, g, c, &acc1, 1.0 / l1);
  }
}

fn write_row(rq: u32, g: u32, c: u32, acc: ptr<function, array<f32, MAXE>>, inv: f32) {
  let orow = (rq / P.group) * P.H + g * P.group + rq % P.group;
  for (var e = 0u; e < E; e++) {
    let d = c + LPR * e;
    if (d < D) {
      var v = (*acc)[e] * inv;
      if (GATE) {
        v *= sigmoid(qg[orow * 2u * D + D + d]);
      }
      dst[orow * D + d] = v;
    }
  }
}
