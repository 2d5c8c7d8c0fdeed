// y[m, row] = Σ_c x[m, c] · w[row, c] for MLX affine weights (decode: M is the z grid dimension and small).
// Prepended by qcommon.wgsl. Layout: a workgroup is SLOTS row slots × TPR lanes; a slot owns R consecutive rows and
// its lanes stride over the row's 32-value chunks, so neighbouring lanes read neighbouring words (coalesced) and
// each lane loads its 32 x values once for R rows. Per chunk (always inside one group, since GS ≥ 32) the
// contribution is scale · dot(q, x) + bias · Σx: the bias never multiplies element by element.

override TPR: u32 = 32u;   // lanes per slot, a power of two
override SLOTS: u32 = 4u;  // row slots per workgroup
const R = 4u;              // rows per slot: enough weight loads in flight per lane, x reused R times

struct Params {
  rows: u32,     // rows of this part
  cols: u32,
  M: u32,
  x_off: u32,    // floats
  y_off: u32,    // floats, already including the part's first row
  y_stride: u32, // floats between tokens in y (the full output width)
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(4) var<storage, read> X: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;

var<workgroup> red: array<f32, 1024>; // R · TPR · SLOTS ≤ 4 · 256

@compute @workgroup_size(TPR * SLOTS)
fn main(
  @builtin(local_invocation_index) li: u32,
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
) {
  let lane = li % TPR;
  let slot = li / TPR;
  let row0 = ((wid.x + wid.y * nwg.x) * SLOTS + slot) * R;
  let m = wid.z;
  let chunks = P.cols / 32u;
  let gpr = P.cols / GS;
  let wpr = chunks * BITS;
  let cpg = GS / 32u;
  let xb = P.x_off + m * P.cols;
  // Rows past the end are computed on row rows-1 (always valid) and never stored: no divergence in the loop.
  var rr: array<u32, R>;
  for (var r = 0u; r < R; r++) { rr[r] = min(row0 + r, P.rows - 1u); }

  var acc: array<f32, R>;
  for (var c = lane; c < chunks; c += TPR) {
    let xo = xb + c * 32u;
    var xs: array<vec4<f32>, 8>;
    var xsum = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
      let o = xo + 4u * k;
      xs[k] = vec4<f32>(X[o], X[o + 1u], X[o + 2u], X[o + 3u]);
      xsum += xs[k];
    }
    let sx = xsum.x + xsum.y + xsum.z + xsum.w;
    let g = c / cpg;
    for (var r = 0u; r < R; r++) {
      let q = chunk_codes(rr[r] * wpr + c * BITS);
      var d = vec4<f32>(0.0);
      for (var k = 0u; k < 8u; k++) { d += q[k] * xs[k]; }
      let sb = scale_bias(rr[r] * gpr + g);
      acc[r] += sb.x * (d.x + d.y + d.z + d.w) + sb.y * sx;
    }
  }

  let base = slot * R * TPR;
  for (var r = 0u; r < R; r++) { red[base + r * TPR + lane] = acc[r]; }
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
