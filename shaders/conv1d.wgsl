// Causal depthwise conv + SiLU over time (spec §3.5 step 2) with a rolling pre-conv state, in one dispatch.
// One invocation per channel: it holds the channel's window (the Kc−1 previous pre-conv values, from the state)
// in registers, walks the T tokens in order, and finally writes the window back as the new state. Channels are
// independent, so the in-place state update needs no second dispatch.

const WG: u32 = 256u;
const MAXK: u32 = 64u; // linear_conv_kernel_dim is at most 64 (CONFIG_LIMITS)

struct Params {
  T: u32,
  C: u32,
  Kc: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;          // [T, C] pre-conv rows
@group(0) @binding(2) var<storage, read> w: array<f32>;          // [C, Kc]; w[c, Kc−1] multiplies the current token
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [T, C]
@group(0) @binding(4) var<storage, read_write> state: array<f32>; // [Kc−1, C], oldest first

@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let ch = (wid.x + wid.y * nwg.x) * WG + lid;
  if (ch >= P.C) { return; }
  let p = P.Kc - 1u;
  var win: array<f32, MAXK>;
  for (var j = 0u; j < p; j++) {
    win[j] = state[j * P.C + ch];
  }
  for (var t = 0u; t < P.T; t++) {
    let cur = m[t * P.C + ch];
    // Same order of terms as the two-row form cat(state, m)[t + j]: oldest first, the current token last.
    var s = 0.0;
    for (var j = 0u; j < p; j++) {
      s += w[ch * P.Kc + j] * win[j];
    }
    s += w[ch * P.Kc + p] * cur;
    out[t * P.C + ch] = s * sigmoid(s);
    for (var j = 0u; j + 1u < p; j++) {
      win[j] = win[j + 1u];
    }
    if (p > 0u) {
      win[p - 1u] = cur;
    }
  }
  for (var j = 0u; j < p; j++) {
    state[j * P.C + ch] = win[j];
  }
}
