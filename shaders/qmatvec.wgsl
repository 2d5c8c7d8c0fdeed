// y[m, row] = Σ_c x[m, c] · w[row, c] for quantized weights (MODE in qcommon.wgsl) (decode: M is the z grid dimension and small).
// Assembled by linear.ts: qcommon.wgsl + this + qnorm.wgsl or qnorm_off.wgsl (the RMSNorm folded in, or not) +
// qreduce_wg.wgsl or qreduce_sg.wgsl (which define finish() and slot_sum()) + one output stage, linear_out*.wgsl
// (weight_row, store4: plain, accumulate, split into segments, or SwiGLU).
// Layout: a workgroup is SLOTS row slots × TPR lanes; a slot owns R consecutive rows and its lanes stride over the
// row's 32-value chunks, so neighbouring lanes read neighbouring words (coalesced) and each lane loads its 32 x
// values once for R rows. Per chunk (always inside one group, since GS ≥ 32) the contribution is
// scale · dot(q, x) + bias · Σx: the bias never multiplies element by element.
// A workgroup serves MT tokens (short prompts): each chunk's weight words are fetched from memory once and re-read
// from cache for the other tokens, so an 8-token prompt reads the weights once, not 8 times, without the 64-token
// tile of the GEMM. Each token's sums run in the same order as with MT = 1: the bits do not depend on MT.

override TPR: u32 = 32u;   // lanes per slot, a power of two
override SLOTS: u32 = 4u;  // row slots per workgroup (TPR · SLOTS = 128)
const R = 4u;              // rows per slot (unrolled below): weight loads in flight per lane, x reused R times
override MT: u32 = 1u;     // tokens per workgroup, 1 ≤ MT ≤ MT_MAX
const MT_MAX = 8u;

struct Params {
  rows: u32,     // rows of this part
  cols: u32,
  M: u32,
  x_off: u32,    // floats
  y_off: u32,    // floats, already including the part's first row
  y_stride: u32, // floats between tokens in y (the full output width)
  s1: u32,       // segment starts (linear_out_split.wgsl only)
  s2: u32,
  s3: u32,
  eps: f32,      // RMSNorm epsilon (qnorm.wgsl only)
}

@group(0) @binding(0) var<uniform> P: Params;
// x-binding-begin: linear.ts swaps this block for scalar loads when the x offset is not a multiple of 4 floats.
@group(0) @binding(4) var<storage, read> X: array<vec4<f32>>;
fn load_x4(i: u32) -> vec4<f32> { return X[i >> 2u]; }
fn load_x(i: u32) -> f32 { return X[i >> 2u][i & 3u]; }
// x-binding-end
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

// (scale, bias) of the group holding chunk c, for the four rows. With GS = 16 the chunk spans two groups and
// chunk_dot_g applies their scales: 1 here.
struct RowScales { s: vec4<f32>, b: vec4<f32> }
fn chunk_scales(rows: vec4<u32>, gpr: u32, g: u32) -> RowScales {
  if (GS < 32u) { return RowScales(vec4<f32>(1.0), vec4<f32>(0.0)); }
  let sb0 = scale_bias(rows.x * gpr + g);
  let sb1 = scale_bias(rows.y * gpr + g);
  let sb2 = scale_bias(rows.z * gpr + g);
  let sb3 = scale_bias(rows.w * gpr + g);
  return RowScales(vec4<f32>(sb0.x, sb1.x, sb2.x, sb3.x), vec4<f32>(sb0.y, sb1.y, sb2.y, sb3.y));
}

var<private> chunk_sq: f32; // Σx² of the chunk chunk_rows just loaded (qnorm.wgsl; 0 without a norm)

// Chunk c of token m against the four rows: x into xs (scaled by the norm's gain, if any), then
// scale · dot(q, x) + bias · Σx per row.
fn chunk_rows(m: u32, c: u32, rows: vec4<u32>, wpr: u32, gpr: u32, sb: RowScales) -> vec4<f32> {
  let xo = P.x_off + m * P.cols + c * 32u;
  xs[0] = load_x4(xo); xs[1] = load_x4(xo + 4u); xs[2] = load_x4(xo + 8u); xs[3] = load_x4(xo + 12u);
  xs[4] = load_x4(xo + 16u); xs[5] = load_x4(xo + 20u); xs[6] = load_x4(xo + 24u); xs[7] = load_x4(xo + 28u);
  chunk_sq = norm_gain_x();
  let sx = dot(xs[0] + xs[1] + xs[2] + xs[3] + xs[4] + xs[5] + xs[6] + xs[7], vec4<f32>(1.0));
  let wc = c * BITS;
  let g = (c * 32u) / GS;
  let d = vec4<f32>(chunk_dot_g(rows.x * wpr + wc, rows.x * gpr + g), chunk_dot_g(rows.y * wpr + wc, rows.y * gpr + g),
    chunk_dot_g(rows.z * wpr + wc, rows.z * gpr + g), chunk_dot_g(rows.w * wpr + wc, rows.w * gpr + g));
  return sb.s * d + sb.b * sx;
}

@compute @workgroup_size(TPR * SLOTS)
fn main(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = li % TPR;
  let slot = li / TPR;
  let row0 = ((wid.x + wid.y * nwg.x) * SLOTS + slot) * R;
  let m0 = wid.z * MT;
  let chunks = P.cols / 32u;
  let gpr = P.cols / GS;
  let wpr = chunks * BITS;
  // Rows past the end are computed on a valid row (weight_row clamps) and never stored: no divergence in the loop.
  // The R = 4 rows are written out by hand: not every compiler unrolls the loop and keeps the array in registers.
  let rows = vec4<u32>(weight_row(row0), weight_row(row0 + 1u), weight_row(row0 + 2u), weight_row(row0 + 3u));

  if (MT == 1u) {
    // Decode: plain registers. A per-token array indexed by the token loop is kept in memory by some compilers
    // (SwiftShader: the matvec ran 1.7x slower with it).
    var acc = vec4<f32>(0.0);
    var ss = 0.0;
    for (var c = lane; c < chunks; c += TPR) {
      norm_load_gain(c);
      acc += chunk_rows(m0, c, rows, wpr, gpr, chunk_scales(rows, gpr, (c * 32u) / GS));
      ss += chunk_sq;
    }
    finish(acc * norm_factor(ss, lane, slot), lane, slot, row0, m0);
    return;
  }

  var acc: array<vec4<f32>, MT_MAX>;
  var ss: array<f32, MT_MAX>; // Σx² of each token over this lane's chunks (qnorm.wgsl)
  for (var c = lane; c < chunks; c += TPR) {
    norm_load_gain(c);
    let sb = chunk_scales(rows, gpr, (c * 32u) / GS);
    for (var t = 0u; t < MT; t++) {
      // Tokens past M (the last workgroup) redo token M - 1 and are never stored.
      acc[t] += chunk_rows(min(m0 + t, P.M - 1u), c, rows, wpr, gpr, sb);
      ss[t] += chunk_sq;
    }
  }
  for (var t = 0u; t < MT; t++) {
    if (m0 + t >= P.M) { break; }
    finish(acc[t] * norm_factor(ss[t], lane, slot), lane, slot, row0, m0 + t);
  }
}
