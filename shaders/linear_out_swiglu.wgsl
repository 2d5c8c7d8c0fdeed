// Output stage for the MLP's gate and up projections concatenated at load as one weight [gate; up] (2I rows,
// P.rows = 2I): silu(gate) ⊙ up (spec §3.6) is taken where both dot products are in registers, so neither
// [M, I] half is ever stored. The logical rows are laid out in blocks of 2·PAIR: the first PAIR are gate rows,
// the next PAIR the up rows of the same outputs. PAIR = 2 for the matvec (a slot's 4 rows: 2 gate, 2 up) and 32
// for the GEMM (a thread's rows tx + 16i: i = 0, 1 gate, i = 2, 3 the matching up rows).
// Same expression as the swiglu kernel of elementwise.wgsl (g · σ(g) · u, σ from gates.wgsl): identical bits to the
// unfused path.

override PAIR: u32 = 2u;

fn weight_row(l: u32) -> u32 {
  let half_rows = P.rows / 2u;
  let j = l % (2u * PAIR);
  return min((l / (2u * PAIR)) * PAIR + j % PAIR + (j / PAIR) * half_rows, P.rows - 1u);
}

fn store_act(m: u32, o: u32, g: f32, u: f32) {
  if (o >= P.rows / 2u) { return; }
  Y[P.y_off + m * P.y_stride + o] = g * sigmoid(g) * u;
}

fn store4(m: u32, l0: u32, v: vec4<f32>) {
  let o = l0 / 2u;
  store_act(m, o, v.x, v.z);
  store_act(m, o + 1u, v.y, v.w);
}

fn store_tile(m: u32, n0: u32, tx: u32, a: array<f32, 4>) {
  let o = n0 / 2u + tx;
  store_act(m, o, a[0], a[2]);
  store_act(m, o + 16u, a[1], a[3]);
}
