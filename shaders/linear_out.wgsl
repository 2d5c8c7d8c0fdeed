// Output stage of the linear kernels (appended to qmatvec / qmatmul / matvec_float with their reduction): y = xWᵀ,
// or with ACC y += xWᵀ, which is the residual add of o_proj, out_proj and down_proj (spec §3.2) done as the
// projection writes, so the block output never makes a round trip through memory. Each output element has one
// writer, so the read-modify-write needs no atomics. Same f32 sum as the separate add kernel: identical bits.
// Each stage provides weight_row (logical row → weight row, clamped to a valid row), store4 (the matvec's four
// consecutive logical rows) and store_tile (the GEMM thread's rows n0 + tx + 16i); here and in the split stage
// those come from linear_out_rows.wgsl, around this file's store().

override ACC: bool = false;

fn store(m: u32, n: u32, v: f32) {
  if (n >= P.rows) { return; }
  let o = P.y_off + m * P.y_stride + n;
  if (ACC) { Y[o] = Y[o] + v; } else { Y[o] = v; }
}
