// Row-slot reduction with subgroup shuffles: no workgroup memory and no barriers. Appended to qmatvec.wgsl and
// matvec_float.wgsl; the wrapper puts `enable subgroups;` first and only picks this when TPR is at most the
// adapter's minimum subgroup size, so the TPR lanes of a slot (consecutive invocation indices, TPR a power of two)
// always sit inside one subgroup and a butterfly over lane bits < TPR sums exactly one slot.

fn finish(acc: vec4<f32>, lane: u32, slot: u32, row0: u32, m: u32) {
  var v = acc;
  for (var k = 1u; k < TPR; k <<= 1u) { v += subgroupShuffleXor(v, k); }
  if (lane == 0u) { store4(m, row0, v); }
}

// The sum of v over the slot's TPR lanes, in every lane (qnorm.wgsl's Σx²).
fn slot_sum(v: f32, lane: u32, slot: u32) -> f32 {
  var s = v;
  for (var k = 1u; k < TPR; k <<= 1u) { s += subgroupShuffleXor(s, k); }
  return s;
}
