// out[t, :] = dequantised row ids[t] of a quantized table (the embedding; MODE in qcommon.wgsl). Prepended by qcommon.wgsl.
// One thread per 32-value chunk of an output row. A table split into row parts is gathered by one dispatch per part;
// each writes only the tokens whose id falls inside its rows.

struct Params {
  rows: u32,      // rows of this part
  cols: u32,
  T: u32,
  row_start: u32, // first table row held by this part
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(4) var<storage, read> ids: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.x + gid.y * nwg.x * 64u;
  let chunks = P.cols / 32u;
  if (i >= P.T * chunks) { return; }
  let t = i / chunks;
  let c = i % chunks;
  let id = ids[t];
  if (id < P.row_start || id - P.row_start >= P.rows) { return; }
  let row = id - P.row_start;
  let q = chunk_codes(row * chunks * BITS + c * BITS);
  let o = t * P.cols + c * 32u;
  for (var k = 0u; k < 8u; k++) {
    // Per quad, since a chunk holds two groups when GS = 16.
    let sb = scale_bias(row * (P.cols / GS) + (c * 32u + 4u * k) / GS);
    let v = sb.x * q[k] + sb.y;
    out[o + 4u * k] = v.x;
    out[o + 4u * k + 1u] = v.y;
    out[o + 4u * k + 2u] = v.z;
    out[o + 4u * k + 3u] = v.w;
  }
}
