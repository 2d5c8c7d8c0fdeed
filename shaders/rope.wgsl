// Partial rotate-half RoPE (spec §3.4 step 4), in place on x [T, heads, D]; one invocation per rotated pair.
// Prepended with rope_angle.wgsl (the fixed-point angles).

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

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> freq: array<vec2<u32>>; // (hi, lo) of inv_freq / 2π, per pair

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn rope(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= P.n) { return; }
  let i = idx % P.half;
  let row = idx / P.half;   // t · heads + h
  let t = row / P.heads;
  let sc = rope_sincos(S.p0 + t, freq[i]);
  let o = row * P.D + i;
  let a = x[o];
  let b = x[o + P.half];
  x[o] = a * sc.y - b * sc.x;
  x[o + P.half] = b * sc.y + a * sc.x;
}
