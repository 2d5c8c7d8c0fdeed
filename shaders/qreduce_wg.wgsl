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
