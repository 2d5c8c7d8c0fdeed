// The gate functions shared by every kernel that needs them (linear.ts / ops.ts put this text first: WGSL has no
// includes), so each σ and softplus in the forward pass is the same expression, bit for bit.

// Two-sided form so exp never overflows (WGSL leaves overflowed exp unspecified).
fn sigmoid(v: f32) -> f32 {
  if (v >= 0.0) {
    return 1.0 / (1.0 + exp(-v));
  }
  let e = exp(v);
  return e / (1.0 + e);
}

// softplus with PyTorch's threshold; log(1+e^x) via Goldberg's log1p trick so small e^x keeps its digits.
fn softplus(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  let e = exp(x);
  let y = 1.0 + e;
  if (y == 1.0) { return e; }
  return log(y) * (e / (y - 1.0));
}
