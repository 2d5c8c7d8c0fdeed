// RoPE angles in fixed point (spec §3.4 step 4), shared by rope.wgsl and norm_rope.wgsl (prepended to them).
//
// Why fixed point: with positions up to ~262144 the angle pos·inv_freq reaches 2.6e5 rad, where one f32 ulp is
// 0.03 rad, so an f32 product (what MLX does) is off by up to ~1.5e-2 in cos/sin. Instead the CPU stores, per
// pair i, c_i = inv_freq_i / 2π as a 64-bit binary fraction (hi, lo words, computed in f64), and the shader forms
// frac(pos · c_i) exactly in u32 arithmetic (wrapping multiplies drop the integer turns). The reduced angle is
// then reduced further to a quarter turn and evaluated with our own minimax polynomials: WGSL only promises
// 2^-11 absolute error for sin/cos (SwiftShader is that coarse, 1.4e-4), the polynomials give ~1e-7 everywhere.
// Net: ~1e-6 absolute error at any position below 2^32.

const TWO_PI_OVER_2_32: f32 = 1.4629180792671596e-9; // 2π / 2^32

// sin and cos of x ∈ [−π/4, π/4] (Cephes sinf/cosf minimax coefficients, < 1 ulp-ish in f32).
fn sin_small(x: f32) -> f32 {
  let z = x * x;
  return x + x * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4));
}

fn cos_small(x: f32) -> f32 {
  let z = x * x;
  return 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3 + z * 2.443315711809948e-5));
}

// High 32 bits of the 64-bit product a·b (WGSL has no mulhi).
fn mulhi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let ll = a0 * b0;
  let hl = a1 * b0;
  let lh = a0 * b1;
  let hh = a1 * b1;
  // Cannot overflow: (ll >> 16) + (hl & 0xffff) < 2^17 and lh ≤ (2^16 − 1)^2.
  let cross = (ll >> 16u) + (hl & 0xffffu) + lh;
  return hh + (hl >> 16u) + (cross >> 16u);
}

// (sin, cos) of pos · inv_freq for the pair whose (hi, lo) fraction of a turn is f.
fn rope_sincos(pos: u32, f: vec2<u32>) -> vec2<f32> {
  // Fraction of a turn in units of 2^-32; the integer turns wrap away.
  let turns = pos * f.x + mulhi(pos, f.y);
  // Nearest quarter turn q (mod 4) and the remainder r ∈ [−1/8, 1/8) turn, i.e. angle = q·π/2 + x, |x| ≤ π/4.
  let q = ((turns + 0x20000000u) >> 30u) & 3u;
  let xr = f32(bitcast<i32>(turns - (q << 30u))) * TWO_PI_OVER_2_32;
  let s0 = sin_small(xr);
  let c0 = cos_small(xr);
  if (q == 1u) {
    return vec2<f32>(c0, -s0);
  } else if (q == 2u) {
    return vec2<f32>(-s0, -c0);
  } else if (q == 3u) {
    return vec2<f32>(-c0, s0);
  }
  return vec2<f32>(s0, c0);
}
