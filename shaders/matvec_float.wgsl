// y[M, rows] = x[M, cols] · Wᵀ for unquantised weights stored raw as bf16, f16 or f32 (two 16-bit values per word,
// element i in the low half when i is even). Any cols, including odd ones, where a row can start mid-word.
// Entry points: `matvec` (small M, M on the z grid axis) and `matmul` (64 × 64 tiles for prefill).
// Same work layout as qmatvec.wgsl / qmatmul.wgsl; see there for why.

override WDT: u32 = 0u;    // 0 = bf16, 1 = f16, 2 = f32
override TPR: u32 = 32u;
override SLOTS: u32 = 4u;
const R = 4u;

struct Params {
  rows: u32,
  cols: u32,
  M: u32,
  x_off: u32,
  y_off: u32,
  y_stride: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

fn half_to_f32(w: u32, odd: bool) -> f32 {
  if (WDT == 0u) { return bitcast<f32>(select(w << 16u, w & 0xffff0000u, odd)); }
  let h = unpack2x16float(w);
  return select(h.x, h.y, odd);
}

fn wel(e: u32) -> f32 {
  if (WDT == 2u) { return bitcast<f32>(W[e]); }
  return half_to_f32(W[e >> 1u], (e & 1u) != 0u);
}

fn wpair(word: u32) -> vec2<f32> {
  if (WDT == 0u) { return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u)); }
  return unpack2x16float(word);
}

// Elements e .. e+3; whole words when e is even (always, unless cols is odd).
fn w4(e: u32) -> vec4<f32> {
  if (WDT == 2u) {
    return vec4<f32>(bitcast<f32>(W[e]), bitcast<f32>(W[e + 1u]), bitcast<f32>(W[e + 2u]), bitcast<f32>(W[e + 3u]));
  }
  if ((e & 1u) == 0u) {
    return vec4<f32>(wpair(W[e >> 1u]), wpair(W[(e >> 1u) + 1u]));
  }
  return vec4<f32>(wel(e), wel(e + 1u), wel(e + 2u), wel(e + 3u));
}

var<workgroup> red: array<f32, 1024>;

@compute @workgroup_size(TPR * SLOTS)
fn matvec(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = li % TPR;
  let slot = li / TPR;
  let row0 = ((wid.x + wid.y * nwg.x) * SLOTS + slot) * R;
  let m = wid.z;
  let xb = P.x_off + m * P.cols;
  let full = P.cols / 8u;
  var rr: array<u32, R>;
  for (var r = 0u; r < R; r++) { rr[r] = min(row0 + r, P.rows - 1u); }

  var acc: array<vec4<f32>, R>;
  for (var c = lane; c < full; c += TPR) {
    let e = c * 8u;
    let xa = vec4<f32>(X[xb + e], X[xb + e + 1u], X[xb + e + 2u], X[xb + e + 3u]);
    let xc = vec4<f32>(X[xb + e + 4u], X[xb + e + 5u], X[xb + e + 6u], X[xb + e + 7u]);
    for (var r = 0u; r < R; r++) {
      let wb = rr[r] * P.cols + e;
      acc[r] += w4(wb) * xa + w4(wb + 4u) * xc;
    }
  }
  // The last cols % 8 elements, one per lane.
  let tail = P.cols - full * 8u;
  if (lane < tail) {
    let e = full * 8u + lane;
    let xv = X[xb + e];
    for (var r = 0u; r < R; r++) { acc[r].x += wel(rr[r] * P.cols + e) * xv; }
  }

  let base = slot * R * TPR;
  for (var r = 0u; r < R; r++) { red[base + r * TPR + lane] = acc[r].x + acc[r].y + acc[r].z + acc[r].w; }
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) {
      for (var r = 0u; r < R; r++) { red[base + r * TPR + lane] += red[base + r * TPR + lane + s]; }
    }
  }
  workgroupBarrier();
  for (var r = lane; r < R; r += TPR) {
    if (row0 + r < P.rows) { Y[P.y_off + m * P.y_stride + row0 + r] = red[base + r * TPR]; }
  }
}

const TN = 64u;
const TM = 64u;
const TK = 32u;
var<workgroup> ws: array<f32, 2048>; // [TK][TN]
var<workgroup> xs: array<f32, 2048>; // [TK][TM]

@compute @workgroup_size(256)
fn matmul(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let n0 = (wid.x + wid.y * nwg.x) * TN;
  let m0 = wid.z * TM;
  let tx = li % 16u;
  let ty = li / 16u;
  let lrow = min(n0 + (li >> 2u), P.rows - 1u);
  let ltok = min(m0 + (li >> 2u), P.M - 1u);
  let part = li & 3u;
  let steps = (P.cols + TK - 1u) / TK;

  var acc: array<array<f32, 4>, 4>;
  for (var c = 0u; c < steps; c++) {
    let k0 = c * TK + 8u * part;
    for (var v = 0u; v < 8u; v++) {
      let k = k0 + v;
      var wv = 0.0;
      var xv = 0.0;
      if (k < P.cols) {
        wv = wel(lrow * P.cols + k);
        xv = X[P.x_off + ltok * P.cols + k];
      }
      ws[(8u * part + v) * TN + (li >> 2u)] = wv;
      xs[(8u * part + v) * TM + (li >> 2u)] = xv;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = ws[k * TN + tx + 16u * i];
        b[i] = xs[k * TM + ty + 16u * i];
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i][j] += a[i] * b[j]; }
      }
    }
    workgroupBarrier();
  }

  for (var j = 0u; j < 4u; j++) {
    let m = m0 + ty + 16u * j;
    if (m >= P.M) { continue; }
    for (var i = 0u; i < 4u; i++) {
      let n = n0 + tx + 16u * i;
      if (n < P.rows) { Y[P.y_off + m * P.y_stride + n] = acc[i][j]; }
    }
  }
}
