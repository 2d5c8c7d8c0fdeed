// Row-slot reduction through workgroup memory, for devices without subgroups. Appended to qmatvec.wgsl and
// matvec_float.wgsl, which declare P, TPR and SLOTS. acc holds one lane's partial sums of rows row0 .. row0+3;
// store4 is the output stage's (linear_out*.wgsl).

var<workgroup> red: array<f32, 512>; // 4 rows · TPR · SLOTS, with TPR · SLOTS = 128

fn finish(acc: vec4<f32>, lane: u32, slot: u32, row0: u32, m: u32) {
  let base = slot * 4u * TPR;
  red[base + lane] = acc.x;
  red[base + TPR + lane] = acc.y;
  red[base + 2u * TPR + lane] = acc.z;
  red[base + 3u * TPR + lane] = acc.w;
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) {
      for (var r = 0u; r < 4u; r++) { red[base + r * TPR + lane] += red[base + r * TPR + lane + s]; }
    }
  }
  workgroupBarrier();
  if (lane == 0u) { store4(m, row0, vec4<f32>(red[base], red[base + TPR], red[base + 2u * TPR], red[base + 3u * TPR])); }
}

var<workgroup> red_sum: array<f32, 128>; // one value per invocation (TPR · SLOTS = 128)

// The sum of v over the slot's TPR lanes, in every lane (qnorm.wgsl's Σx²). Uniform control flow.
fn slot_sum(v: f32, lane: u32, slot: u32) -> f32 {
  let base = slot * TPR;
  red_sum[base + lane] = v;
  for (var s = TPR / 2u; s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lane < s) { red_sum[base + lane] += red_sum[base + lane + s]; }
  }
  workgroupBarrier();
  let total = red_sum[base];
  // The next call writes red_sum again: every lane reads first.
  workgroupBarrier();
  return total;
}
