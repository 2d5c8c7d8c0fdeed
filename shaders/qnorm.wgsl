// The RMSNorm in front of a linear (spec §3.2: input_layernorm, post_attention_layernorm, the final norm), folded
// into the affine matvec so the normed activations never go through memory and the norm costs no dispatch:
//   y = (x ⊙ g / rms(x)) · Wᵀ = (Σ_c dot(W_c, x_c ⊙ g_c)) / rms(x)
// The lanes of a row slot together read every x value once, so Σx² comes with the loads; slot_sum (qreduce_*.wgsl)
// adds it up over the slot and the row sums are scaled once at the end. Appended after qmatvec.wgsl.

@group(0) @binding(6) var<storage, read> G: array<vec4<f32>>;
var<private> gs: array<vec4<f32>, 8>;

// The 32 gains of chunk c, loaded once per chunk and used for every token.
fn norm_load_gain(c: u32) {
  for (var i = 0u; i < 8u; i++) { gs[i] = G[c * 8u + i]; }
}

// Σx² of the chunk in xs, then xs ← xs ⊙ g.
fn norm_gain_x() -> f32 {
  var sq = 0.0;
  for (var i = 0u; i < 8u; i++) {
    sq += dot(xs[i], xs[i]);
    xs[i] = xs[i] * gs[i];
  }
  return sq;
}

// 1 / sqrt(mean(x²) + eps) from this lane's share of Σx²; every lane of the slot gets it. Uniform control flow.
fn norm_factor(ss: f32, lane: u32, slot: u32) -> f32 {
  return inverseSqrt(slot_sum(ss, lane, slot) / f32(P.cols) + P.eps);
}
