// Token sampling on the GPU (semantics: src/model/reference-sample.ts). Only the sampled id leaves the GPU.
//
// prep (several workgroups): penalties and the validVocab mask, then each logit becomes an order-preserving u32
//   key (larger logit ↔ larger key, 0 = not a candidate); per workgroup the max key, the lowest id holding it and
//   the number of candidates.
// select_token (one workgroup). Greedy is the max of the partials. Otherwise every filter keeps a set {key ≥ τ},
//   so nothing needs the vocabulary sorted:
//   - small path, when the candidates (or the top-k set) number at most WG: gather them into workgroup memory,
//     rank-sort by (key descending, id ascending) and walk that list exactly as the reference does.
//   - search path: each τ is found by a 16-way search on the key, one pass over the vocabulary per round with a
//     count (top-k) or weight (top-p) reduction at 16 thresholds: 8 rounds for a 32-bit key. The draw finds v*,
//     the largest key whose weight of keys ≥ v* exceeds u·M; inside v*'s tie group (equal weights) the rank is
//     floor((u·M − weight above v*) / e(v*)), and the member of that rank in id order is found by the same search
//     on the id when the group has more than one member. That is the reference's walk in (logit descending, id
//     ascending) order.
//   Then the id is written and counted, and next to it the fault word: 0, or FAULT | kind << 29 | index for the
//   lowest vocabulary index whose logit is NaN or ±inf (kind 1 NaN, 2 +inf, 3 −inf), found by the same prep pass.
//   Sampling itself still treats such logits as below (key_of), so the id stays defined; the host refuses it.
// record (any size): atomically adds ids to the penalty counts.
//
// Search rounds are 16-way because each round is a full pass over the vocabulary by one workgroup: 8 rounds
// instead of 32 for bisection matter more than the 16 compare-adds per element they cost. Reductions are two
// level (sequential runs of FAN, then one invocation per row): 3 barriers instead of log2(WG).
// Infinities are never produced on purpose (WGSL implementations may assume there are none): ±inf logits are
// clamped to ±FLT_MAX through their bits, and weights come from halved differences, which cannot overflow.

override WG: u32 = 256u;        // select invocations: a power of two in [128, 1024]
override WG_PREP: u32 = 256u;   // prep invocations: a power of two in [64, 256]
const FAN: u32 = 16u;           // run length of the first reduction level
const NB: u32 = 16u;            // thresholds per search round
const RED: u32 = 2048u;         // reduction scratch (floats): ROWS accumulators of WG invocations at a time
override ROWS: u32 = RED / WG;  // derived, never set by the host
const KEY_MIN: u32 = 0x00800000u;  // key of −FLT_MAX, the smallest candidate key
const NONE: u32 = 0xffffffffu;
const FAULT: u32 = 0x80000000u;  // fault word: some logit was not finite

const MODE_COUNT: u32 = 0u;  // statistic: number of candidates with key ≥ threshold
const MODE_MASS: u32 = 1u;   // statistic: Σ weight over candidates with key ≥ threshold
const MODE_TIE: u32 = 2u;    // statistic: number of tokens with key == tie and id < threshold
const PRED_GE: u32 = 0u;     // statistic ≥ goal
const PRED_GT: u32 = 1u;     // statistic > goal
const PRED_LE: u32 = 2u;     // statistic ≤ goal

struct Params {
  V: u32,
  valid: u32,
  nparts: u32,   // prep workgroups
  greedy: u32,
  topK: u32,     // 0 = off (the wrapper also turns off k ≥ validVocab)
  useTopP: u32,
  useMinP: u32,
  n: u32,        // record: ids to add
  topP: f32,
  minP: f32,
  invT: f32,
  u: f32,
  rep: f32,
  invRep: f32,   // f32(1 / rep), rounded on the CPU so the reference can reproduce it
  presence: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> logits: array<u32>;  // f32 bits, read raw to sanitise NaN / inf
@group(0) @binding(2) var<storage, read> counts: array<u32>;
@group(0) @binding(3) var<storage, read_write> keys_out: array<u32>;
@group(0) @binding(4) var<storage, read_write> parts_out: array<u32>;  // [nparts][max key, its id, candidates, bad]
@group(0) @binding(5) var<storage, read> keys: array<u32>;
@group(0) @binding(6) var<storage, read> parts: array<u32>;
@group(0) @binding(7) var<storage, read_write> counts_rw: array<u32>;
@group(0) @binding(8) var<storage, read_write> out_id: array<u32>;  // [id, fault word]
@group(0) @binding(9) var<storage, read> rec_ids: array<u32>;
@group(0) @binding(10) var<storage, read_write> counts_atomic: array<atomic<u32>>;

// index << 2 | kind for a NaN (kind 1) or ±inf (2, 3) logit, else NONE; the min over the vocabulary is the
// lowest such index (index < 2^29, checked by the host). Tested on the bits, like key_of: a float NaN test is one
// a compiler may fold away.
fn bad_code(bits: u32, i: u32) -> u32 {
  let mag = bits & 0x7fffffffu;
  if (mag < 0x7f800000u) { return NONE; }
  var kind = 1u;
  if (mag == 0x7f800000u) { kind = select(2u, 3u, (bits & 0x80000000u) != 0u); }
  return (i << 2u) | kind;
}

// Order-preserving key of an f32 given by its bits: NaN → 0 (no candidate), ±inf → ±FLT_MAX, −0 → +0, so equal
// values get equal keys and candidate keys lie in [KEY_MIN, 0xff7fffff].
fn key_of(bits: u32) -> u32 {
  var b = bits;
  let mag = b & 0x7fffffffu;
  if (mag > 0x7f800000u) { return 0u; }
  if (mag == 0x7f800000u) { b = (b & 0x80000000u) | 0x7f7fffffu; }
  if (b == 0x80000000u) { b = 0u; }
  if ((b & 0x80000000u) != 0u) { return ~b; }
  return b | 0x80000000u;
}

fn value_of(key: u32) -> f32 {
  if ((key & 0x80000000u) != 0u) { return bitcast<f32>(key & 0x7fffffffu); }
  return bitcast<f32>(~key);
}

// (key, id) pairs: larger key first, then lower id. NONE as id comes after every real id.
fn better(k: u32, i: u32, bk: u32, bi: u32) -> bool {
  return k > bk || (k == bk && i < bi);
}

// ---------------------------------------------------------------------------------------------------------------
// prep

var<workgroup> pk: array<u32, WG_PREP>;
var<workgroup> pi: array<u32, WG_PREP>;
var<workgroup> pc: array<u32, WG_PREP>;
var<workgroup> pb: array<u32, WG_PREP>;

@compute @workgroup_size(WG_PREP)
fn prep(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let part = wid.x;
  var bk = 0u;
  var bi = NONE;
  var nc = 0u;
  var bad = NONE;
  for (var i = part * WG_PREP + lid; i < P.V; i += P.nparts * WG_PREP) {
    var k = 0u;
    // Every logit counts for the fault, masked ones too: a NaN anywhere means the forward went wrong.
    let bits = logits[i];
    bad = min(bad, bad_code(bits, i));
    if (i < P.valid) {
      k = key_of(bits);
      if (k != 0u && counts[i] > 0u) {
        let l = value_of(k);
        let r = select(l * P.rep, l * P.invRep, l > 0.0);
        k = key_of(bitcast<u32>(r - P.presence));
      }
    }
    keys_out[i] = k;
    nc += select(0u, 1u, k != 0u);
    if (better(k, i, bk, bi)) {
      bk = k;
      bi = i;
    }
  }
  pk[lid] = bk;
  pi[lid] = bi;
  pc[lid] = nc;
  pb[lid] = bad;
  workgroupBarrier();
  if (lid < FAN) {
    let o = lid * (WG_PREP / FAN);
    for (var j = 1u; j < WG_PREP / FAN; j++) {
      if (better(pk[o + j], pi[o + j], pk[o], pi[o])) {
        pk[o] = pk[o + j];
        pi[o] = pi[o + j];
      }
      pc[o] += pc[o + j];
      pb[o] = min(pb[o], pb[o + j]);
    }
  }
  workgroupBarrier();
  if (lid == 0u) {
    for (var o = WG_PREP / FAN; o < WG_PREP; o += WG_PREP / FAN) {
      if (better(pk[o], pi[o], pk[0], pi[0])) {
        pk[0] = pk[o];
        pi[0] = pi[o];
      }
      pc[0] += pc[o];
      pb[0] = min(pb[0], pb[o]);
    }
    parts_out[4u * part] = pk[0];
    parts_out[4u * part + 1u] = pi[0];
    parts_out[4u * part + 2u] = pc[0];
    parts_out[4u * part + 3u] = pb[0];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// select

var<workgroup> red: array<f32, RED>;
var<workgroup> rk: array<u32, WG>;
var<workgroup> ri: array<u32, WG>;
var<workgroup> res: array<f32, NB>;
var<workgroup> bu0: u32;
var<workgroup> bu1: u32;
var<workgroup> bf0: f32;
var<workgroup> bf1: f32;
var<workgroup> gcount: atomic<u32>;

// Set once per select from uniform values; read only in per-element code.
var<private> lmax_half: f32;
var<private> two_inv_t: f32;
var<private> fault: u32;  // invocation 0 only: the fault word finish writes

// exp((ℓ − ℓmax) / T) from halves, so ℓ − ℓmax cannot overflow; exactly 1 at ℓmax.
fn weight(key: u32) -> f32 {
  let d = max(value_of(key) * 0.5 - lmax_half, -1.0e30);
  return exp(max(d * two_inv_t, -200.0));
}

// Invocation 0's values to every invocation, as uniform values. The leading barrier keeps the write away from
// slow readers of the previous broadcast.
fn bcast_u(v: u32, lid: u32) -> u32 {
  workgroupBarrier();
  if (lid == 0u) { bu0 = v; }
  return workgroupUniformLoad(&bu0);
}

fn bcast_uu(v: vec2u, lid: u32) -> vec2u {
  workgroupBarrier();
  if (lid == 0u) {
    bu0 = v.x;
    bu1 = v.y;
  }
  return vec2u(workgroupUniformLoad(&bu0), workgroupUniformLoad(&bu1));
}

fn bcast_ff(v: vec2f, lid: u32) -> vec2f {
  workgroupBarrier();
  if (lid == 0u) {
    bf0 = v.x;
    bf1 = v.y;
  }
  return vec2f(workgroupUniformLoad(&bf0), workgroupUniformLoad(&bf1));
}

// res[j] = statistic at threshold a + j·2^shift, j < NB. Every invocation accumulates its elements in the same
// order for every j (adding w or 0) and the reduction is the same for every j, so res is monotone in j despite
// rounding. Must be called in uniform control flow.
fn stats(mode: u32, a: u32, shift: u32, tie: u32, lid: u32) {
  var acc: array<f32, NB>;
  for (var i = lid; i < P.V; i += WG) {
    let k = keys[i];
    var lo = NB;  // the element adds w to acc[lo .. hi)
    var hi = NB;
    var w = 1.0;
    if (mode == MODE_TIE) {
      if (k == tie) {
        lo = select(min(((i - a) >> shift) + 1u, NB), 0u, i < a);
      }
    } else if (k >= a) {
      lo = 0u;
      hi = min(((k - a) >> shift) + 1u, NB);
      if (mode == MODE_MASS) { w = weight(k); }
    }
    // After the first round most elements lie below a and add nothing.
    if (lo < hi) {
      for (var j = 0u; j < NB; j++) {
        acc[j] += select(0.0, w, j >= lo && j < hi);
      }
    }
  }
  for (var base = 0u; base < NB; base += ROWS) {
    for (var r = 0u; r < ROWS; r++) {
      red[r * WG + lid] = acc[base + r];
    }
    workgroupBarrier();
    if (lid < RED / FAN) {
      let o = lid * FAN;
      var t = red[o];
      for (var j = 1u; j < FAN; j++) { t += red[o + j]; }
      red[o] = t;
    }
    workgroupBarrier();
    if (lid < ROWS) {
      let o = lid * WG;
      var t = 0.0;
      for (var s = 0u; s < WG; s += FAN) { t += red[o + s]; }
      res[base + lid] = t;
    }
    workgroupBarrier();
  }
}

struct TieGroup {
  size: f32,
  above: f32,  // weight of the keys above the group
  first: u32,  // lowest id in the group
}

// Invocation 0 gets the result. Must be called in uniform control flow.
fn tie_group(v: u32, lid: u32) -> TieGroup {
  var n = 0.0;
  var above = 0.0;
  var first = NONE;
  for (var i = lid; i < P.V; i += WG) {
    let k = keys[i];
    if (k == v) {
      n += 1.0;
      first = min(first, i);
    } else if (k > v) {
      above += weight(k);
    }
  }
  workgroupBarrier();
  red[lid] = n;
  red[WG + lid] = above;
  ri[lid] = first;
  workgroupBarrier();
  if (lid < 2u * WG / FAN) {
    let o = lid * FAN;
    var t = red[o];
    for (var j = 1u; j < FAN; j++) { t += red[o + j]; }
    red[o] = t;
  }
  if (lid < WG / FAN) {
    let o = lid * FAN;
    var m = ri[o];
    for (var j = 1u; j < FAN; j++) { m = min(m, ri[o + j]); }
    ri[o] = m;
  }
  workgroupBarrier();
  var g = TieGroup(0.0, 0.0, NONE);
  if (lid == 0u) {
    for (var s = 0u; s < WG; s += FAN) {
      g.size += red[s];
      g.above += red[WG + s];
      g.first = min(g.first, ri[s]);
    }
  }
  return g;
}

fn holds(pred: u32, stat: f32, goal: f32) -> bool {
  if (pred == PRED_GE) { return stat >= goal; }
  if (pred == PRED_GT) { return stat > goal; }
  return stat <= goal;
}

struct Found {
  v: u32,
  first: f32,  // the statistic at a0
  at: f32,     // the statistic at v
}

// Largest v in [a0, b0] whose statistic satisfies pred against the goal, assuming a0 does (a0 is returned when
// nothing does). The goal is tparam, or tparam · statistic(a0) when scaled (a fraction of the kept weight).
fn search(mode: u32, pred: u32, a0: u32, b0: u32, tie: u32, tparam: f32, scaled: bool, lid: u32) -> Found {
  var a = a0;
  var b = b0;
  var first = 0.0;   // first, at and goal are meaningful in invocation 0 only
  var at = 0.0;
  var goal = tparam;
  var round = 0u;
  loop {
    // Smallest power-of-two step whose NB points a + j·step reach past b.
    var shift = 0u;
    while (((b - a) >> shift) >= NB) { shift++; }
    stats(mode, a, shift, tie, lid);
    var na = a;
    var nb = b;
    if (lid == 0u) {
      if (round == 0u) {
        first = res[0];
        at = res[0];
        if (scaled) { goal = tparam * res[0]; }
      }
      for (var j = 1u; j < NB; j++) {
        // Compare offsets: a + j·step can wrap past 2^32 when b is near the top of the key range.
        let off = j << shift;
        if (off > b - a) { break; }
        if (!holds(pred, res[j], goal)) {
          nb = a + off - 1u;
          break;
        }
        na = a + off;
        at = res[j];
      }
    }
    round++;
    let ab = bcast_uu(vec2u(na, nb), lid);
    a = ab.x;
    b = ab.y;
    if (a >= b) { break; }
  }
  let fa = bcast_ff(vec2f(first, at), lid);
  return Found(a, fa.x, fa.y);
}

// Smallest key in [KEY_MIN, kmax] whose weight is ≥ minP (kmax when none is): the min-p threshold. Invocation 0.
fn min_p_threshold(kmax: u32) -> u32 {
  var lo = KEY_MIN;
  var hi = kmax;
  while (lo < hi) {
    let mid = lo + (hi - lo) / 2u;
    if (weight(mid) >= P.minP) { hi = mid; } else { lo = mid + 1u; }
  }
  return lo;
}

fn finish(id: u32, lid: u32) {
  if (lid == 0u) {
    out_id[0] = id;
    out_id[1] = fault;
    if (id < P.V) { counts_rw[id] += 1u; }
  }
}

// Small path: gather {key ≥ tau} (at most WG tokens) into rk/ri, sort by (key descending, id ascending) and apply
// top-k, top-p, min-p and the draw by walking the list token by token, as the reference does. Returns the id
// (uniform).
fn select_small(tau: u32, kmax: u32, lid: u32) -> u32 {
  workgroupBarrier();
  if (lid == 0u) { atomicStore(&gcount, 0u); }
  workgroupBarrier();
  for (var i = lid; i < P.V; i += WG) {
    let k = keys[i];
    if (k >= tau) {
      let slot = atomicAdd(&gcount, 1u);
      if (slot < WG) {
        rk[slot] = k;
        ri[slot] = i;
      }
    }
  }
  workgroupBarrier();
  var c = 0u;
  if (lid == 0u) { c = min(atomicLoad(&gcount), WG); }
  let n = bcast_u(c, lid);
  // Rank sort: a token's place is the number of gathered tokens before it in (key descending, id ascending)
  // order; ids are distinct, so the ranks are a permutation. n ≤ WG compares per invocation, two barriers.
  var rank = 0u;
  let mk = rk[lid];
  let mi = ri[lid];
  if (lid < n) {
    for (var j = 0u; j < n; j++) {
      rank += select(0u, 1u, better(rk[j], ri[j], mk, mi));
    }
  }
  workgroupBarrier();
  if (lid < n) {
    rk[rank] = mk;
    ri[rank] = mi;
  }
  workgroupBarrier();
  if (lid < n) { red[lid] = weight(rk[lid]); }
  workgroupBarrier();
  var id = 0u;
  if (lid == 0u) {
    var cut = n;
    if (P.topK > 0u && P.topK < n) {
      cut = P.topK;
      while (cut < n && rk[cut] == rk[P.topK - 1u]) { cut++; }
    }
    if (P.useTopP != 0u) {
      var total = 0.0;
      for (var j = 0u; j < cut; j++) { total += red[j]; }
      let goal = P.topP * total;
      var acc = 0.0;
      for (var j = 0u; j < cut; j++) {
        acc += red[j];
        if ((j + 1u == cut || rk[j + 1u] != rk[j]) && acc >= goal) {
          cut = j + 1u;
          break;
        }
      }
    }
    if (P.useMinP != 0u) {
      while (cut > 1u && rk[cut - 1u] < kmax && red[cut - 1u] < P.minP) { cut--; }
    }
    var mass = 0.0;
    for (var j = 0u; j < cut; j++) { mass += red[j]; }
    let t = P.u * mass;
    var acc = 0.0;
    id = ri[cut - 1u];
    for (var j = 0u; j < cut; j++) {
      acc += red[j];
      if (acc > t) {
        id = ri[j];
        break;
      }
    }
  }
  return bcast_u(id, lid);
}

@compute @workgroup_size(WG)
fn select_token(@builtin(local_invocation_index) lid: u32) {
  // Max key, the lowest id holding it, and the number of candidates, over the prep partials.
  if (lid < FAN) {
    var bk = 0u;
    var bi = NONE;
    var nc = 0u;
    var bad = NONE;
    for (var p = lid; p < P.nparts; p += FAN) {
      if (better(parts[4u * p], parts[4u * p + 1u], bk, bi)) {
        bk = parts[4u * p];
        bi = parts[4u * p + 1u];
      }
      nc += parts[4u * p + 2u];
      bad = min(bad, parts[4u * p + 3u]);
    }
    rk[lid] = bk;
    ri[lid] = bi;
    red[lid] = f32(nc);  // exact below 2^24
    ri[FAN + lid] = bad;  // ri has WG ≥ 128 > 2·FAN slots
  }
  workgroupBarrier();
  if (lid == 0u) {
    var bad = ri[FAN];
    for (var j = 1u; j < FAN; j++) {
      if (better(rk[j], ri[j], rk[0], ri[0])) {
        rk[0] = rk[j];
        ri[0] = ri[j];
      }
      red[0] += red[j];
      bad = min(bad, ri[FAN + j]);
    }
    fault = select(FAULT | ((bad & 3u) << 29u) | (bad >> 2u), 0u, bad == NONE);
  }
  let kmax = workgroupUniformLoad(&rk[0]);
  let amax = ri[0];
  if (kmax == 0u) {  // no candidate at all
    finish(0u, lid);
    return;
  }
  if (P.greedy != 0u) {
    finish(amax, lid);
    return;
  }
  lmax_half = value_of(kmax) * 0.5;
  two_inv_t = 2.0 * P.invT;

  var tau = KEY_MIN;
  var kept = workgroupUniformLoad(&red[0]);  // candidates
  if (P.topK > 0u && kept > f32(WG)) {
    let found = search(MODE_COUNT, PRED_GE, KEY_MIN, kmax, 0u, f32(P.topK), false, lid);
    tau = found.v;
    kept = found.at;  // k, plus the ties of the k-th
  }
  if (kept <= f32(WG)) {
    finish(select_small(tau, kmax, lid), lid);
    return;
  }

  if (P.useTopP != 0u) {
    tau = search(MODE_MASS, PRED_GE, tau, kmax, 0u, P.topP, true, lid).v;
  }
  if (P.useMinP != 0u) {
    var tm = 0u;
    if (lid == 0u) { tm = min_p_threshold(kmax); }
    tau = max(tau, bcast_u(tm, lid));
  }

  // Draw: v* is the largest key whose weight of keys ≥ v* exceeds t = u·M.
  let found = search(MODE_MASS, PRED_GT, tau, kmax, 0u, P.u, true, lid);
  let vstar = found.v;
  let g = tie_group(vstar, lid);
  var rank = 0u;
  if (lid == 0u) {
    let t = P.u * found.first;
    let e = weight(vstar);
    var r = g.size;  // a weightless group (only when nothing exceeded t): its last member, as the reference
    if (e > 0.0) { r = floor((t - g.above) / e); }
    rank = u32(clamp(r, 0.0, max(g.size, 1.0) - 1.0));
  }
  let rf = bcast_uu(vec2u(rank, g.first), lid);
  var id = rf.y;
  if (rf.x > 0u) {
    // The member of the tie group with `rank` members below it in id order.
    id = search(MODE_TIE, PRED_LE, id, P.V - 1u, vstar, f32(rf.x), false, lid).v;
  }
  finish(id, lid);
}

// ---------------------------------------------------------------------------------------------------------------
// record

@compute @workgroup_size(64)
fn record(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= P.n) { return; }
  let id = rec_ids[i];
  if (id < P.V) { atomicAdd(&counts_atomic[id], 1u); }
}
