// Output stage of the linear kernels (appended to qmatvec / qmatmul / matvec_float with their reduction): y = xWᵀ,
// or with ACC y += xWᵀ, which is the residual add of o_proj, out_proj and down_proj (spec §3.2) done as the
// projection writes, so the block output never makes a round trip through memory. Each output element has one
// writer, so the read-modify-write needs no atomics. Same f32 sum as the separate add kernel: identical bits.
// Each stage defines weight_row (logical row → weight row, clamped to a valid row), store4 (the matvec's four
// consecutive logical rows) and store_tile (the GEMM thread's rows n0 + tx + 16i).

override ACC: bool = false;

fn weight_row(l: u32) -> u32 { return min(l, P.rows - 1u); }

fn store(m: u32, n: u32, v: f32) {
  if (n >= P.rows) { return; }
  let o = P.y_off + m * P.y_stride + n;
  if (ACC) { Y[o] = Y[o] + v; } else { Y[o] = v; }
}

fn store4(m: u32, l0: u32, v: vec4<f32>) {
  store(m, l0, v.x); store(m, l0 + 1u, v.y); store(m, l0 + 2u, v.z); store(m, l0 + 3u, v.w);
}

fn store_tile(m: u32, n0: u32, tx: u32, a: array<f32, 4>) {
  for (var i = 0u; i < 4u; i++) { store(m, n0 + tx + 16u * i, a[i]); }
}
