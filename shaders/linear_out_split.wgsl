// Output stage for projections that share their input and were concatenated by rows at load (in_proj_qkv/z/b/a,
// q/k/v: src/gpu/linear.ts createFusedLinear): one pass over x, each row's result goes to its own tensor
// [M, rows of that segment]. Segments start at rows 0, s1, s2, s3 (s3 = rows when there are only three).

@group(0) @binding(8) var<storage, read_write> Y1: array<f32>;
@group(0) @binding(9) var<storage, read_write> Y2: array<f32>;
@group(0) @binding(10) var<storage, read_write> Y3: array<f32>;

fn weight_row(l: u32) -> u32 { return min(l, P.rows - 1u); }

fn store(m: u32, n: u32, v: f32) {
  if (n >= P.rows) { return; }
  if (n < P.s1) {
    Y[m * P.s1 + n] = v;
  } else if (n < P.s2) {
    Y1[m * (P.s2 - P.s1) + n - P.s1] = v;
  } else if (n < P.s3) {
    Y2[m * (P.s3 - P.s2) + n - P.s2] = v;
  } else {
    Y3[m * (P.rows - P.s3) + n - P.s3] = v;
  }
}

fn store4(m: u32, l0: u32, v: vec4<f32>) {
  store(m, l0, v.x); store(m, l0 + 1u, v.y); store(m, l0 + 2u, v.z); store(m, l0 + 3u, v.w);
}

fn store_tile(m: u32, n0: u32, tx: u32, a: array<f32, 4>) {
  for (var i = 0u; i < 4u; i++) { store(m, n0 + tx + 16u * i, a[i]); }
}
