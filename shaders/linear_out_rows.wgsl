// The row mapping and the matvec / GEMM store entry points of the one-row-per-output stages (linear_out.wgsl,
// linear_out_split.wgsl, which define store(m, n, v) and come first): logical rows are weight rows.

fn weight_row(l: u32) -> u32 { return min(l, P.rows - 1u); }

fn store4(m: u32, l0: u32, v: vec4<f32>) {
  store(m, l0, v.x); store(m, l0 + 1u, v.y); store(m, l0 + 2u, v.z); store(m, l0 + 3u, v.w);
}

fn store_tile(m: u32, n0: u32, tx: u32, a: array<f32, 4>) {
  for (var i = 0u; i < 4u; i++) { store(m, n0 + tx + 16u * i, a[i]); }
}
