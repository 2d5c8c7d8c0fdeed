// Partial rotate-half RoPE (spec §3.4 step 4), in place on x [T, heads, D]; one invocation per rotated pair.
//
// Why fixed point: with positions up to ~262144 the angle pos·inv_freq reaches 2.6e5 rad, where one f32 ulp is
// 0.03 rad, so an f32 product (what MLX does) is off by up to ~1.5e-2 in cos/sin. Instead the CPU stores, per
// pair i, c_i = inv_freq_i / 2π as a 64-bit binary fraction (hi, lo words, computed in f64), and the shader forms
// frac(pos · c_i) exactly in u32 arithmetic (wrapping multiplies drop the integer turns). The reduced angle is
// then reduced further to a quarter turn and evaluated with our own minimax polynomials: WGSL only promises
// 2^-11 absolute error for sin/cos (SwiftShader is that coarse, 1.4e-4), the polynomials give ~1e-7 everywhere.
// Net: ~1e-6 absolute error at any position below 2^32.

struct Params {
  n: u32,       // T · heads · R/2 pairs
  heads: u32,
  D: u32,
  half: u32,    // R / 2
  _p0: u32,     // was p0: now S.p0
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

// Per-call values, written once per forward (src/gpu/plan.ts writeStep): one recording serves every position.
struct Step {
  p0: u32,
  _s0: u32,
  _s1: u32,
  _s2: u32,
}
@group(0) @binding(15) var<uniform> S: Step;
@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<vec2<u32>>; // (hi, lo) of inv_freq / 2π, per pair

const WG: u32 = 256u;
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

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= P.n) { return; }
  let i = idx % P.half;
  let row = idx / P.half;   // t · heads + h
  let t = row / P.heads;
  let pos = S.p0 + t;
  let f = freq[i];
  // Fraction of a turn in units of 2^-32; the integer turns wrap away.
  let turns = pos * f.x + mulhi(pos, f.y);
  // Nearest quarter turn q (mod 4) and the remainder r ∈ [−1/8, 1/8) turn, i.e. angle = q·π/2 + x, |x| ≤ π/4.
  let q = ((turns + 0x20000000u) >> 30u) & 3u;
  let xr = f32(bitcast<i32>(turns - (q << 30u))) * TWO_PI_OVER_2_32;
  let s0 = sin_small(xr);
  let c0 = cos_small(xr);
  var sn = s0;
  var cs = c0;
  if (q == 1u) {
    sn = c0;
    cs = -s0;
  } else if (q == 2u) {
    sn = -s0;
    cs = -c0;
  } else if (q == 3u) {
    sn = -c0;
    cs = s0;
  }
  let o = row * P.D + i;
  let a = x[o];
  let b = x[o + P.half];
  x[o] = a * cs - b * sn;
  x[o + P.half] = b * cs + a * sn;
}
