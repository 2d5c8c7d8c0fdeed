// y[M, rows] = x[M, cols] · Wᵀ for quantized weights (MODE in qcommon.wgsl) when M is large enough (prefill) that weights should be read
// once per 64 tokens instead of once per token. Prepended by qcommon.wgsl; an output stage linear_out*.wgsl follows.
// Tile: 64 weight rows × 64 tokens per workgroup, K in steps of one 32-value chunk. Each step dequantises the
// 64 × 32 weight tile into workgroup memory (w = s·q + b, done once and shared by 64 tokens) next to the matching
// 64 × 32 x tile; each of the 16 × 16 threads then accumulates a 4 × 4 block.

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
@group(0) @binding(4) var<storage, read> X: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

const TN = 64u; // weight rows per tile
const TM = 64u; // tokens per tile
const TK = 32u;

// k-major so the compute loop reads 16 consecutive rows (or tokens) per k: no bank conflicts, broadcasts otherwise.
var<workgroup> wt: array<f32, 2048>; // [TK][TN]
var<workgroup> xt: array<f32, 2048>; // [TK][TM]

@compute @workgroup_size(256)
fn main(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let n0 = (wid.x + wid.y * nwg.x) * TN;
  let m0 = wid.z * TM;
  let tx = li % 16u;
  let ty = li / 16u;
  let chunks = P.cols / 32u;
  let gpr = P.cols / GS;
  let wpr = chunks * BITS;

  // Loader roles: 4 threads per weight row (8 values each) and 4 per token (8 x values each). Out-of-range rows
  // and tokens load a clamped, valid address; their results are never stored.
  let lrow = weight_row(n0 + (li >> 2u));
  let ltok = min(m0 + (li >> 2u), P.M - 1u);
  let part = li & 3u;
  // Values 8·part .. 8·part+7 of a chunk sit in a 64-bit window starting at word p/32, offset p%32.
  let p = 8u * part * BITS;
  let wi = p >> 5u;
  let off = p & 31u;
  let need_hi = off + 8u * BITS > 32u;

  var acc: array<array<f32, 4>, 4>;
  for (var c = 0u; c < chunks; c++) {
    let cb = lrow * wpr + c * BITS + wi;
    let lo = word(cb);
    var hi = 0u;
    if (need_hi) { hi = word(cb + 1u); }
    // This thread's 8 values lie in one group (GS ≥ 16).
    let sb = scale_bias(lrow * gpr + (c * 32u + 8u * part) / GS);
    for (var v = 0u; v < 8u; v++) {
      let s = off + v * BITS;
      var q: u32;
      if (s < 32u) { q = funnel(lo, hi, s); } else { q = hi >> (s - 32u); }
      wt[(8u * part + v) * TN + (li >> 2u)] = sb.x * decode1(q & qmask()) + sb.y;
    }
    let xo = P.x_off + ltok * P.cols + c * 32u + 8u * part;
    for (var v = 0u; v < 8u; v++) {
      xt[(8u * part + v) * TM + (li >> 2u)] = X[xo + v];
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
