// Output stage for projections that share their input and were concatenated by rows at load (in_proj_qkv/z/b/a,
// q/k/v: src/gpu/linear.ts createFusedLinear): one pass over x, each row's result goes to its own tensor
// [M, rows of that segment]. Segments start at rows 0, s1, s2, s3 (s3 = rows when there are only three).

@group(0) @binding(8) var<storage, read_write> Y1: array<f32>;
@group(0) @binding(9) var<storage, read_write> Y2: array<f32>;
@group(0) @binding(10) var<storage, read_write> Y3: array<f32>;

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
