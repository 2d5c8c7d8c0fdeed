// y[M, rows] = x[M, cols] · Wᵀ for unquantised weights stored raw as bf16, f16 or f32 (two 16-bit values per word,
// element i in the low half when i is even). Any cols, including odd ones, where a row can start mid-word.
// Entry points: `matvec` (small M, M on the z grid axis) and `matmul` (64 × 64 tiles for prefill). Same work layout
// as qmatvec.wgsl / qmatmul.wgsl; see there for why. linear.ts appends qreduce_wg.wgsl or qreduce_sg.wgsl (finish())
// and an output stage, linear_out*.wgsl.

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
  s1: u32,
  s2: u32,
  s3: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> W: array<u32>;
// x-binding-begin: linear.ts swaps this block for scalar loads unless x offset and cols are multiples of 4 floats.
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
fn load_x4(i: u32) -> vec4<f32> { return X[i >> 2u]; }
fn load_x(i: u32) -> f32 { return X[i >> 2u][i & 3u]; }
// x-binding-end
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
  let b0 = weight_row(row0) * P.cols;
  let b1 = weight_row(row0 + 1u) * P.cols;
  let b2 = weight_row(row0 + 2u) * P.cols;
  let b3 = weight_row(row0 + 3u) * P.cols;

  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  for (var c = lane; c < full; c += TPR) {
    let e = c * 8u;
    let xa = load_x4(xb + e);
    let xc = load_x4(xb + e + 4u);
    a0 += w4(b0 + e) * xa + w4(b0 + e + 4u) * xc;
    a1 += w4(b1 + e) * xa + w4(b1 + e + 4u) * xc;
    a2 += w4(b2 + e) * xa + w4(b2 + e + 4u) * xc;
    a3 += w4(b3 + e) * xa + w4(b3 + e + 4u) * xc;
  }
  // The last cols % 8 elements.
  for (var e = full * 8u + lane; e < P.cols; e += TPR) {
    let xv = load_x(xb + e);
    a0.x += wel(b0 + e) * xv;
    a1.x += wel(b1 + e) * xv;
    a2.x += wel(b2 + e) * xv;
    a3.x += wel(b3 + e) * xv;
  }
  let one = vec4<f32>(1.0);
  finish(vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one)), lane, slot, row0, m);
}

const TN = 64u;
const TM = 64u;
const TK = 32u;
var<workgroup> wt: array<f32, 2048>; // [TK][TN]
var<workgroup> xt: array<f32, 2048>; // [TK][TM]

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
  let lrow = weight_row(n0 + (li >> 2u));
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
        xv = load_x(P.x_off + ltok * P.cols + k);
      }
      wt[(8u * part + v) * TN + (li >> 2u)] = wv;
      xt[(8u * part + v) * TM + (li >> 2u)] = xv;
    }
    workgroupBarrier();
    for (var k = 0u; k < TK; k++) {
      var a: array<f32, 4>;
      var b: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) {
        a[i] = wt[k * TN + tx + 16u * i];
        b[i] = xt[k * TM + ty + 16u * i];
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
    store_tile(m, n0, tx, array<f32, 4>(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
  }
}
