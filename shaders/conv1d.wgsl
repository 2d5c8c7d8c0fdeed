// Causal depthwise conv + SiLU over time (spec §3.5 step 2) with a rolling pre-conv state.
// Two dispatches: conv_out (one invocation per (t, c), fully parallel, reads the OLD state) and then
// conv_state (one invocation per channel). Splitting them is what makes the in-place state update race-free:
// the dispatch boundary orders every read of the old state before the first write.

const WG: u32 = 256u;

struct Params {
  T: u32,
  C: u32,
  Kc: u32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;          // [T, C] pre-conv rows
@group(0) @binding(2) var<storage, read> w: array<f32>;          // [C, Kc]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;  // [T, C]
@group(0) @binding(4) var<storage, read_write> state: array<f32>; // [Kc−1, C], oldest first
@group(0) @binding(5) var<storage, read> state_in: array<f32>;   // same buffer as state, read-only view for conv_out

fn sigmoid(v: f32) -> f32 {
  if (v >= 0.0) {
    return 1.0 / (1.0 + exp(-v));
  }
  let e = exp(v);
  return e / (1.0 + e);
}

// Row r of cat(state, m) at channel ch: rows < Kc−1 come from the state, the rest are tokens.
fn conv_row(r: u32, ch: u32) -> f32 {
  let p = P.Kc - 1u;
  if (r < p) {
    return state_in[r * P.C + ch];
  }
  return m[(r - p) * P.C + ch];
}

@compute @workgroup_size(WG)
fn conv_out(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * WG + lid;
  if (idx >= P.T * P.C) { return; }
  let t = idx / P.C;
  let ch = idx - t * P.C;
  var s = 0.0;
  for (var j = 0u; j < P.Kc; j++) {
    s += w[ch * P.Kc + j] * conv_row(t + j, ch);
  }
  out[idx] = s * sigmoid(s);
}

// New state row r = row T + r of cat(state, m). Ascending r is safe in place: row r reads old row T + r > r,
// which this same invocation has not written yet, and channels are independent.
@compute @workgroup_size(WG)
fn conv_state(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let ch = (wid.x + wid.y * nwg.x) * WG + lid;
  if (ch >= P.C) { return; }
  let p = P.Kc - 1u;
  for (var r = 0u; r < p; r++) {
    let src = P.T + r;
    var v: f32;
    if (src < p) {
      v = state[src * P.C + ch];
    } else {
      v = m[(src - p) * P.C + ch];
    }
    state[r * P.C + ch] = v;
  }
}
