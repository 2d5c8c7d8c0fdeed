// q_norm / k_norm followed by partial RoPE (spec §3.4 steps 3-4) in one dispatch, appended to norm.wgsl,
// rope_angle.wgsl and step.wgsl. One workgroup per head row: the row is normalised into workgroup memory, then
// each invocation writes rotated pairs. The same expressions as rms_norm then rope, so the result is identical.
// q rows are read straight out of the q_proj output (head rows of 2D: q then gate, so no split pass); k rows go
// straight into the K cache at position p0 + t, and norm_rope_kv copies the matching v row into the V cache in
// the same dispatch (no append passes).

const MAXD: u32 = 512u;

struct RopeParams {
  heads: u32,
  half: u32,     // R / 2
  inStride: u32, // floats from one head row of x to the next (2D for q inside q_proj's output, D for k)
  toCache: u32,  // 1: write row (t, h) at cache row h·maxCtx + p0 + t; 0: at (t·heads + h)·D
  maxCtx: u32,
  _pad0: u32,
  _pad1: u32,
  _pad2: u32,
}

@group(0) @binding(5) var<storage, read> freq: array<vec2<u32>>;
@group(0) @binding(6) var<uniform> RP: RopeParams;

var<workgroup> normed: array<f32, MAXD>;

@compute @workgroup_size(WG)
fn norm_rope(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  norm_rope_row(row, lid);
}

// v [T, heads, D] and the V cache [heads, maxCtx, D], bound only by norm_rope_kv.
@group(0) @binding(7) var<storage, read> v_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(WG)
fn norm_rope_kv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  let yo = norm_rope_row(row, lid);
  for (var j = lid; j < P.n; j += WG) {
    v_cache[yo + j] = v_in[row * P.n + j];
  }
}

// Normalises and rotates head row `row` into y; returns where in y it went.
fn norm_rope_row(row: u32, lid: u32) -> u32 {
  let t = row / RP.heads;
  let h = row % RP.heads;
  let xo = row * RP.inStride;
  let r = inv_rms_x(xo, lid);
  for (var j = lid; j < P.n; j += WG) {
    normed[j] = gain[j] * (x[xo + j] * r);
  }
  workgroupBarrier();
  let pos = S.p0 + t;
  var yo = row * P.n;
  if (RP.toCache == 1u) {
    yo = (h * RP.maxCtx + pos) * P.n;
  }
  for (var j = lid; j < P.n; j += WG) {
    var v = normed[j];
    if (j < RP.half) {
      let sc = rope_sincos(pos, freq[j]);
      v = normed[j] * sc.y - normed[j + RP.half] * sc.x;
    } else if (j < 2u * RP.half) {
      let i = j - RP.half;
      let sc = rope_sincos(pos, freq[i]);
      v = normed[j] * sc.y + normed[i] * sc.x;
    }
    y[yo + j] = v;
  }
  return yo;
}
