// RMSNorm (spec §3.2) and the gated RMSNorm of the GDN output (spec §3.5 step 8), f32 throughout.
// One workgroup per row; rows = T (layer norms) or T·heads (q/k norms, gated norm), so the grid is 2-D
// (x + y·nx) to stay under maxComputeWorkgroupsPerDimension.
// The *_inplace entry points bind the row only once: binding one buffer as both a read and a read_write
// resource in the same dispatch is a WebGPU usage conflict.

override WG: u32 = 256u;

struct Params {
  rows: u32,
  n: u32,
  eps: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> z: array<f32>;

var<workgroup> part: array<f32, WG>;

// Tree reduction over the workgroup; every invocation gets the total. Must be called in uniform control flow.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
  part[lid] = v;
  workgroupBarrier();
  var stride = WG / 2u;
  loop {
    if (stride == 0u) { break; }
    if (lid < stride) {
      part[lid] += part[lid + stride];
    }
    workgroupBarrier();
    stride = stride / 2u;
  }
  let total = part[0];
  // A second call in the same invocation would overwrite part[0] before slow readers got it.
  workgroupBarrier();
  return total;
}

fn row_of(wid: vec3u, nwg: vec3u) -> u32 {
  return wid.x + wid.y * nwg.x;
}

// 1 / sqrt(mean(x²) + eps) over the n values of x from offset o; every invocation gets it. Uniform control flow.
fn inv_rms_x(o: u32, lid: u32) -> f32 {
  var ss = 0.0;
  for (var j = lid; j < P.n; j += WG) {
    let v = x[o + j];
    ss += v * v;
  }
  return inverseSqrt(workgroup_sum(ss, lid) / f32(P.n) + P.eps);
}

// The same over y, for the in-place entry points (which bind the row once, as y).
fn inv_rms_y(o: u32, lid: u32) -> f32 {
  var ss = 0.0;
  for (var j = lid; j < P.n; j += WG) {
    let v = y[o + j];
    ss += v * v;
  }
  return inverseSqrt(workgroup_sum(ss, lid) / f32(P.n) + P.eps);
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row * P.n;
  let r = inv_rms_x(o, lid);
  for (var j = lid; j < P.n; j += WG) {
    y[o + j] = gain[j] * (x[o + j] * r);
  }
}

@compute @workgroup_size(WG)
fn rms_norm_inplace(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                    @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row * P.n;
  // Each invocation rewrites only the elements it read itself, and the sum is complete before any write.
  let r = inv_rms_y(o, lid);
  for (var j = lid; j < P.n; j += WG) {
    y[o + j] = gain[j] * (y[o + j] * r);
  }
}

@compute @workgroup_size(WG)
fn rms_norm_gated(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row * P.n;
  let r = inv_rms_x(o, lid);
  for (var j = lid; j < P.n; j += WG) {
    let zj = z[o + j];
    y[o + j] = gain[j] * (x[o + j] * r) * (zj * sigmoid(zj));
  }
}

@compute @workgroup_size(WG)
fn rms_norm_gated_inplace(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                          @builtin(local_invocation_index) lid: u32) {
  let row = row_of(wid, nwg);
  if (row >= P.rows) { return; }
  let o = row * P.n;
  let r = inv_rms_y(o, lid);
  for (var j = lid; j < P.n; j += WG) {
    let zj = z[o + j];
    y[o + j] = gain[j] * (y[o + j] * r) * (zj * sigmoid(zj));
  }
}
